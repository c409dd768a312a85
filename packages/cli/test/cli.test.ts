import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runCli } from '@spiffe-ts/cli';
import { FileX509Source, fetchBundle, X509Bundle, X509Source, X509Svid } from '@spiffe-ts/core';
import { cli } from './run-cli.js';

const BIN = fileURLToPath(new URL('../src/bin.ts', import.meta.url));

interface DevProc {
  child: ChildProcess;
  workloads: Record<string, string>;
  /** The whole ready line. */
  ready: Record<string, unknown>;
}

async function startDevServer(dir: string, extra: string[] = []): Promise<DevProc> {
  const child = spawn(
    process.execPath,
    [
      '--conditions=source',
      '--import',
      'tsx',
      BIN,
      'dev-server',
      '--dir',
      dir,
      '--workload',
      'orders=spiffe://example.org/service/orders',
      '--workload',
      'pay=/service/payment-processor',
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let buf = '';
  const line = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`dev-server did not start: ${buf}`)), 20_000);
    child.stdout?.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(t);
        resolve(buf.slice(0, nl));
      }
    });
    child.on('exit', (c) => reject(new Error(`dev-server exited ${c}`)));
  });
  const ready = JSON.parse(line) as { ready: boolean; workloads: Record<string, string> };
  assert.equal(ready.ready, true);
  return { child, workloads: ready.workloads, ready };
}

describe('spiffe-ts CLI against the dev-server command (separate process, real unix sockets)', () => {
  let dir: string;
  let dev: DevProc;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spiffe-cli-'));
    dev = await startDevServer(dir);
  });
  after(async () => {
    dev.child.kill('SIGTERM');
    await once(dev.child, 'exit');
    await rm(dir, { recursive: true, force: true });
  });

  test('fetch x509 --write writes a parseable SVID, key and bundle', async () => {
    const outDir = join(dir, 'x509');
    const r = await cli(['fetch', 'x509', '--socket', dev.workloads.orders as string, '--write', outDir, '--json']);
    assert.equal(r.code, 0, r.err);
    const info = JSON.parse(r.out);
    assert.equal(info.svids[0].spiffeId, 'spiffe://example.org/service/orders');
    const svid = X509Svid.parse(
      await readFile(join(outDir, 'svid.0.pem'), 'utf8'),
      await readFile(join(outDir, 'svid.0.key'), 'utf8'),
    );
    assert.equal(svid.id.toString(), 'spiffe://example.org/service/orders');
    assert.equal((await stat(join(outDir, 'svid.0.key'))).mode & 0o777, 0o600, 'private key is 0600');
    assert.match(await readFile(join(outDir, 'bundle.0.pem'), 'utf8'), /BEGIN CERTIFICATE/);
  });

  test('fetch jwt, then validate jwt (Workload API and --local), valid and invalid', async () => {
    const f = await cli(['fetch', 'jwt', '--socket', dev.workloads.pay as string, '--audience', 'orders']);
    assert.equal(f.code, 0, f.err);
    const token = f.out.trim();
    assert.equal(token.split('.').length, 3);
    const v = await cli(
      ['validate', 'jwt', '--socket', dev.workloads.orders as string, '--audience', 'orders', '--json'],
      { stdin: token },
    );
    assert.equal(v.code, 0, v.err);
    assert.equal(JSON.parse(v.out).spiffeId, 'spiffe://example.org/service/payment-processor');
    const local = await cli([
      'validate',
      'jwt',
      '--socket',
      dev.workloads.orders as string,
      '--audience',
      'orders',
      '--local',
      '--token',
      token,
    ]);
    assert.equal(local.code, 0, local.err);
    const bad = await cli([
      'validate',
      'jwt',
      '--socket',
      dev.workloads.orders as string,
      '--audience',
      'billing',
      '--token',
      token,
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /WORKLOADAPI_INVALID_ARGUMENT/);
    const badLocal = await cli([
      'validate',
      'jwt',
      '--socket',
      dev.workloads.orders as string,
      '--audience',
      'billing',
      '--local',
      '--token',
      token,
    ]);
    assert.match(badLocal.err, /JWTSVID_AUDIENCE_MISMATCH/);
  });

  test('without --bundle-endpoint-port there is no bundle endpoint in the ready line', () => {
    assert.equal(dev.ready.bundleEndpointUrl, undefined);
    assert.equal(dev.ready.bundleEndpointSpiffeId, undefined);
  });

  test('fetch bundles; bad input gives typed errors and non-zero exits, never a stack trace', async () => {
    const b = await cli(['fetch', 'bundles', '--socket', dev.workloads.orders as string, '--json']);
    assert.equal(b.code, 0, b.err);
    assert.equal(JSON.parse(b.out).x509[0].trustDomain, 'example.org');
    const badAddr = await cli(['fetch', 'x509', '--socket', 'tcp://localhost:1']);
    assert.equal(badAddr.code, 1);
    assert.match(badAddr.err, /^error \[WORKLOADAPI_BAD_ADDRESS\]/);
    const usage = await cli(['fetch', 'x509', '--bogus']);
    assert.equal(usage.code, 2);
    assert.equal((await cli(['nope'])).code, 2);
    const absent = await cli(['fetch', 'x509', '--socket', `unix://${join(dir, 'absent.sock')}`, '--timeout', '300']);
    assert.equal(absent.code, 1);
    assert.match(absent.err, /WORKLOADAPI_UNAVAILABLE/);
    assert.doesNotMatch(absent.err, /\n\s+at /, 'no stack trace');
  });

  test('helper keeps files rotated and signals the child program on rotation', async () => {
    const outDir = join(dir, 'helper');
    const marker = join(dir, 'signals.log');
    const script = join(dir, 'child.cjs');
    await writeFile(
      script,
      `const fs=require('fs');fs.appendFileSync(${JSON.stringify(marker)},'start\\n');` +
        `process.on('SIGHUP',()=>fs.appendFileSync(${JSON.stringify(marker)},'HUP\\n'));` +
        `process.on('SIGTERM',()=>process.exit(0));setInterval(()=>{},1000);`,
    );
    const ac = new AbortController();
    const running = runHelper(outDir, script, ac.signal);
    const fileSource = await waitFor(async () => {
      await stat(join(outDir, 'svid.pem'));
      return new FileX509Source({
        certFile: join(outDir, 'svid.pem'),
        keyFile: join(outDir, 'svid_key.pem'),
        bundleFile: join(outDir, 'svid_bundle.pem'),
        pollIntervalMs: 100,
      });
    });
    try {
      const before = fileSource.getX509Svid().leaf.serialNumber;
      await waitFor(async () => assert.match(await readFile(marker, 'utf8'), /start/));
      dev.child.kill('SIGUSR1'); // the dev server rotates every SVID
      await waitFor(async () => assert.match(await readFile(marker, 'utf8'), /HUP/));
      await waitFor(async () => assert.notEqual(fileSource.getX509Svid().leaf.serialNumber, before));
    } finally {
      fileSource.close();
      ac.abort();
    }
    assert.equal(await running, 0);
  });

  function runHelper(outDir: string, script: string, signal: AbortSignal): Promise<number> {
    return runCli(
      [
        'helper',
        '--socket',
        dev.workloads.orders as string,
        '--dir',
        outDir,
        '--cmd',
        process.execPath,
        '--arg',
        script,
        '--signal',
        'SIGHUP',
      ],
      { out: () => undefined, err: () => undefined, signal },
    );
  }
});

