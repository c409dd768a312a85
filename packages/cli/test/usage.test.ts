// Command-line mistakes give `error [CODE]: message` and the documented exit code (2 for usage, 1 for
// failures), never a stack trace; every command answers --help; the dev server locks its directory; the
// helper honours --timeout; output into a closed pipe ends quietly.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cliVersion } from '@spiffe-ts/cli';
import { DevCa, DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { cli } from './run-cli.js';

const BIN = fileURLToPath(new URL('../src/bin.ts', import.meta.url));
const NODE_ARGS = ['--conditions=source', '--import', 'tsx', BIN];

/** Runs the real executable; resolves with its exit code and output. */
function spawnCli(args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  return spawn(process.execPath, [...NODE_ARGS, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
}

async function collect(child: ChildProcess): Promise<{ code: number | null; out: string; err: string }> {
  let out = '';
  let err = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    err += d;
  });
  const [code] = await once(child, 'exit');
  return { code: code as number | null, out, err };
}

let base: string;
let dev: DevWorkloadApiServer;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'spiffe-cli-usage-'));
  dev = await DevWorkloadApiServer.start({
    workloads: { w: 'spiffe://example.org/w' },
    federatedWith: [await DevCa.create({ trustDomain: 'partner.example' })],
  });
});
after(async () => {
  await dev.stop();
  await rm(base, { recursive: true, force: true });
});

describe('help and version', () => {
  const commands = [
    ['fetch', 'x509'],
    ['fetch', 'jwt'],
    ['fetch', 'bundles'],
    ['validate', 'jwt'],
    ['helper'],
    ['dev-server'],
    ['init'],
  ];
  for (const c of commands) {
    test(`spiffe-ts ${c.join(' ')} --help prints its usage and exits 0 (-h too)`, async () => {
      for (const flag of ['--help', '-h']) {
        const r = await cli([...c, flag]);
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, new RegExp(`^Usage: spiffe-ts ${c.join(' ')}`));
        assert.equal(r.err, '');
      }
    });
  }

  test('--version prints the package version; no arguments prints the usage and exits 2', async () => {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
    assert.equal(cliVersion(), pkg.version);
    assert.deepEqual(await cli(['--version']), { code: 0, out: `${pkg.version}\n`, err: '' });
    assert.equal((await cli(['helper', '-version'])).out, `${pkg.version}\n`, 'spiffe-helper spells it -version');
    const none = await cli([]);
    assert.equal(none.code, 2);
    assert.match(none.err, /Usage:/);
    const fetchOnly = await cli(['fetch']);
    assert.equal(fetchOnly.code, 2);
    assert.match(fetchOnly.err, /Usage: spiffe-ts fetch x509/);
    assert.match((await cli(['help', 'helper'])).out, /^Usage: spiffe-ts helper/);
  });
});

