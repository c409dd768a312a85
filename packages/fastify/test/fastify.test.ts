import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  isSpiffeAuthError,
  JwtBundleSet,
  JwtSource,
  matchMemberOf,
  type SpiffeError,
  type X509Source,
  type X509Svid,
} from '@spiffe-ts/core';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { fastifySpiffe, type SpiffeDenial, spiffeServerTls } from '@spiffe-ts/fastify';
import Fastify, { type FastifyInstance } from 'fastify';
import {
  type Answer,
  assertHandshakeRefused,
  assertOtherRefused,
  assertReshapedDenials,
  assertRotationUnderLoad,
  eventually,
  handshakeRefusedSvids,
  INVALID_TOKEN_CHALLENGE,
  type MtlsFixture,
  ORDERS,
  OTHER,
  PAYMENTS,
  refusedJwtSvids,
  selfSignedClientCert,
  send,
  sendBearer,
  spiffeClient,
  startMtlsFixture,
  withSvidDispatcher,
  workloadJwtSvid,
} from '../../../test/support/adapters.js';

let fx: MtlsFixture;
let dev: DevWorkloadApiServer;
let serverSource: X509Source;
let app: FastifyInstance;
let base: string;
const denials: SpiffeDenial[] = [];
// What the app's own logger (pino, through Fastify) wrote.
const logLines: Array<Record<string, unknown>> = [];
const logStream = { write: (line: string) => logLines.push(JSON.parse(line) as Record<string, unknown>) };

/** The first log line with this reason (the server may log just after the client sees the close). */
const logLineFor = (reason: string) =>
  eventually(() => logLines.find((l) => l.reason === reason), `no log line with reason ${reason}`);

const clientFor = (workload: string) => spiffeClient(dev, workload, ORDERS);
const callWithSvid = (svid: X509Svid, path = '/orders') =>
  withSvidDispatcher(fx, svid, (dispatcher) => send(`${base}${path}`, { dispatcher }));

