// Writing SVID files: exact modes whatever the umask, no temp file left behind, a 0700 directory when we
// create it, symlinks at the target replaced rather than written through, and unsafe directories refused.
import assert from 'node:assert/strict';
import { watch } from 'node:fs';
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli, UnsafeDirectoryError, writeAtomic, writeJwtFile, writeX509Files } from '@spiffe-ts/cli';
import { isSpiffeError, type JwtSvid, X509BundleSet, type X509Context } from '@spiffe-ts/core';
import { DevCa, DevWorkloadApiServer } from '@spiffe-ts/dev-server';

let base: string;
let ca: DevCa;
let ctx: X509Context;
let jwt: JwtSvid;
let n = 0;
const fresh = () => join(base, `case-${++n}`);
const isRoot = process.geteuid?.() === 0;

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'spiffe-files-'));
  ca = await DevCa.create({ trustDomain: 'example.org' });
  ctx = {
    svids: [await ca.issueX509Svid('spiffe://example.org/service/orders')],
    bundles: new X509BundleSet([ca.x509Bundle()]),
  };
  jwt = await ca.issueJwtSvid('spiffe://example.org/service/orders', 'billing');
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

/** Runs `fn` under `mask`, restoring the previous umask afterwards. */
async function withUmask<T>(mask: number, fn: () => Promise<T>): Promise<T> {
  const previous = process.umask(mask);
  try {
    return await fn();
  } finally {
    process.umask(previous);
  }
}

const mode = async (p: string) => (await lstat(p)).mode & 0o7777;
const HELPER_FILES = ['svid.pem', 'svid_bundle.pem', 'svid_key.pem'];

describe('file modes', () => {
  for (const mask of [0o000, 0o022, 0o077, 0o277]) {
    test(`umask ${mask.toString(8).padStart(3, '0')}: key and JWT 0600 exactly, certificates and bundles 0644, new directory 0700`, async () => {
      const dir = join(fresh(), 'nested', 'out');
      // A umask that takes the owner's bits would leave us directories we cannot write in: make it first.
      if (mask & 0o700) await mkdir(dir, { recursive: true, mode: 0o700 });
      await withUmask(mask, async () => {
        await writeX509Files(dir, ctx);
        await writeJwtFile(join(dir, 'billing.jwt'), jwt);
      });
      assert.equal(await mode(join(dir, 'svid_key.pem')), 0o600);
      assert.equal(await mode(join(dir, 'billing.jwt')), 0o600);
      assert.equal(await mode(join(dir, 'svid.pem')), 0o644);
      assert.equal(await mode(join(dir, 'svid_bundle.pem')), 0o644);
      assert.equal(await mode(dir), 0o700);
      assert.equal(await mode(join(dir, '..')), 0o700, 'missing parents are created 0700 too');
    });
  }

  test('the file written has the right content and replaces an existing file of a wider mode', async () => {
    const dir = fresh();
    await mkdir(dir, { mode: 0o700 });
    const key = join(dir, 'svid_key.pem');
    await writeFile(key, 'old', { mode: 0o666 });
    await chmod(key, 0o666);
    await writeX509Files(dir, ctx);
    assert.equal(await mode(key), 0o600);
    assert.equal(await readFile(key, 'utf8'), ctx.svids[0]?.toPem().privateKey);
    assert.equal(await readFile(join(dir, 'svid.pem'), 'utf8'), ctx.svids[0]?.toPem().certificates);
  });
});

describe('temp files', () => {
  test('none left behind after a successful write, repeated', async () => {
    const dir = fresh();
    for (let i = 0; i < 3; i++) await writeX509Files(dir, ctx);
    await writeJwtFile(join(dir, 'billing.jwt'), jwt);
    assert.deepEqual((await readdir(dir)).sort(), ['billing.jwt', ...HELPER_FILES]);
  });

  test('none left behind after a failed write (the target is a non-empty directory: rename fails)', async () => {
    const dir = fresh();
    await mkdir(join(dir, 'svid_key.pem', 'occupied'), { recursive: true, mode: 0o700 });
    await assert.rejects(writeX509Files(dir, ctx));
    assert.deepEqual(await readdir(dir), ['svid_key.pem'], 'only the obstacle, no temp file and no other file');
    await assert.rejects(writeAtomic(join(dir, 'svid_key.pem'), 'secret', 0o600));
    assert.deepEqual(await readdir(dir), ['svid_key.pem']);
  });

  test('two writes of the same file use different, random temp names in the target directory', async () => {
    const dir = fresh();
    await mkdir(dir, { mode: 0o700 });
    const seen = new Set<string>();
    const watcher = watch(dir, (_event, name) => {
      if (name && name !== 'svid_key.pem') seen.add(name.toString());
    });
    try {
      await writeAtomic(join(dir, 'svid_key.pem'), 'one', 0o600);
      await writeAtomic(join(dir, 'svid_key.pem'), 'two', 0o600);
      await new Promise((r) => setTimeout(r, 200)); // inotify events arrive asynchronously
    } finally {
      watcher.close();
    }
    const temps = [...seen];
    assert.equal(temps.length, 2, `one temp name per write: ${temps.join(', ')}`);
    for (const t of temps) assert.match(t, /^\.svid_key\.pem\.[0-9a-f]{32}\.tmp$/, '128 random bits in the name');
    assert.equal(await readFile(join(dir, 'svid_key.pem'), 'utf8'), 'two');
  });
});