describe('mistakes: error [CODE], exit code, no stack trace', () => {
  const cases: Array<[string, string[], number, RegExp]> = [
    ['unknown command', ['frobnicate'], 2, /^error \[CLI_USAGE\]: unknown command "frobnicate"/],
    ['unknown subcommand', ['fetch', 'x1'], 2, /^error \[CLI_USAGE\]: unknown command "fetch x1"/],
    ['unknown option', ['fetch', 'x509', '--bogus'], 2, /^error \[CLI_USAGE\]: Unknown option '--bogus'/],
    ['fetch jwt without an audience', ['fetch', 'jwt'], 2, /^error \[CLI_USAGE\]: --audience AUD is required/],
    ['validate jwt without a token', ['validate', 'jwt', '--audience', 'a'], 2, /^error \[CLI_USAGE\]: no token/],
    ['--timeout abc', ['fetch', 'x509', '--timeout', 'abc'], 2, /--timeout takes a whole number of milliseconds/],
    ['--timeout -5', ['fetch', 'bundles', '--timeout=-5'], 2, /--timeout takes a whole number/],
    ['--signal SIGBOGUS', ['helper', '--dir', '/x', '--signal', 'SIGBOGUS'], 2, /unknown signal "SIGBOGUS"/],
    [
      '--svid-ttl abc',
      ['dev-server', '--workload', 'a=/a', '--svid-ttl', 'abc'],
      2,
      /--svid-ttl takes a whole number of seconds/,
    ],
    ['--jwt-ttl 0', ['dev-server', '--workload', 'a=/a', '--jwt-ttl', '0'], 2, /--jwt-ttl takes/],
    ['--tcp-port 70000', ['dev-server', '--workload', 'a=/a', '--tcp-port', '70000'], 2, /--tcp-port takes/],
    [
      '--bundle-endpoint-port 70000',
      ['dev-server', '--workload', 'a=/a', '--bundle-endpoint-port', '70000'],
      2,
      /--bundle-endpoint-port takes a whole number of a port \(0: any free port\) from 0 to 65535/,
    ],
    [
      '--bundle-endpoint-port abc',
      ['dev-server', '--workload', 'a=/a', '--bundle-endpoint-port=abc'],
      2,
      /--bundle-endpoint-port takes/,
    ],
    [
      '--bundle-endpoint-host without a port',
      ['dev-server', '--workload', 'a=/a', '--bundle-endpoint-host', '127.0.0.1'],
      2,
      /--bundle-endpoint-host needs --bundle-endpoint-port/,
    ],
    [
      '--bundle-endpoint-host with a URL',
      ['dev-server', '--workload', 'a=/a', '--bundle-endpoint-port', '0', '--bundle-endpoint-host', 'https://x/'],
      2,
      /--bundle-endpoint-host takes an IP address or a host name, got "https:\/\/x\/"/,
    ],
    ['dev-server without workloads', ['dev-server'], 2, /at least one --workload/],
    ['--workload without =', ['dev-server', '--workload', 'orders'], 2, /--workload takes NAME=SPIFFE_ID/],
    ['helper without --dir or --config', ['helper'], 2, /--config FILE or --dir DIR is required/],
    ['helper --config with --dir', ['helper', '--config', 'x.conf', '--dir', 'd'], 2, /cannot be combined with --dir/],
    ['helper --arg without --cmd', ['helper', '--dir', 'd', '--arg', 'x'], 2, /--arg needs --cmd/],
    ['helper --jwt without =', ['helper', '--dir', 'd', '--jwt', 'aud'], 2, /--jwt takes AUDIENCE=FILE/],
    ['--daemon-mode=maybe', ['helper', '--config', 'x', '--daemon-mode=maybe'], 2, /--daemon-mode takes true or false/],
    [
      'missing config file',
      ['helper', '--config', '/nonexistent/helper.conf'],
      2,
      /^error \[HELPER_CONFIG_INVALID\]: cannot read/,
    ],
    [
      'relative socket path',
      ['fetch', 'x509', '--socket', 'agent.sock'],
      2,
      /--socket takes unix:\/\/\/path.*absolute socket path/,
    ],
    ['bad socket URI', ['fetch', 'x509', '--socket', 'tcp://localhost:1'], 1, /^error \[WORKLOADAPI_BAD_ADDRESS\]/],
  ];
  for (const [name, args, code, message] of cases) {
    test(name, async () => {
      const r = await cli(args);
      assert.equal(r.code, code, r.err);
      assert.match(r.err, message);
      assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
    });
  }

  test('the real executable: helper --cmd /nonexistent/prog is error [HELPER_CMD_FAILED], exit 1', async () => {
    const dir = join(base, 'nocmd');
    const r = await collect(
      spawnCli(['helper', '--socket', dev.address('w'), '--dir', dir, '--cmd', '/nonexistent/prog']),
    );
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, /^error \[HELPER_CMD_FAILED\]: cannot start \/nonexistent\/prog: .*ENOENT/m);
    assert.doesNotMatch(r.err, /\n\s+at /);
  });

  test('the real executable: an unreadable Workload API is exit 1 with the socket named', async () => {
    const sock = join(base, 'absent.sock');
    const r = await collect(spawnCli(['fetch', 'x509', '--socket', sock, '--timeout', '300']));
    assert.equal(r.code, 1);
    assert.match(r.err, /^error \[WORKLOADAPI_UNAVAILABLE\]/);
    assert.ok(r.err.includes(sock), r.err);
  });
});