describe('@spiffe-ts/fastify over real mTLS sockets', () => {
  before(async () => {
    fx = await startMtlsFixture();
    ({ dev, serverSource } = fx);
    const spiffe = spiffeServerTls(serverSource);
    app = Fastify({ https: spiffe.options, logger: { level: 'warn', stream: logStream } });
    await app.register(fastifySpiffe, { tls: spiffe, allow: [PAYMENTS], onDenied: (e) => denials.push(e) });
    app.get('/orders', async (req) => ({ caller: req.spiffeId?.toString() }));
    app.get('/health', { config: { spiffe: { allow: matchMemberOf('example.org') } } }, async () => 'ok');
    app.get('/nobody', { config: { spiffe: { allow: [] } } }, async () => 'never');
    await app.listen({ port: 0, host: '127.0.0.1' });
    base = `https://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await app.close();
    await fx.close();
  });

  test('allowed peer gets 200 and request.spiffeId', async () => {
    const c = await clientFor('payments');
    try {
      const res = await send(`${base}/orders`, c);
      assert.equal(res.status, 200);
      assert.deepEqual(res.json(), { caller: PAYMENTS });
    } finally {
      await c.close();
    }
  });

  test("another verified ID gets Fastify's default 403 with the code, and onDenied gets the peer ID and route", async () => {
    const c = await clientFor('other');
    try {
      assertOtherRefused(await send(`${base}/orders`, c), denials, '/orders');
      // the denial is in the app's log: reason, peer address, verified SPIFFE ID
      const line = await logLineFor('UNAUTHORIZED_SPIFFE_ID');
      assert.equal(line.msg, 'SPIFFE: request denied');
      assert.equal(line.level, 40, 'a warning');
      assert.equal(line.spiffeId, OTHER);
      assert.equal(line.remoteAddress, '127.0.0.1');
      assert.equal(line.route, '/orders');
      // per-route override admits the whole trust domain
      assert.equal((await send(`${base}/health`, c)).status, 200);
      // deny by default on an empty allowlist, and on unknown routes
      assert.equal((await send(`${base}/nobody`, c)).status, 403);
      assert.equal((await send(`${base}/does-not-exist`, c)).status, 403);
    } finally {
      await c.close();
    }
  });

  test('no client certificate: the handshake is refused', async () => {
    await assertHandshakeRefused(`${base}/orders`);
  });

  test('a self-signed client shows up in the server log with its reason', async () => {
    await assertHandshakeRefused(`${base}/orders`, await selfSignedClientCert(PAYMENTS));
    const line = await logLineFor('TLS_SELF_SIGNED');
    assert.equal(line.msg, 'SPIFFE: TLS handshake refused');
    assert.equal(line.remoteAddress, '127.0.0.1');
    assert.equal(line.level, 40);
  });

  test('untrusted CA, cross-trust-domain and expired SVIDs are rejected before any route runs', async () => {
    for (const { name, svid } of await handshakeRefusedSvids(fx)) {
      await assert.rejects(callWithSvid(svid), Error, name);
    }
    // sanity: the same path with a good SVID works, so the rejections above are about the certificates
    assert.equal((await callWithSvid(await dev.ca.issueX509Svid(PAYMENTS))).status, 200);
  });

  test("the app's setErrorHandler receives every kind of denial (code, statusCode, headers) and reshapes it", async () => {
    const seen: Array<{ code: string; statusCode: number; headers: Record<string, string> }> = [];
    const tlsWiring = spiffeServerTls(serverSource);
    const a = Fastify({ https: tlsWiring.options });
    a.setErrorHandler((err, _req, reply) => {
      if (!isSpiffeAuthError(err)) return reply.send(err);
      seen.push({ code: err.code, statusCode: err.statusCode, headers: { ...err.headers } });
      return reply.code(err.statusCode).headers(err.headers).send({ problem: err.code });
    });
    await a.register(fastifySpiffe, {
      tls: tlsWiring,
      allow: [PAYMENTS],
      jwt: { bundles: new JwtBundleSet([dev.ca.jwtBundle()]), audience: 'orders', optIn: true, realm: 'orders' },
    });
    a.get('/mtls', async () => 'ok');
    a.get('/jwt', { config: { spiffe: { jwt: true } } }, async () => 'ok');
    await a.listen({ port: 0, host: '127.0.0.1' });
    const secureBase = `https://127.0.0.1:${(a.server.address() as AddressInfo).port}`;
    const c = await clientFor('other');
    const p = await clientFor('payments');
    const requestDenied: Record<string, () => Promise<Pick<Answer, 'status' | 'www' | 'json'>>> = {
      // a request with no verified SPIFFE ID (inject: no TLS connection) on a route that needs one
      PEER_NOT_VERIFIED: async () => {
        const r = await a.inject({ url: '/mtls' });
        return { status: r.statusCode, www: r.headers['www-authenticate'] as string | undefined, json: () => r.json() };
      },
      // a verified ID that is not allowed
      UNAUTHORIZED_SPIFFE_ID: () => send(`${secureBase}/mtls`, c),
      // an allowed peer with a bad bearer token
      JWTSVID_MALFORMED: () => send(`${secureBase}/jwt`, { ...p, headers: { authorization: 'Bearer not-a-jwt' } }),
    };
    try {
      await assertReshapedDenials('orders', requestDenied, seen);
    } finally {
      await Promise.all([c.close(), p.close()]);
      await a.close();
    }
  });

  test('rotation under continuous requests (SVID and CA): zero failed requests', async () => {
    const c = await clientFor('payments');
    try {
      await assertRotationUnderLoad(fx, 'Fastify', async (worker) => {
        // worker 0 keeps its connection; workers 1 and 2 open a new one per request (new handshakes)
        const res = await send(`${base}/orders`, { ...c, reset: worker > 0 });
        if (res.status !== 200) throw new Error(`status ${res.status}`);
      });
    } finally {
      await c.close();
    }
  });
});

