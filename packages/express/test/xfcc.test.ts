// Identity behind a proxy (trustedProxy + x-forwarded-client-cert), tokens bound to the peer, and path
// allowlists, over real sockets: mTLS from a "proxy" workload, and plain HTTP on loopback as a local sidecar.
// XFCC values follow Envoy's documented format (no Envoy binary is available from the package registries).
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { JwtBundleSet, matchId, X509Source } from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import {
  createSpiffeHttpsServer,
  jwtSvid,
  requirePeer,
  type SpiffeDenial,
  spiffeErrorHandler,
  spiffeIdentity,
  spiffeServerTls,
} from '@spiffe-ts/express';
import express from 'express';
import { type Dispatcher, request } from 'undici';

const SERVER = 'spiffe://example.org/ns/prod/sa/orders';
const PROXY = 'spiffe://example.org/ns/prod/sa/envoy';
const ROGUE_PROXY = 'spiffe://example.org/ns/prod/sa/rogue-envoy';
const CLIENT = 'spiffe://example.org/ns/prod/sa/frontend';
const HASH = '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688';
const xfcc = (uri: string, by = PROXY) => `By=${by};Hash=${HASH};Subject="";URI=${uri}`;

let dev: DevWorkloadApiServer;
let serverSource: X509Source;
let server: https.Server;
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

function listen(s: http.Server | https.Server, scheme: string): Promise<string> {
  return new Promise((resolve) =>
    s.listen(0, '127.0.0.1', () => resolve(`${scheme}://127.0.0.1:${(s.address() as AddressInfo).port}`)),
  );
}

