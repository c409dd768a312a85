// Identity behind a proxy (trustedProxy + x-forwarded-client-cert), tokens bound to the peer, and path
// allowlists, over real sockets: mTLS from a "proxy" workload, and plain HTTP on loopback as a local sidecar.
// The identities, XFCC headers and attack cases are shared with the other adapters (test/support/adapters.ts).
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { JwtBundleSet, X509Source } from '@spiffe-ts/core';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { fastifySpiffe, type SpiffeDenial, spiffeServerTls } from '@spiffe-ts/fastify';
import Fastify, { type FastifyInstance } from 'fastify';
import {
  assertXfccAnswer,
  CLIENT,
  forwarded,
  MALFORMED_XFCC,
  MULTI_HOP_XFCC,
  PROD_PREFIX_XFCC,
  PROXY,
  SERVER,
  send,
  spiffeClients,
  UNTRUSTED_XFCC,
  XFCC_WORKLOADS,
  xfcc,
} from '../../../test/support/adapters.js';

let dev: DevWorkloadApiServer;
let serverSource: X509Source;
let app: FastifyInstance;
let base: string;
const denials: SpiffeDenial[] = [];
const clients = spiffeClients(SERVER);
const clientFor = (workload: string) => clients.dispatcher(dev, workload);

describe('@spiffe-ts/fastify trustedProxy over mTLS (proxy identified by SPIFFE ID)', () => {
  before(async () => {
    dev = await DevWorkloadApiServer.start({
      workloads: XFCC_WORKLOADS,
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
    await clients.close();
    await app.close();
    await serverSource.close();
    await dev.stop();
  });

  test('the trusted proxy forwards the client ID; the request shows it came from the proxy', async () => {
    const proxy = await clientFor('proxy');
    const res = await send(`${base}/who`, { headers: forwarded(xfcc(CLIENT)), dispatcher: proxy });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { id: CLIENT, source: 'proxy' });
    // Without the header the proxy is just an mTLS peer.
    const own = await send(`${base}/who`, { dispatcher: proxy });
    assert.deepEqual(own.json(), { id: PROXY, source: 'connection' });
  });

  test('multi-hop: the last element (added by the nearest proxy) is the one used', async () => {
    const proxy = await clientFor('proxy');
    for (const c of MULTI_HOP_XFCC) {
      const res = await send(`${base}/who`, { headers: forwarded(c.header), dispatcher: proxy });
      assertXfccAnswer(res, c, (id) => ({ id, source: 'proxy' }), c.header);
    }
  });

  test('a forwarded ID goes through the same allowlists (path prefix route)', async () => {
    const proxy = await clientFor('proxy');
    for (const c of PROD_PREFIX_XFCC) {
      const res = await send(`${base}/prod`, { headers: forwarded(c.header), dispatcher: proxy });
      assertXfccAnswer(res, c, (id) => ({ id }), c.header);
    }
  });

  test('spoofing: a direct client sending XFCC is refused, not trusted and not ignored', async () => {
    const client = await clientFor('client');
    denials.length = 0;
    for (const c of UNTRUSTED_XFCC.filter((u) => u.from === 'client')) {
      const res = await send(`${base}/who`, { headers: forwarded(c.header), dispatcher: client });
      assert.equal(res.status, 403, c.header);
      assert.equal(res.json().code, 'XFCC_UNTRUSTED_PEER', c.header);
    }
    assert.equal(denials[0]?.spiffeId?.toString(), CLIENT, 'the denial names the verified connection, not the header');
  });

  test('spoofing: a proxy not on the trusted list is refused', async () => {
    const rogue = await clientFor('rogue');
    for (const c of UNTRUSTED_XFCC.filter((u) => u.from === 'rogue')) {
      const res = await send(`${base}/prod`, { headers: forwarded(c.header), dispatcher: rogue });
      assert.equal(res.status, 403, c.header);
      assert.equal(res.json().code, 'XFCC_UNTRUSTED_PEER', c.header);
    }
  });

  test('malformed headers from the trusted proxy are refused', async () => {
    const proxy = await clientFor('proxy');
    for (const h of MALFORMED_XFCC) {
      const res = await send(`${base}/who`, { headers: forwarded(h), dispatcher: proxy });
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
    const res = await send(`${url}/who`, { headers: forwarded(xfcc(CLIENT)) });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { id: CLIENT, source: 'proxy' });
    const none = await send(`${url}/who`);
    assert.equal(none.status, 403);
    assert.equal(none.json().code, 'PEER_NOT_VERIFIED');
  });

  test('bindToPeer: the token subject must be the forwarded peer', async () => {
    const good = (await ca.ca.issueJwtSvid(CLIENT, ['orders'])).token;
    const other = (await ca.ca.issueJwtSvid('spiffe://example.org/ns/prod/sa/someone-else', ['orders'])).token;
    const h = forwarded(xfcc(CLIENT));
    const ok = await send(`${url}/bound`, { headers: { ...h, authorization: `Bearer ${good}` } });
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.json(), { sub: CLIENT });
    const unbound = await send(`${url}/bound`, { headers: { ...h, authorization: `Bearer ${other}` } });
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