describe('symlinks', () => {
  test('a symlink at the target name is replaced by a regular file; its target is not written', async () => {
    const root = fresh();
    const dir = join(root, 'out');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const victim = join(root, 'victim');
    await writeFile(victim, 'victim', { mode: 0o644 });
    await symlink(victim, join(dir, 'svid_key.pem'));
    await symlink(victim, join(dir, 'billing.jwt'));
    await writeX509Files(dir, ctx);
    await writeJwtFile(join(dir, 'billing.jwt'), jwt);
    assert.equal(await readFile(victim, 'utf8'), 'victim');
    assert.equal(await mode(victim), 0o644, 'the victim was not chmod-ed either');
    for (const f of ['svid_key.pem', 'billing.jwt']) {
      const st = await lstat(join(dir, f));
      assert.ok(st.isFile() && !st.isSymbolicLink(), `${f} is a regular file`);
      assert.equal(st.mode & 0o7777, 0o600);
    }
    assert.equal(await readFile(join(dir, 'billing.jwt'), 'utf8'), jwt.token);
  });

  test('an output directory given through a symlink is written in the directory it points to', async () => {
    const root = fresh();
    await mkdir(join(root, 'real'), { recursive: true, mode: 0o700 });
    await symlink(join(root, 'real'), join(root, 'link'));
    await writeX509Files(join(root, 'link'), ctx);
    assert.deepEqual((await readdir(join(root, 'real'))).sort(), HELPER_FILES);
  });
});

describe('unsafe directories are refused with FILE_UNSAFE_DIRECTORY and get no file', () => {
  async function refused(dir: string, message: RegExp): Promise<void> {
    await assert.rejects(writeX509Files(dir, ctx), (err: unknown) => {
      assert.ok(err instanceof UnsafeDirectoryError);
      assert.ok(isSpiffeError(err));
      assert.equal(err.code, 'FILE_UNSAFE_DIRECTORY');
      assert.match(err.message, message);
      return true;
    });
    await assert.rejects(writeJwtFile(join(dir, 'billing.jwt'), jwt), { code: 'FILE_UNSAFE_DIRECTORY' });
    await assert.rejects(writeAtomic(join(dir, 'x.pem'), 'x'), { code: 'FILE_UNSAFE_DIRECTORY' });
  }

  for (const [m, message] of [
    [0o770, /group-writable \(mode 0770\)/],
    [0o775, /group-writable/],
    [0o707, /world-writable \(mode 0707\)/],
    [0o777, /world-writable/],
    [0o1777, /world-writable \(mode 1777\): the sticky bit \(as on \/tmp\) does not help/],
  ] as const) {
    test(`mode ${m.toString(8)}`, async () => {
      const dir = fresh();
      await mkdir(dir);
      await chmod(dir, m);
      await refused(dir, message);
      assert.deepEqual(await readdir(dir), []);
    });
  }

  test('a directory under a parent others can write to (no sticky bit)', async () => {
    const parent = fresh();
    await mkdir(join(parent, 'out'), { recursive: true, mode: 0o700 });
    await chmod(parent, 0o777);
    await refused(join(parent, 'out'), /its parent .* is writable by other users \(mode 0777, no sticky bit\)/);
    assert.deepEqual(await readdir(join(parent, 'out')), []);
  });

  test('a directory under a sticky world-writable parent (like /tmp) is accepted', async () => {
    const parent = fresh();
    await mkdir(join(parent, 'out'), { recursive: true, mode: 0o700 });
    await chmod(parent, 0o1777);
    await writeX509Files(join(parent, 'out'), ctx);
    assert.deepEqual((await readdir(join(parent, 'out'))).sort(), HELPER_FILES);
  });

  test('a directory owned by another user', { skip: !isRoot && 'needs root to chown' }, async () => {
    const dir = fresh();
    await mkdir(dir, { mode: 0o755 });
    await chown(dir, 65534, 65534);
    await refused(dir, /owned by uid 65534/);
    assert.deepEqual(await readdir(dir), []);
  });

  test('a path that is a file', async () => {
    const f = fresh();
    await writeFile(f, '');
    await assert.rejects(writeX509Files(f, ctx));
    assert.equal((await stat(f)).size, 0);
  });

  test('the CLI prints the typed code and exits 1', async () => {
    const server = await DevWorkloadApiServer.start({ ca, workloads: { orders: '/service/orders' } });
    try {
      const dir = fresh();
      await mkdir(dir);
      await chmod(dir, 0o777);
      let err = '';
      const code = await runCli(['fetch', 'x509', '--socket', server.address('orders'), '--write', dir], {
        out: () => undefined,
        err: (s) => (err += s),
      });
      assert.equal(code, 1);
      assert.match(err, /^error \[FILE_UNSAFE_DIRECTORY\]: refusing to write SVID files to .*world-writable/);
      assert.deepEqual(await readdir(dir), []);
    } finally {
      await server.stop();
    }
  });
});
