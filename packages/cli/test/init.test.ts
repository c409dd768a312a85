// `spiffe-ts init`: an example becomes a project of its own outside the repository (no `workspace:` range,
// no tsconfig reaching into the repository), from the checkout and from the templates the published package
// carries; mistakes are refused before anything is written; and, end to end, a project made with --tarballs
// installs with npm and `npm start` runs the demo.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { exampleNames, initExample, loadTemplates } from '../src/init.js';
import { cli } from './run-cli.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const BIN = fileURLToPath(new URL('../src/bin.ts', import.meta.url));
const EXAMPLES = ['express-jwt', 'fastify-mtls', 'federation', 'grpc-mtls', 'nestjs-cjs', 'nestjs-mtls'];

type Pkg = Record<string, Record<string, string> | string | boolean | undefined>;
const readPkg = async (dir: string) => JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as Pkg;

async function version(pkg: string): Promise<string> {
  return (JSON.parse(await readFile(join(ROOT, 'packages', pkg, 'package.json'), 'utf8')) as { version: string })
    .version;
}

async function walk(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const rel = join(prefix, e.name);
    if (e.isDirectory()) out.push(rel, ...(await walk(dir, rel)));
    else out.push(rel);
  }
  return out;
}

/** Asserts what every scaffolded project must be: nothing that only works inside the monorepo. */
async function assertStandalone(dir: string, name: string, ranges: Record<string, string>): Promise<Pkg> {
  const pkg = await readPkg(dir);
  assert.equal(pkg.name, name);
  assert.equal(pkg.private, true, 'never published by mistake');
  assert.doesNotMatch(JSON.stringify(pkg), /workspace:/);
  for (const field of ['dependencies', 'devDependencies'] as const) {
    for (const [dep, range] of Object.entries((pkg[field] as Record<string, string> | undefined) ?? {})) {
      if (dep.startsWith('@spiffe-ts/')) assert.equal(range, ranges[dep], `${field} ${dep}`);
    }
  }
  assert.ok((pkg.scripts as Record<string, string>).start, 'npm start exists');
  const files = await walk(dir);
  assert.ok(!files.some((f) => /(^|\/)(node_modules|dist)(\/|$)/.test(f)), `no installs or builds: ${files}`);
  for (const f of files.filter((f) => /(^|\/)tsconfig(\..+)?\.json$/.test(f))) {
    const text = await readFile(join(dir, f), 'utf8');
    assert.doesNotMatch(text, /tsconfig\.base\.json|customConditions/, `${f} stands alone`);
  }
  return pkg;
}

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'spiffe-init-'));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