describe('@spiffe-ts/express trustedProxy over mTLS (proxy identified by SPIFFE ID)', () => {
  before(async () => {
    dev = await DevWorkloadApiServer.start({
      workloads: { server: SERVER, proxy: PROXY, rogue: ROGUE_PROXY, client: CLIENT },
    });
    serverSource = await X509Source.create({ address: dev.address('server'), timeoutMs: 5000 });
    const app = express();
    const trustedProxy = { ids: [PROXY] };
    const onDenied = (e: SpiffeDenial) => denials.push(e);
    app.get('/whoami', spiffeIdentity({ trustedProxy }), (req, res) => {
      res.json({ id: req.spiffeId?.toString(), source: req.spiffeIdSource });
    });
    app.use(
      requirePeer([{ trustDomain: 'example.org', path: '/ns/*/sa/frontend' }, PROXY], { trustedProxy, onDenied }),
    );
    app.get('/who', (req, res) => {
      res.json({ id: req.spiffeId?.toString(), source: req.spiffeIdSource });
    });
    app.get(
      '/prod',
      requirePeer({ trustDomain: 'example.org', pathPrefix: '/ns/prod' }, { trustedProxy }),
      (req, res) => {
        res.json({ id: req.spiffeId?.toString() });
      },
    );
    app.use(spiffeErrorHandler());
    server = createSpiffeHttpsServer(app, spiffeServerTls(serverSource));
    base = await listen(server, 'https');
  });
  after(async () => {
    for (const c of clients) {
      await c.dispatcher.close();
      await c.source.close();
    }
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await serverSource.close();
    await dev.stop();
  });

  test('the trusted proxy forwards the client ID; the request shows it came from the proxy', async () => {
    const proxy = await clientFor('proxy');
    const res = await get(`${base}/who`, { 'x-forwarded-client-cert': xfcc(CLIENT) }, proxy);
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { id: CLIENT, source: 'proxy' });
    const own = await get(`${base}/who`, {}, proxy);
    assert.deepEqual(own.json(), { id: PROXY, source: 'connection' });
    const identity = await get(`${base}/whoami`, { 'x-forwarded-client-cert': xfcc(CLIENT) }, proxy);
    assert.deepEqual(identity.json(), { id: CLIENT, source: 'proxy' });
  });

  test('multi-hop: the last element (added by the nearest proxy) is the one used', async () => {
    const proxy = await clientFor('proxy');
    const header = `${xfcc('spiffe://example.org/ns/prod/sa/not-me', 'spiffe://edge')},${xfcc(CLIENT)}`;
    assert.deepEqual((await get(`${base}/who`, { 'x-forwarded-client-cert': header }, proxy)).json(), {
      id: CLIENT,
      source: 'proxy',
    });
    const spoofLast = `${xfcc(CLIENT)},${xfcc('spiffe://example.org/ns/prod/sa/admin')}`;
    const denied = await get(`${base}/who`, { 'x-forwarded-client-cert': spoofLast }, proxy);
    assert.equal(denied.status, 403);
    assert.equal(denied.json().code, 'UNAUTHORIZED_SPIFFE_ID');
  });

  test('a forwarded ID goes through the same allowlists (path prefix)', async () => {
    const proxy = await clientFor('proxy');
    assert.equal((await get(`${base}/prod`, { 'x-forwarded-client-cert': xfcc(CLIENT) }, proxy)).status, 200);
    const h = { 'x-forwarded-client-cert': xfcc('spiffe://example.org/ns/production/sa/frontend') };
    const other = await get(`${base}/prod`, h, proxy);
    assert.equal(other.status, 403);
    assert.equal(other.json().code, 'UNAUTHORIZED_SPIFFE_ID');
  });

  test('spoofing: a direct client sending XFCC is refused, by requirePeer and by spiffeIdentity', async () => {
    const client = await clientFor('client');
    denials.length = 0;
    const h = { 'x-forwarded-client-cert': xfcc('spiffe://example.org/ns/prod/sa/admin') };
    for (const path of ['/who', '/whoami']) {
      const res = await get(`${base}${path}`, h, client);
      assert.equal(res.status, 403, path);
      assert.equal(res.json().code, 'XFCC_UNTRUSTED_PEER', path);
    }
    assert.equal(denials[0]?.spiffeId?.toString(), CLIENT, 'the denial names the verified connection');
  });

  test('spoofing: a proxy not on the trusted list is refused', async () => {
    const rogue = await clientFor('rogue');
    const res = await get(`${base}/who`, { 'x-forwarded-client-cert': xfcc(CLIENT, ROGUE_PROXY) }, rogue);
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

describe('@spiffe-ts/express trustedProxy as a local sidecar, with tokens bound to the peer', () => {
  let jdev: DevWorkloadApiServer;
  let plain: http.Server;
  let url: string;
  before(async () => {
    jdev = await DevWorkloadApiServer.start({ workloads: { x: SERVER } });
    const app = express();
    const trustedProxy = { localSidecar: true };
    app.use(requirePeer({ trustDomain: 'example.org', path: '/ns/*/sa/frontend' }, { trustedProxy }));
    app.get('/who', (req, res) => {
      res.json({ id: req.spiffeId?.toString(), source: req.spiffeIdSource });
    });
    const bundles = new JwtBundleSet([jdev.ca.jwtBundle()]);
    app.get('/bound', jwtSvid({ bundles, audience: 'orders', bindToPeer: true }), (req, res) => {
      res.json({ sub: req.jwtSvid?.id.toString() });
    });
    app.use(spiffeErrorHandler());
    plain = http.createServer(app);
    url = await listen(plain, 'http');
  });
  after(async () => {
    plain.closeAllConnections();
    await new Promise((r) => plain.close(r));
    await jdev.stop();
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
    const good = (await jdev.ca.issueJwtSvid(CLIENT, ['orders'])).token;
    const other = (await jdev.ca.issueJwtSvid('spiffe://example.org/ns/prod/sa/someone-else', ['orders'])).token;
    const h = { 'x-forwarded-client-cert': xfcc(CLIENT) };
    const ok = await get(`${url}/bound`, { ...h, authorization: `Bearer ${good}` });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json(), { sub: CLIENT });
    const unbound = await get(`${url}/bound`, { ...h, authorization: `Bearer ${other}` });
    assert.equal(unbound.status, 401);
    assert.equal(unbound.json().code, 'JWTSVID_NOT_BOUND_TO_PEER');
  });

  test('bad options fail when the middleware is built', () => {
    assert.throws(() => requirePeer([], { trustedProxy: {} }), TypeError);
    assert.throws(() => spiffeIdentity({ trustedProxy: { localSidecar: 1 as never } }), TypeError);
    assert.throws(() => requirePeer({ trustDomain: 'example.org', pathPrefix: '/ns//x' }));
    assert.throws(
      () => jwtSvid({ bundles: new JwtBundleSet([]), audience: 'a', bindToPeer: 'yes' as never }),
      TypeError,
    );
  });
});
