// Identity behind a proxy (trustedProxy + x-forwarded-client-cert), tokens bound to the peer, and path
// allowlists, over real sockets: mTLS from a "proxy" workload, and plain HTTP on loopback as a local sidecar.
// XFCC values follow Envoy's documented format (no Envoy binary is available from the package registries).
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { JwtBundleSet, matchId, X509Source } from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { fastifySpiffe, type SpiffeDenial, spiffeServerTls } from '@spiffe-ts/fastify';
import Fastify, { type FastifyInstance } from 'fastify';
import { type Dispatcher, request } from 'undici';

const SERVER = 'spiffe://example.org/ns/prod/sa/orders';
const PROXY = 'spiffe://example.org/ns/prod/sa/envoy';
const ROGUE_PROXY = 'spiffe://example.org/ns/prod/sa/rogue-envoy';
const CLIENT = 'spiffe://example.org/ns/prod/sa/frontend';
const HASH = '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688';
const xfcc = (uri: string, by = PROXY) => `By=${by};Hash=${HASH};Subject="";URI=${uri}`;

let dev: DevWorkloadApiServer;
let serverSource: X509Source;
let app: FastifyInstance;
let base: string;
const denials: SpiffeDenial[] = [];
const clients: Array<{ source: X509Source; dispatcher: Dispatcher }> = [];

async function clientFor(workload: string): Promise<Dispatcher> {
  const source = await X509Source.create({ address: dev.address(workload), timeoutMs: 5000 });
  const dispatcher = createSpiffeDispatcher({ source, authorize: matchId(SERVER) });
  clients.push({ source, dispatcher });
  return dispatcher;
}

async function get(url: string, headers: Record<string, string>, dispatcher?: Dispatcher) {
  const res = await request(url, { headers, ...(dispatcher ? { dispatcher } : {}) });
  const body = await res.body.text();
  return { status: res.statusCode, body, json: () => JSON.parse(body) as Record<string, unknown> };
}

describe('@spiffe-ts/fastify trustedProxy over mTLS (proxy identified by SPIFFE ID)', () => {
  before(async () => {
    dev = await DevWorkloadApiServer.start({
      workloads: { server: SERVER, proxy: PROXY, rogue: ROGUE_PROXY, client: CLIENT },
    });
    serverSource = await X509Source.create({ address: dev.address('server'), timeoutMs: 5000 });
    const spiffe = spiffeServerTls(serverSource);
    app = Fastify({ https: spiffe.options });
    await app.register(fastifySpiffe, {
      tls: spiffe,
      allow: [{ trustDomain: 'example.org', path: '/ns/*/sa/frontend' }, PROXY],
      trustedProxy: { ids: [PROXY] },
      onDenied: (e) => denials.push(e),
    });
    app.get('/who', async (req) => ({ id: req.spiffeId?.toString(), source: req.spiffeIdSource }));
    app.get(
      '/prod',
      { config: { spiffe: { allow: { trustDomain: 'example.org', pathPrefix: '/ns/prod' } } } },
      async (req) => ({
        id: req.spiffeId?.toString(),
      }),
    );
    await app.listen({ port: 0, host: '127.0.0.1' });
    base = `https://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const c of clients) {
      await c.dispatcher.close();
      await c.source.close();
    }
    await app.close();
    await serverSource.close();
    await dev.stop();
  });

  test('the trusted proxy forwards the client ID; the request shows it came from the proxy', async () => {
    const proxy = await clientFor('proxy');
    const res = await get(`${base}/who`, { 'x-forwarded-client-cert': xfcc(CLIENT) }, proxy);
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { id: CLIENT, source: 'proxy' });
    // Without the header the proxy is just an mTLS peer.
    const own = await get(`${base}/who`, {}, proxy);
    assert.deepEqual(own.json(), { id: PROXY, source: 'connection' });
  });

  test('multi-hop: the last element (added by the nearest proxy) is the one used', async () => {
    const proxy = await clientFor('proxy');
    const header = `${xfcc('spiffe://example.org/ns/prod/sa/not-me', 'spiffe://edge')},${xfcc(CLIENT)}`;
    const res = await get(`${base}/who`, { 'x-forwarded-client-cert': header }, proxy);
    assert.deepEqual(res.json(), { id: CLIENT, source: 'proxy' });
    const spoofLast = `${xfcc(CLIENT)},${xfcc('spiffe://example.org/ns/prod/sa/admin')}`;
    const denied = await get(`${base}/who`, { 'x-forwarded-client-cert': spoofLast }, proxy);
    assert.equal(denied.status, 403);
    assert.equal(denied.json().code, 'UNAUTHORIZED_SPIFFE_ID');
  });

  test('a forwarded ID goes through the same allowlists (path prefix route)', async () => {
    const proxy = await clientFor('proxy');
    const ok = await get(`${base}/prod`, { 'x-forwarded-client-cert': xfcc(CLIENT) }, proxy);
    assert.equal(ok.status, 200);
    const other = await get(
      `${base}/prod`,
      { 'x-forwarded-client-cert': xfcc('spiffe://example.org/ns/production/sa/x') },
      proxy,
    );
    assert.equal(other.status, 403);
    assert.equal(other.json().code, 'UNAUTHORIZED_SPIFFE_ID');
  });

  test('spoofing: a direct client sending XFCC is refused, not trusted and not ignored', async () => {
    const client = await clientFor('client');
    denials.length = 0;
    const res = await get(
      `${base}/who`,
      { 'x-forwarded-client-cert': xfcc('spiffe://example.org/ns/prod/sa/admin') },
      client,
    );
    assert.equal(res.status, 403);
    assert.equal(res.json().code, 'XFCC_UNTRUSTED_PEER');
    assert.equal(denials[0]?.spiffeId?.toString(), CLIENT, 'the denial names the verified connection, not the header');
  });

  test('spoofing: a proxy not on the trusted list is refused', async () => {
    const rogue = await clientFor('rogue');
    const res = await get(`${base}/prod`, { 'x-forwarded-client-cert': xfcc(CLIENT, ROGUE_PROXY) }, rogue);
    assert.equal(res.status, 403);
    assert.equal(res.json().code, 'XFCC_UNTRUSTED_PEER');
  });

  test('malformed headers from the trusted proxy are refused', async () => {
    const proxy = await clientFor('proxy');
    for (const h of [
      `URI=${CLIENT};`,
      `URI="${CLIENT}`,
      `Foo=bar;URI=${CLIENT}`,
      `URI=${CLIENT};URI=${PROXY}`,
      'DNS=x',
    ]) {
      const res = await get(`${base}/who`, { 'x-forwarded-client-cert': h }, proxy);
      assert.equal(res.status, 403, h);
      assert.equal(res.json().code, 'XFCC_MALFORMED', h);
    }
  });
});