describe('init from the checkout', () => {
  test('--list names every example; init --help prints its usage', async () => {
    const list = await cli(['init', '--list']);
    assert.equal(list.code, 0, list.err);
    assert.deepEqual(list.out.trim().split('\n'), EXAMPLES);
    const help = await cli(['init', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.out, /^Usage: spiffe-ts init EXAMPLE DIR/);
  });

  for (const example of EXAMPLES) {
    test(`${example}: ^VERSION ranges, tsconfig without the repository base, npm start`, async () => {
      const dir = join(base, 'checkout', `my-${example}`);
      const r = await cli(['init', example, dir]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, new RegExp(`Created my-${example} in .* from the ${example} example\\.`));
      assert.match(r.out, /npm install/);
      const pkg = await assertStandalone(dir, `my-${example}`, {
        '@spiffe-ts/core': `^${await version('core')}`,
        '@spiffe-ts/dev-server': `^${await version('dev-server')}`,
        '@spiffe-ts/fastify': `^${await version('fastify')}`,
        '@spiffe-ts/express': `^${await version('express')}`,
        '@spiffe-ts/nestjs': `^${await version('nestjs')}`,
        '@spiffe-ts/grpc': `^${await version('grpc')}`,
      });
      const scripts = pkg.scripts as Record<string, string>;
      const dev = (pkg.devDependencies ?? {}) as Record<string, string>;
      if (scripts.typecheck) assert.ok(dev.typescript && dev['@types/node'], 'tsc and node types to typecheck');
      if (example === 'nestjs-cjs') {
        // Its start is `node dist/main.js` with a Workload API of your own: the next steps say so.
        assert.match(r.out, /npm run build/);
        const testConfig = JSON.parse(await readFile(join(dir, 'test', 'tsconfig.json'), 'utf8'));
        assert.equal(testConfig.compilerOptions.module, 'NodeNext', 'the base options written in');
        assert.equal(testConfig.compilerOptions.noEmit, true, 'its own options kept');
      } else {
        assert.equal(scripts.start, scripts.demo, 'npm start runs the demo');
        assert.match(r.out, /npm start/);
        const config = JSON.parse(await readFile(join(dir, 'tsconfig.json'), 'utf8'));
        assert.equal(config.compilerOptions.experimentalDecorators, true);
        assert.deepEqual(config.include, ['src', 'test']);
      }
      assert.match(r.out, /--tarballs/, 'says how to run before the packages are published');
    });
  }
});

describe('init from the templates a published spiffe-ts carries', () => {
  test('copy-templates output: same examples, same ranges; --tarballs needs a checkout', async () => {
    // A package root outside the repository, as node_modules/@spiffe-ts/cli is.
    const pkgRoot = join(base, 'installed', 'node_modules', '@spiffe-ts', 'cli');
    const out = await run(process.execPath, [
      join(ROOT, 'packages/cli/scripts/copy-templates.mjs'),
      join(pkgRoot, 'dist', 'templates'),
    ]);
    assert.equal(out.code, 0, out.err);
    const templates = loadTemplates(pkgRoot);
    assert.equal(templates.checkout, undefined);
    assert.deepEqual(exampleNames(templates), EXAMPLES);
    const dir = join(base, 'installed-out', 'orders');
    const r = await initExample({ example: 'fastify-mtls', target: dir, tarballs: false, log: () => {} }, templates);
    assert.equal(r.fromCheckout, false);
    const v = `^${await version('core')}`;
    await assertStandalone(dir, 'orders', {
      '@spiffe-ts/core': v,
      '@spiffe-ts/dev-server': `^${await version('dev-server')}`,
      '@spiffe-ts/fastify': `^${await version('fastify')}`,
    });
    await assert.rejects(
      initExample({ example: 'fastify-mtls', target: join(base, 'x', 'y'), tarballs: true, log: () => {} }, templates),
      { code: 'INIT_NO_CHECKOUT' },
    );
    assert.equal(existsSync(join(base, 'x')), false, 'nothing written');
  });
});

describe('refusals: nothing is written', () => {
  test('an unknown example lists the available ones (exit 2)', async () => {
    const r = await cli(['init', 'koa-mtls', join(base, 'k')]);
    assert.equal(r.code, 2);
    assert.match(r.err, /^error \[CLI_USAGE\]: unknown example "koa-mtls": choose one of express-jwt, fastify-mtls,/);
    assert.equal(existsSync(join(base, 'k')), false);
  });

  test('a non-empty target is INIT_TARGET_EXISTS (exit 1) and left as it was; an empty one is used', async () => {
    const dir = join(base, 'taken');
    await mkdir(dir);
    await writeFile(join(dir, 'keep.txt'), 'mine');
    const r = await cli(['init', 'fastify-mtls', dir]);
    assert.equal(r.code, 1);
    assert.match(r.err, /^error \[INIT_TARGET_EXISTS\]: .*taken already exists and is not an empty directory/);
    assert.deepEqual(await readdir(dir), ['keep.txt']);
    const file = join(base, 'afile');
    await writeFile(file, '');
    assert.match((await cli(['init', 'fastify-mtls', file])).err, /INIT_TARGET_EXISTS/);
    const empty = join(base, 'empty');
    await mkdir(empty);
    assert.equal((await cli(['init', 'express-jwt', empty])).code, 0);
  });

  test('bad names and operands are usage errors (exit 2)', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['init', 'fastify-mtls', join(base, 'My Service')], /"My Service" cannot be a package name/],
      [['init', 'fastify-mtls', join(base, '.hidden')], /"\.hidden" cannot be a package name/],
      [['init', 'fastify-mtls'], /init takes EXAMPLE DIR, got 1 operand\(s\); examples: express-jwt/],
      [['init'], /init takes EXAMPLE DIR/],
      [['init', 'fastify-mtls', join(base, 'a'), join(base, 'b')], /init takes EXAMPLE DIR, got 3/],
      [['init', 'fastify-mtls', join(base, 'c'), '--bogus'], /Unknown option '--bogus'/],
      [['init', 'fastify-mtls', join(ROOT, 'examples', 'mine')], /inside the spiffe-ts checkout/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, message);
      assert.doesNotMatch(r.err, /\n\s+at /);
    }
    for (const n of ['My Service', '.hidden', 'a', 'b', 'c']) assert.equal(existsSync(join(base, n)), false, n);
    assert.equal(existsSync(join(ROOT, 'examples', 'mine')), false);
  });
});

