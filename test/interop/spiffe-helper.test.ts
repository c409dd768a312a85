// Parity of `spiffe-ts helper --config` with SPIFFE Helper v0.11.0 itself (built by build-spiffe-helper.sh):
// the same config file, against the same Workload API (our dev server on a unix socket), must give the same
// file names, modes and contents, the same signals to the program and to the pid file's process, the same
// health check answers, and the same verdicts on bad configs. Run with test/interop/run.sh.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { insecureParseJwtSvid, parseAndValidateJwtSvid } from '@spiffe-ts/core';
import { DevCa, DevWorkloadApiServer } from '@spiffe-ts/dev-server';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'packages/cli/src/bin.ts');
const BUILD = join(ROOT, 'test/interop/build-spiffe-helper.sh');

/** Which implementation: spiffe-helper (Go) or ours. */
type Impl = 'go' | 'ts';
const IMPLS: readonly Impl[] = ['go', 'ts'];

let helperBin: string;
let base: string;
let dev: DevWorkloadApiServer;
let socket: string;

/** Arguments that run one implementation with a config file. */
function command(impl: Impl, args: string[]): [string, string[]] {
  return impl === 'go'
    ? [helperBin, args]
    : [process.execPath, ['--conditions=source', '--import', 'tsx', CLI, 'helper', ...args]];
}

async function runOnce(impl: Impl, args: string[]): Promise<{ code: number; stderr: string }> {
  const [file, argv] = command(impl, args);
  try {
    const r = await run(file, argv, { cwd: ROOT, timeout: 60_000 });
    return { code: 0, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stderr: e.stderr ?? '' };
  }
}

/** A config file for `impl`, its files in base/<name>/<impl>. */
function config(name: string, impl: Impl, body: string): { file: string; dir: string } {
  const dir = join(base, name, impl);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(base, name, `${impl}.conf`);
  writeFileSync(file, `agent_address = "${socket}"\ncert_dir = "${dir}"\n${body}`);
  return { file, dir };
}

const listing = (dir: string) =>
  readdirSync(dir)
    .sort()
    .map((f) => `${f} ${(statSync(join(dir, f)).mode & 0o7777).toString(8)}`);