describe('@spiffe-ts/fastify trustedProxy as a local sidecar, with tokens bound to the peer', () => {
  let ca: Awaited<ReturnType<typeof DevWorkloadApiServer.start>>;
  let sidecarApp: FastifyInstance;
  let url: string;
  before(async () => {
    ca = await DevWorkloadApiServer.start({ workloads: { x: SERVER } });
    sidecarApp = Fastify();
    await sidecarApp.register(fastifySpiffe, {
      allow: { trustDomain: 'example.org', path: '/ns/*/sa/frontend' },
      trustedProxy: { localSidecar: true },
      jwt: { bundles: new JwtBundleSet([ca.ca.jwtBundle()]), audience: 'orders', bindToPeer: true, optIn: true },
    });
    sidecarApp.get('/who', async (req) => ({ id: req.spiffeId?.toString(), source: req.spiffeIdSource }));
    sidecarApp.get('/bound', { config: { spiffe: { jwt: true } } }, async (req) => ({
      sub: req.jwtSvid?.id.toString(),
    }));
    await sidecarApp.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(sidecarApp.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await sidecarApp.close();
    await ca.stop();
  });

  test('plain HTTP from loopback: the sidecar forwards the ID', async () => {
    const res = await get(`${url}/who`, { 'x-forwarded-client-cert': xfcc(CLIENT) });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { id: CLIENT, source: 'proxy' });
    const none = await get(`${url}/who`, {});
    assert.equal(none.status, 403);
    assert.equal(none.json().code, 'PEER_NOT_VERIFIED');
  });

  test('bindToPeer: the token subject must be the forwarded peer', async () => {
    const good = (await ca.ca.issueJwtSvid(CLIENT, ['orders'])).token;
    const other = (await ca.ca.issueJwtSvid('spiffe://example.org/ns/prod/sa/someone-else', ['orders'])).token;
    const ok = await get(`${url}/bound`, { 'x-forwarded-client-cert': xfcc(CLIENT), authorization: `Bearer ${good}` });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json(), { sub: CLIENT });
    const unbound = await get(`${url}/bound`, {
      'x-forwarded-client-cert': xfcc(CLIENT),
      authorization: `Bearer ${other}`,
    });
    assert.equal(unbound.status, 401);
    assert.equal(unbound.json().code, 'JWTSVID_NOT_BOUND_TO_PEER');
  });

  test('bad options fail at start-up', async () => {
    const a = Fastify();
    await assert.rejects(async () => {
      await a.register(fastifySpiffe, { trustedProxy: {} });
      await a.ready();
    }, TypeError);
    const b = Fastify();
    await assert.rejects(async () => {
      await b.register(fastifySpiffe, { allow: { trustDomain: 'example.org', path: '/ns/pro*' } });
      await b.ready();
    });
  });
});