async function waitFor<T>(fn: () => Promise<T>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

test('dev-server --bundle-endpoint-port 0: the ready line names a bundle endpoint that serves the trust domain bundle (https_spiffe)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'spiffe-cli-be-'));
  const dev = await startDevServer(dir, ['--bundle-endpoint-port', '0', '--bundle-endpoint-host', '127.0.0.1']);
  try {
    const url = dev.ready.bundleEndpointUrl as string;
    assert.match(url, /^https:\/\/127\.0\.0\.1:[1-9]\d*\//);
    assert.equal(dev.ready.bundleEndpointSpiffeId, 'spiffe://example.org/bundle-endpoint');
    // Bootstrap bundle as a federating side would get it: the trust domain's X.509 bundle, here from the
    // Workload API of the same dev server.
    const b = await cli(['fetch', 'bundles', '--socket', dev.workloads.orders as string, '--json']);
    assert.equal(b.code, 0, b.err);
    const pem = (JSON.parse(b.out) as { x509: Array<{ pem: string }> }).x509[0]?.pem as string;
    const bootstrap = X509Bundle.parse('example.org', pem);
    const fetched = await fetchBundle({
      trustDomain: 'example.org',
      url,
      profile: { type: 'https_spiffe', endpointSpiffeId: 'spiffe://example.org/bundle-endpoint', bundle: bootstrap },
    });
    assert.equal(fetched.trustDomain.name, 'example.org');
    assert.deepEqual(
      fetched.x509Authorities.map((c) => c.fingerprint256),
      bootstrap.authorities.map((c) => c.fingerprint256),
    );
    // The endpoint presents exactly that SPIFFE ID: expecting another one fails closed.
    await assert.rejects(
      fetchBundle({
        trustDomain: 'example.org',
        url,
        profile: { type: 'https_spiffe', endpointSpiffeId: 'spiffe://example.org/other', bundle: bootstrap },
      }),
      (err: { code?: string }) => typeof err.code === 'string' && err.code.startsWith('FEDERATION_'),
    );
  } finally {
    dev.child.kill('SIGTERM');
    await once(dev.child, 'exit');
    await rm(dir, { recursive: true, force: true });
  }
});

test('Workload API process killed (SIGKILL) mid-stream and restarted: the live source recovers', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'spiffe-kill-'));
  let dev = await startDevServer(dir);
  const source = await X509Source.create({
    address: dev.workloads.orders,
    timeoutMs: 10_000,
    backoff: { initialMs: 50, maxMs: 500 },
  });
  try {
    const first = source.getX509Svid();
    dev.child.kill('SIGKILL');
    await once(dev.child, 'exit');
    // the source keeps serving the last good SVID while the agent is gone
    assert.equal(source.getX509Svid(), first);
    dev = await startDevServer(dir);
    await waitFor(async () => assert.notEqual(source.getX509Svid().leaf.serialNumber, first.leaf.serialNumber));
    assert.equal(source.getX509Svid().id.toString(), 'spiffe://example.org/service/orders');
    assert.equal(source.lastError?.code, 'WORKLOADAPI_UNAVAILABLE', 'the outage was reported');
  } finally {
    await source.close();
    dev.child.kill('SIGTERM');
    await once(dev.child, 'exit');
    await rm(dir, { recursive: true, force: true });
  }
});