describe('@spiffe-ts/fastify JWT-SVID bearer validation', () => {
  let jwtDev: DevWorkloadApiServer;
  let jwtSource: JwtSource;
  let japp: FastifyInstance;
  let url: string;
  before(async () => {
    jwtDev = await DevWorkloadApiServer.start({ workloads: { api: ORDERS, caller: PAYMENTS } });
    jwtSource = await JwtSource.create({ address: jwtDev.address('api'), timeoutMs: 5000 });
    japp = Fastify();
    await japp.register(fastifySpiffe, { jwt: { bundles: jwtSource, audience: 'orders' } });
    japp.get('/orders', async (req) => ({ sub: req.jwtSvid?.id.toString(), aud: req.jwtSvid?.audience }));
    japp.get('/public', { config: { spiffe: { jwt: false } } }, async () => 'public');
    await japp.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(japp.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await japp.close();
    await jwtSource.close();
    await jwtDev.stop();
  });

  const get = (token?: string, path = '/orders') => sendBearer(`${url}${path}`, token);

  test('valid JWT-SVID from the Workload API: 200 with request.jwtSvid', async () => {
    const res = await get(await workloadJwtSvid(jwtDev, 'caller', 'orders'));
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { sub: PAYMENTS, aud: ['orders'] });
  });

  test('missing, expired, wrong audience and wrong trust domain: 401 with WWW-Authenticate', async () => {
    const missing = await get();
    assert.equal(missing.status, 401);
    assert.equal(missing.www, 'Bearer realm="spiffe"');
    assert.equal(missing.code, 'JWTSVID_MISSING');
    for (const { name, token, code } of await refusedJwtSvids(jwtDev.ca, 'orders')) {
      const r = await get(token);
      assert.equal(r.status, 401, name);
      assert.equal(r.code, code, name);
      assert.equal(r.www, INVALID_TOKEN_CHALLENGE, `${name}: no validation detail in the challenge`);
    }
    assert.equal((await get(undefined, '/public')).status, 200, 'opted-out route');
  });

  test('JWT subject allowlist: 403 insufficient_scope for other subjects', async () => {
    const a = Fastify();
    await a.register(fastifySpiffe, {
      jwt: { bundles: new JwtBundleSet([jwtDev.ca.jwtBundle()]), audience: 'orders', allow: [PAYMENTS] },
    });
    a.get('/', async (req) => req.jwtSvid?.id.toString());
    const good = await jwtDev.ca.issueJwtSvid(PAYMENTS, 'orders');
    const bad = await jwtDev.ca.issueJwtSvid(OTHER, 'orders');
    const r1 = await a.inject({ url: '/', headers: { authorization: `Bearer ${good.token}` } });
    assert.equal(r1.statusCode, 200);
    const r2 = await a.inject({ url: '/', headers: { authorization: `Bearer ${bad.token}` } });
    assert.equal(r2.statusCode, 403);
    assert.match(String(r2.headers['www-authenticate']), /insufficient_scope/);
    await a.close();
  });

  test('peer allowlists without SPIFFE TLS wiring fail at start-up (an app that would answer every request 403)', async () => {
    const a2 = Fastify();
    a2.register(fastifySpiffe, { allow: [PAYMENTS] });
    await assert.rejects(
      async () => {
        await a2.ready();
      },
      (e: SpiffeError) => {
        assert.equal(e.code, 'TLS_NOT_CONFIGURED');
        assert.match(e.message, /tls: spiffeServerTls/);
        return true;
      },
    );
    await a2.close();
    // a route allowlist too, when the route is added
    const a3 = Fastify();
    await a3.register(fastifySpiffe, {});
    assert.throws(
      () => a3.get('/', { config: { spiffe: { allow: [PAYMENTS] } } }, async () => 'x'),
      (e: SpiffeError) => e.code === 'TLS_NOT_CONFIGURED',
    );
    // an allowlist that admits nobody needs no TLS: still no mTLS identity is ever invented
    const a4 = Fastify();
    await a4.register(fastifySpiffe, { allow: [] });
    a4.get('/', async (req) => String(req.spiffeId));
    assert.equal((await a4.inject({ url: '/' })).statusCode, 403);
    await a3.close();
    await a4.close();
  });
});