async function freePort(): Promise<number> {
  const srv = createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const lines = (file: string) => {
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
};

// A program that logs its start and each SIGUSR1 to the file named by its argument, and exits on SIGTERM.
const PROGRAM = `const fs = require('fs'); const log = process.argv[2];
fs.appendFileSync(log, 'start ' + process.pid + '\\n');
if (process.argv[3]) fs.writeFileSync(process.argv[3], String(process.pid));
process.on('SIGUSR1', () => fs.appendFileSync(log, 'SIGUSR1\\n'));
process.on('SIGTERM', () => process.exit(0));
setInterval(() => {}, 1000);`;

describe('spiffe-ts helper --config against spiffe-helper v0.11.0, same config, same Workload API', () => {
  let partner: DevCa;
  before(async () => {
    const built = await run('bash', [BUILD], { timeout: 15 * 60_000, maxBuffer: 16 * 1024 * 1024 });
    helperBin = built.stdout.trim().split('\n').pop() as string;
    base = mkdtempSync(join(tmpdir(), 'spiffe-helper-parity-'));
    partner = await DevCa.create({ trustDomain: 'partner.example' });
    dev = await DevWorkloadApiServer.start({
      socketDir: join(base, 'sock'),
      // Two SVIDs, hints "a" and "b", and a federated trust domain: `hint` and include_federated_domains matter.
      workloads: { w: ['spiffe://example.org/svc/a', 'spiffe://example.org/svc/b'] },
      federatedWith: [partner],
      autoRotate: false,
      jwtTtlSeconds: 600,
    });
    socket = dev.address('w').replace(/^unix:\/\//, '');
  });
  after(async () => {
    await dev?.stop();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  test('one-shot (-daemon-mode=false) with every file key: same names, modes and contents', async () => {
    const body = `
svid_file_name = "cert.pem"
svid_key_file_name = "key.pem"
svid_bundle_file_name = "ca.pem"
jwt_bundle_file_name = "bundle.json"
jwt_svids = [
  { jwt_audience = "aud1", jwt_extra_audiences = ["aud2"], jwt_svid_file_name = "one.jwt" },
  { jwt_audience = "other", jwt_svid_file_name = "two.jwt" }
]
cert_file_mode = 0444
key_file_mode = 0400
jwt_bundle_file_mode = 0640
jwt_svid_file_mode = 0440
add_intermediates_to_bundle = true
include_federated_domains = true
hint = "b"
cmd = "/bin/false"
`;
    const dirs: Record<string, string> = {};
    for (const impl of IMPLS) {
      const { file, dir } = config('oneshot', impl, body);
      dirs[impl] = dir;
      const r = await runOnce(impl, ['-config', file, '-daemon-mode=false']);
      assert.equal(r.code, 0, `${impl}: ${r.stderr}`);
      assert.match(r.stderr, /cmd .*ignored|cmd will be ignored/, `${impl} warns that cmd is ignored`);
    }
    const go = dirs.go as string;
    const ts = dirs.ts as string;
    assert.deepEqual(listing(ts), listing(go));
    assert.deepEqual(listing(go), [
      'bundle.json 640',
      'ca.pem 444',
      'cert.pem 444',
      'key.pem 400',
      'one.jwt 440',
      'two.jwt 440',
    ]);
    for (const f of ['cert.pem', 'key.pem', 'ca.pem', 'bundle.json']) {
      assert.equal(readFileSync(join(ts, f), 'utf8'), readFileSync(join(go, f), 'utf8'), `${f} is the same`);
    }
    // The hinted SVID, and the partner's CA in the bundle file (include_federated_domains).
    assert.match(readFileSync(join(go, 'ca.pem'), 'utf8'), /BEGIN CERTIFICATE[\s\S]*BEGIN CERTIFICATE/);
    const bundles = dev.ca.jwtBundle();
    for (const f of ['one.jwt', 'two.jwt']) {
      const [g, t] = [readFileSync(join(go, f), 'utf8'), readFileSync(join(ts, f), 'utf8')];
      const [cg, ct] = [insecureParseJwtSvid(g), insecureParseJwtSvid(t)];
      assert.equal(ct.id.toString(), cg.id.toString(), `${f}: same subject`);
      assert.equal(cg.id.toString(), 'spiffe://example.org/svc/b', 'the hinted SVID');
      if (f === 'two.jwt') assert.deepEqual([...ct.audience], [...cg.audience], `${f}: same audience`);
      // spiffe-helper v0.11.0 drops jwt_extra_audiences in one-shot mode (its daemon mode sends them); we
      // send them in both modes, as its documentation says (a documented difference).
      else assert.deepEqual([[...cg.audience], [...ct.audience].sort()], [['aud1'], ['aud1', 'aud2']]);
      await parseAndValidateJwtSvid(t, bundles, ct.audience[0] as string);
    }
  });

  test('bad configs: both refuse them (spiffe-helper exits 1, we exit 2 with HELPER_CONFIG_INVALID)', async () => {
    const files = 'svid_file_name = "a"\nsvid_key_file_name = "b"\nsvid_bundle_file_name = "c"\n';
    const cases: Record<string, string> = {
      'unknown key': `${files}svid_file_nam = "x"\n`,
      'unknown key in jwt_svids': `jwt_svids = [{ jwt_audience = "a", jwt_svid_file_name = "f", audience = "x" }]\n`,
      'two of the three X.509 names': 'svid_file_name = "a"\nsvid_key_file_name = "b"\n',
      'nothing to write': 'cert_file_mode = 0644\n',
      'pid_file_name without renew_signal': `${files}pid_file_name = "/tmp/x.pid"\n`,
      'pid_file_name with daemon_mode = false': `${files}pid_file_name = "/tmp/x.pid"\nrenew_signal = "SIGHUP"\ndaemon_mode = false\n`,
      'jwt_svids without jwt_audience': 'jwt_svids = [{ jwt_svid_file_name = "f" }]\n',
      'not HCL': `${files}hint = "unterminated\n`,
    };
    for (const [name, body] of Object.entries(cases)) {
      for (const impl of IMPLS) {
        const { file } = config(`bad-${name.replace(/\W+/g, '-')}`, impl, body);
        const r = await runOnce(impl, ['-config', file]);
        if (impl === 'go') assert.equal(r.code, 1, `spiffe-helper refuses "${name}": ${r.stderr}`);
        else {
          assert.equal(r.code, 2, `we refuse "${name}": ${r.stderr}`);
          assert.match(r.stderr, /^error \[HELPER_CONFIG_INVALID\]/m, name);
          assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
        }
      }
    }
  });

  test('daemon: cmd and pid_file_name signalled alike, health checks alike, rewrites alike', async () => {
    const procs: ChildProcess[] = [];
    const state: Record<Impl, { dir: string; port: number; cmdLog: string; pidLog: string; proc?: ChildProcess }> =
      {} as never;
    const program = join(base, 'program.cjs');
    writeFileSync(program, PROGRAM);
    try {
      for (const impl of IMPLS) {
        const port = await freePort();
        const cmdLog = join(base, `cmd-${impl}.log`);
        const pidLog = join(base, `pid-${impl}.log`);
        const pidFile = join(base, `target-${impl}.pid`);
        // The externally managed process that pid_file_name points at.
        const target = spawn(process.execPath, [program, pidLog, pidFile], { stdio: 'ignore' });
        procs.push(target);
        await waitFor('pid file', () => (lines(pidFile).length ? true : undefined));
        const { file, dir } = config(
          'daemon',
          impl,
          `svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
jwt_bundle_file_name = "jwt_bundle.json"
jwt_svids = [{ jwt_audience = "db", jwt_svid_file_name = "db.jwt" }]
cmd = "${process.execPath}"
cmd_args = "${program} ${cmdLog}"
renew_signal = "SIGUSR1"
pid_file_name = "${pidFile}"
health_checks {
  listener_enabled = true
  bind_port = ${port}
  liveness_path = "/healthz"
}
`,
        );
        const [bin, argv] = command(impl, ['-config', file]);
        const proc = spawn(bin, argv, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        proc.stderr?.on('data', (d) => {
          stderr += d;
        });
        proc.on('exit', (code) => {
          if (code !== 0 && code !== null) console.error(`${impl} helper exited ${code}: ${stderr}`);
        });
        procs.push(proc);
        state[impl] = { dir, port, cmdLog, pidLog, proc };
      }

      const get = async (impl: Impl, path: string) => {
        const r = await fetch(`http://127.0.0.1:${state[impl].port}${path}`);
        const text = await r.text();
        return { status: r.status, type: r.headers.get('content-type'), body: text.split(state[impl].dir).join('DIR') };
      };
      for (const impl of IMPLS) {
        await waitFor(`${impl} ready`, async () => ((await get(impl, '/ready')).status === 200 ? true : undefined));
        // The program is started after the first write, and the pid file's process signalled for it.
        await waitFor(`${impl} program started`, () => (lines(state[impl].cmdLog).length === 1 ? true : undefined));
        await waitFor(`${impl} pid signalled`, () =>
          lines(state[impl].pidLog).includes('SIGUSR1') ? true : undefined,
        );
      }
      for (const path of ['/ready', '/healthz', '/live', '/nope']) {
        const [g, t] = [await get('go', path), await get('ts', path)];
        assert.deepEqual({ ...t, type: t.type?.split(';')[0] }, { ...g, type: g.type?.split(';')[0] }, path);
      }
      assert.deepEqual(JSON.parse((await get('ts', '/ready')).body), {
        status: 'OK',
        health: {
          file_write_statuses: {
            x509_write_status: 'written',
            jwt_write_status: { 'DIR/db.jwt': 'written', 'DIR/jwt_bundle.json': 'written' },
          },
        },
      });
      assert.deepEqual(listing(state.ts.dir), listing(state.go.dir));
      for (const f of ['svid.pem', 'svid_key.pem', 'svid_bundle.pem', 'jwt_bundle.json']) {
        assert.equal(readFileSync(join(state.ts.dir, f), 'utf8'), readFileSync(join(state.go.dir, f), 'utf8'), f);
      }

      // Rotation: both rewrite the SVID and signal the program and the pid file's process once more.
      const bundleIno = statSync(join(state.ts.dir, 'svid_bundle.pem')).ino;
      const jwtBundleIno = statSync(join(state.ts.dir, 'jwt_bundle.json')).ino;
      const before = readFileSync(join(state.go.dir, 'svid.pem'), 'utf8');
      await dev.rotateSvids();
      for (const impl of IMPLS) {
        await waitFor(`${impl} rewrote svid.pem`, () =>
          readFileSync(join(state[impl].dir, 'svid.pem'), 'utf8') !== before ? true : undefined,
        );
        await waitFor(`${impl} signalled the program`, () =>
          lines(state[impl].cmdLog).filter((l) => l === 'SIGUSR1').length === 1 ? true : undefined,
        );
        await waitFor(`${impl} signalled the pid file's process`, () =>
          lines(state[impl].pidLog).filter((l) => l === 'SIGUSR1').length === 2 ? true : undefined,
        );
      }
      for (const f of ['svid.pem', 'svid_key.pem', 'svid_bundle.pem']) {
        assert.equal(readFileSync(join(state.ts.dir, f), 'utf8'), readFileSync(join(state.go.dir, f), 'utf8'), f);
      }
      // Ours leaves files whose content did not change alone (spiffe-helper rewrites them in place).
      assert.equal(statSync(join(state.ts.dir, 'svid_bundle.pem')).ino, bundleIno, 'unchanged bundle not rewritten');
      assert.equal(statSync(join(state.ts.dir, 'jwt_bundle.json')).ino, jwtBundleIno, 'JWT bundle not rewritten');
      assert.deepEqual(lines(state.ts.cmdLog).length, lines(state.go.cmdLog).length, 'program started once each');

      // SIGTERM: both exit 0.
      for (const impl of IMPLS) {
        const proc = state[impl].proc as ChildProcess;
        const exited = once(proc, 'exit');
        proc.kill('SIGTERM');
        const [code] = await exited;
        assert.equal(code, 0, `${impl} exits 0 on SIGTERM`);
      }
    } finally {
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      // spiffe-helper leaves its program running when it exits: end both programs.
      for (const impl of IMPLS) {
        const start = lines(state[impl]?.cmdLog ?? '').find((l) => l.startsWith('start '));
        if (start) {
          try {
            process.kill(Number(start.slice(6)), 'SIGKILL');
          } catch {
            // already gone (ours stops it on SIGTERM)
          }
        }
      }
    }
  });
});