describe('option values', () => {
  test('--arg -x and --arg=-x are both values for the program, and a bare socket path works', async () => {
    const dir = join(base, 'args');
    const out = join(base, 'args.json');
    const script = join(base, 'args.cjs');
    // The program also records whether the JWT-SVID file was there when it started (it must be).
    await writeFile(
      script,
      `const fs = require('fs'); fs.writeFileSync(${JSON.stringify(out)}, JSON.stringify([...process.argv.slice(2), fs.existsSync(${JSON.stringify(join(dir, 't.jwt'))})]))`,
    );
    const sock = dev.address('w').replace(/^unix:\/\//, '');
    const r = await cli([
      'helper',
      '--socket',
      sock,
      '--dir',
      dir,
      '--cmd',
      process.execPath,
      '--arg',
      script,
      '--arg',
      '-g',
      '--arg=-x',
      '--arg',
      'daemon off;',
      '--jwt',
      'aud=t.jwt',
    ]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(await readFile(out, 'utf8')), ['-g', '-x', 'daemon off;', true]);
  });

  test('helper --once gives up after --timeout, naming the socket (no hang)', async () => {
    const sock = `unix://${join(base, 'nobody.sock')}`;
    const started = Date.now();
    const r = await cli(['helper', '--once', '--dir', join(base, 'once'), '--socket', sock, '--timeout', '300']);
    assert.equal(r.code, 1);
    assert.match(r.err, /^error \[WORKLOADAPI_UNAVAILABLE\]/);
    assert.ok(r.err.includes(join(base, 'nobody.sock')), r.err);
    assert.ok(Date.now() - started < 8000, 'well before the default 10 s');
  });

  test('fetch x509 --write names files as spire-agent: one federated_bundle.N.M.pem per federated trust domain', async () => {
    const dir = join(base, 'write');
    const r = await cli(['fetch', 'x509', '--socket', dev.address('w'), '--write', dir]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual((await readdir(dir)).sort(), [
      'bundle.0.pem',
      'federated_bundle.0.0.pem',
      'svid.0.key',
      'svid.0.pem',
    ]);
    const alone = await DevWorkloadApiServer.start({ workloads: { w: 'spiffe://example.org/w' } });
    try {
      const dir2 = join(base, 'write2');
      assert.equal((await cli(['fetch', 'x509', '--socket', alone.address('w'), '--write', dir2])).code, 0);
      assert.deepEqual((await readdir(dir2)).sort(), ['bundle.0.pem', 'svid.0.key', 'svid.0.pem'], 'no empty file');
    } finally {
      await alone.stop();
    }
  });
});

describe('processes', () => {
  test('fetch bundles | true: the closed pipe ends the command quietly, exit 0', async () => {
    // `true` exits at once: every write of ours meets a pipe with no reader (EPIPE).
    const cmd = `"${process.execPath}" ${NODE_ARGS.map((a) => `"${a}"`).join(' ')} fetch bundles --socket "${dev.address('w')}"`;
    const r = await collect(spawn('bash', ['-c', `${cmd} | true; echo "status=\${PIPESTATUS[0]}"`]));
    assert.equal(r.out.trim(), 'status=0', r.err);
    assert.doesNotMatch(r.err, /EPIPE|\n\s+at /, r.err);
  });

  test('a second dev server on the same --dir refuses (DEV_SERVER_LOCKED, exit 1); a stale lock is taken over', async () => {
    const dir = join(base, 'locked');
    const first = spawnCli(['dev-server', '--dir', dir, '--workload', 'a=/a']);
    const firstOut = collect(first);
    try {
      await waitForFile(join(dir, 'a.sock'));
      const second = await collect(spawnCli(['dev-server', '--dir', dir, '--workload', 'a=/a']));
      assert.equal(second.code, 1);
      assert.match(
        second.err,
        new RegExp(`^error \\[DEV_SERVER_LOCKED\\]: another dev server \\(pid ${first.pid}\\)`, 'm'),
      );
      await readdir(dir).then((f) => assert.ok(f.includes('a.sock'), 'the first one keeps its socket'));
    } finally {
      first.kill('SIGTERM');
    }
    assert.equal((await firstOut).code, 0);
    assert.deepEqual(await readdir(dir), [], 'the first one removed its socket and its lock');
    // A lock left by a process that is gone (SIGKILL) does not block.
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'dev-server.lock'), '999999999\n');
    const third = spawnCli(['dev-server', '--dir', dir, '--workload', 'a=/a']);
    const thirdOut = collect(third);
    await waitForFile(join(dir, 'a.sock'));
    third.kill('SIGTERM');
    assert.equal((await thirdOut).code, 0);
  });

  test('started through npm (sh -c, as npx does), the dev server stops when its launcher is killed', async () => {
    const dir = join(base, 'npx');
    const cmd = `"${process.execPath}" ${NODE_ARGS.map((a) => `"${a}"`).join(' ')} dev-server --dir "${dir}" --workload a=/a >/dev/null`;
    const sh = spawn('/bin/sh', ['-c', cmd], { stdio: 'ignore', env: { ...process.env, npm_command: 'exec' } });
    await waitForFile(join(dir, 'a.sock'));
    const pid = Number((await readFile(join(dir, 'dev-server.lock'), 'utf8')).trim());
    sh.kill('SIGKILL');
    await waitFor(() => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    assert.deepEqual(await readdir(dir), [], 'it stopped cleanly: socket and lock removed');
  });
});

async function waitFor(probe: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitForFile(path: string): Promise<void> {
  await waitFor(() =>
    readFile(path).then(
      () => true,
      (err: NodeJS.ErrnoException) => err.code === 'EOPNOTSUPP' || err.code === 'ENXIO',
    ),
  );
}