const PACKAGES_BUILT = ['core', 'dev-server', 'fastify'].every((p) => existsSync(join(ROOT, 'packages', p, 'dist')));

// Packs three packages, installs from the registry into an empty npm cache, runs the demo: about 45 s here,
// so it always runs (it needs `pnpm build` first, as `pnpm test` does, and the npm registry).
test('end to end: init fastify-mtls --tarballs, npm install, npm start outside the repository', {
  skip: PACKAGES_BUILT ? false : 'the packages are not built (pnpm build)',
  timeout: 300_000,
}, async () => {
  const work = join(base, 'e2e');
  await mkdir(work);
  // `--import tsx` resolves tsx from the working directory, outside the repository here: name the file.
  const tsx = pathToFileURL(join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
  const made = await run(
    process.execPath,
    ['--conditions=source', '--import', tsx, BIN, 'init', 'fastify-mtls', 'my-service', '--tarballs'],
    { cwd: work },
  );
  assert.equal(made.code, 0, made.err);
  assert.match(made.out, /with 3 tarballs in vendor\//);
  const dir = join(work, 'my-service');
  const versions: Record<string, string> = {};
  for (const p of ['core', 'dev-server', 'fastify']) versions[p] = await version(p);
  const tgz = (p: string) => `file:vendor/spiffe-ts-${p}-${versions[p]}.tgz`;
  const pkg = await assertStandalone(dir, 'my-service', {
    '@spiffe-ts/core': tgz('core'),
    '@spiffe-ts/dev-server': tgz('dev-server'),
    '@spiffe-ts/fastify': tgz('fastify'),
  });
  assert.deepEqual(pkg.overrides, {
    '@spiffe-ts/core': tgz('core'),
    '@spiffe-ts/dev-server': tgz('dev-server'),
    '@spiffe-ts/fastify': tgz('fastify'),
  });
  assert.deepEqual(
    (await readdir(join(dir, 'vendor'))).sort(),
    ['core', 'dev-server', 'fastify'].map((p) => tgz(p).slice(12)),
  );

  const env = npmEnv(join(work, 'npm-cache'));
  const install = await run('npm', ['install', '--no-audit', '--no-fund'], { cwd: dir, env });
  assert.equal(install.code, 0, install.err);
  // One copy of core, the tarball's, even where @spiffe-ts/fastify asks for it by version.
  const lock = JSON.parse(await readFile(join(dir, 'package-lock.json'), 'utf8'));
  const cores = Object.keys(lock.packages).filter((k) => k.endsWith('node_modules/@spiffe-ts/core'));
  assert.deepEqual(cores, ['node_modules/@spiffe-ts/core']);
  const start = await run('npm', ['start'], { cwd: dir, env });
  assert.equal(start.code, 0, `${start.out}\n${start.err}`);
  assert.match(start.out, /^ALLOWED {2}spiffe:\/\/example\.org\/service\/payment-processor -> GET \/orders: 200/m);
  assert.match(start.out, /^REJECTED spiffe:\/\/example\.org\/service\/inventory -> GET \/orders: 403/m);
  assert.match(start.out, /^demo OK: only the payment processor was allowed$/m);
});

/** npm outside the repository: none of the settings pnpm or an outer npm pass down, an npm cache of its own. */
function npmEnv(cache: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) && !/^pnpm_/i.test(k)) env[k] = v;
  env.npm_config_cache = cache;
  env.npm_config_update_notifier = 'false';
  return env;
}

function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
}
