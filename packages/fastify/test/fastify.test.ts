import assert from 'node:assert/strict';
import { KeyObject } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  isSpiffeAuthError,
  JwtBundleSet,
  JwtSource,
  matchId,
  matchMemberOf,
  type SpiffeError,
  StaticX509Source,
  X509BundleSet,
  X509Source,
  type X509Svid,
} from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import { createAuthority, DevCa, DevWorkloadApiServer, KeyUsage } from '@spiffe-ts/dev-server';
import { type RotationUnderLoadResult, rotationUnderLoad } from '@spiffe-ts/dev-server/testing';
import { fastifySpiffe, type SpiffeDenial, spiffeServerTls } from '@spiffe-ts/fastify';
import Fastify, { type FastifyInstance } from 'fastify';
import { Agent, type Dispatcher, request } from 'undici';

const ORDERS = 'spiffe://example.org/service/orders';
const PAYMENTS = 'spiffe://example.org/service/payment-processor';
const OTHER = 'spiffe://example.org/service/other';

let dev: DevWorkloadApiServer;
let partner: DevCa;
let stranger: DevCa;
let serverSource: X509Source;
let app: FastifyInstance;
let base: string;
const denials: SpiffeDenial[] = [];
// What the app's own logger (pino, through Fastify) wrote.
const logLines: Array<Record<string, unknown>> = [];
const logStream = { write: (line: string) => logLines.push(JSON.parse(line) as Record<string, unknown>) };

/** The first log line with this reason (the server may log just after the client sees the close). */
async function logLineFor(reason: string): Promise<Record<string, unknown>> {
  for (let i = 0; i < 100; i++) {
    const line = logLines.find((l) => l.reason === reason);
    if (line) return line;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no log line with reason ${reason}`);
}

async function clientFor(workload: string): Promise<{ source: X509Source; dispatcher: Dispatcher }> {
  const source = await X509Source.create({ address: dev.address(workload), timeoutMs: 5000 });
  return { source, dispatcher: createSpiffeDispatcher({ source, authorize: matchId(ORDERS) }) };
}

async function call(dispatcher: Dispatcher, path: string, headers: Record<string, string> = {}, reset = false) {
  const res = await request(`${base}${path}`, { dispatcher, headers, reset });
  const text = await res.body.text();
  return { status: res.statusCode, body: text, headers: res.headers };
}

async function callWithSvid(svid: X509Svid, path = '/orders') {
  const source = new StaticX509Source(svid, new X509BundleSet([dev.ca.x509Bundle(), partner.x509Bundle()]));
  Object.defineProperty(source, 'getX509Svid', { value: () => svid }); // present even if expired
  const dispatcher = createSpiffeDispatcher({ source, authorize: matchId(ORDERS) });
  try {
    return await call(dispatcher, path);
  } finally {
    await dispatcher.close();
  }
}

describe('@spiffe-ts/fastify over real mTLS sockets', () => {
  before(async () => {
    partner = await DevCa.create({ trustDomain: 'partner.test' });
    stranger = await DevCa.create({ trustDomain: 'example.org' });
    dev = await DevWorkloadApiServer.start({
      workloads: { orders: ORDERS, payments: PAYMENTS, other: OTHER },
      federatedWith: [partner],
      svidTtlSeconds: 3600,
    });
    serverSource = await X509Source.create({ address: dev.address('orders'), timeoutMs: 5000 });
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
    await serverSource.close();
    await dev.stop();
  });

  test('allowed peer gets 200 and request.spiffeId', async () => {
    const c = await clientFor('payments');
    try {
      const res = await call(c.dispatcher, '/orders');
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.body), { caller: PAYMENTS });
    } finally {
      await c.dispatcher.close();
      await c.source.close();
    }
  });

  test("another verified ID gets Fastify's default 403 with the code, and onDenied gets the peer ID and route", async () => {
    const c = await clientFor('other');
    try {
      const res = await call(c.dispatcher, '/orders');
      assert.equal(res.status, 403);
      assert.deepEqual(JSON.parse(res.body), {
        statusCode: 403,
        code: 'UNAUTHORIZED_SPIFFE_ID',
        error: 'Forbidden',
        message: 'SPIFFE ID not authorized',
      });
      const event = denials.find((e) => e.spiffeId?.toString() === OTHER && e.route === '/orders');
      assert.deepEqual(event && { ...event, spiffeId: String(event.spiffeId) }, {
        code: 'UNAUTHORIZED_SPIFFE_ID',
        message: 'SPIFFE ID not authorized',
        statusCode: 403,
        spiffeId: OTHER,
        route: '/orders',
        remoteAddress: '127.0.0.1',
      });
      // the denial is in the app's log: reason, peer address, verified SPIFFE ID
      const line = await logLineFor('UNAUTHORIZED_SPIFFE_ID');
      assert.equal(line.msg, 'SPIFFE: request denied');
      assert.equal(line.level, 40, 'a warning');
      assert.equal(line.spiffeId, OTHER);
      assert.equal(line.remoteAddress, '127.0.0.1');
      assert.equal(line.route, '/orders');
      // per-route override admits the whole trust domain
      assert.equal((await call(c.dispatcher, '/health')).status, 200);
      // deny by default on an empty allowlist, and on unknown routes
      assert.equal((await call(c.dispatcher, '/nobody')).status, 403);
      assert.equal((await call(c.dispatcher, '/does-not-exist')).status, 403);
    } finally {
      await c.dispatcher.close();
      await c.source.close();
    }
  });

  test('no client certificate: the handshake is refused', async () => {
    await assert.rejects(
      request(`${base}/orders`, {
        dispatcher: new (await import('undici')).Agent({ connect: { rejectUnauthorized: false } }),
      }),
    );
  });

  test('a self-signed client shows up in the server log with its reason', async () => {
    const self = await createAuthority({ isCa: false, keyUsage: KeyUsage.digitalSignature, uri: PAYMENTS });
    const key = KeyObject.from(self.keyPair.keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
    const agent = new Agent({ connect: { rejectUnauthorized: false, cert: self.certificate.toString(), key } });
    try {
      await assert.rejects(request(`${base}/orders`, { dispatcher: agent }));
    } finally {
      await agent.close();
    }
    const line = await logLineFor('TLS_SELF_SIGNED');
    assert.equal(line.msg, 'SPIFFE: TLS handshake refused');
    assert.equal(line.remoteAddress, '127.0.0.1');
    assert.equal(line.level, 40);
  });

  test('untrusted CA, cross-trust-domain and expired SVIDs are rejected before any route runs', async () => {
    await assert.rejects(callWithSvid(await stranger.issueX509Svid(PAYMENTS)));
    await assert.rejects(callWithSvid(await partner.issueX509Svid(PAYMENTS)));
    await assert.rejects(
      callWithSvid(
        await dev.ca.issueX509Svid(PAYMENTS, {
          notBefore: new Date(Date.now() - 7200_000),
          notAfter: new Date(Date.now() - 60_000),
        }),
      ),
    );
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
    const secure = { a, port: (a.server.address() as AddressInfo).port };
    const c = await clientFor('other');
    const p = await clientFor('payments');
    try {
      // a request with no verified SPIFFE ID (inject: no TLS connection) on a route that needs one
      const r0 = await a.inject({ url: '/mtls' });
      assert.equal(r0.statusCode, 403);
      assert.deepEqual(r0.json(), { problem: 'PEER_NOT_VERIFIED' });
      // a verified ID that is not allowed
      const r1 = await request(`https://127.0.0.1:${secure.port}/mtls`, { dispatcher: c.dispatcher });
      assert.equal(r1.statusCode, 403);
      assert.deepEqual(await r1.body.json(), { problem: 'UNAUTHORIZED_SPIFFE_ID' });
      // an allowed peer with a bad bearer token
      const r2 = await request(`https://127.0.0.1:${secure.port}/jwt`, {
        dispatcher: p.dispatcher,
        headers: { authorization: 'Bearer not-a-jwt' },
      });
      assert.equal(r2.statusCode, 401);
      assert.equal(r2.headers['www-authenticate'], 'Bearer realm="orders", error="invalid_token"');
      assert.deepEqual(await r2.body.json(), { problem: 'JWTSVID_MALFORMED' });
      assert.deepEqual(seen, [
        { code: 'PEER_NOT_VERIFIED', statusCode: 403, headers: {} },
        { code: 'UNAUTHORIZED_SPIFFE_ID', statusCode: 403, headers: {} },
        {
          code: 'JWTSVID_MALFORMED',
          statusCode: 401,
          headers: { 'WWW-Authenticate': 'Bearer realm="orders", error="invalid_token"' },
        },
      ]);
    } finally {
      await Promise.all([c.dispatcher.close(), p.dispatcher.close()]);
      await Promise.all([c.source.close(), p.source.close()]);
      await secure.a.close();
    }
  });

  test('rotation under continuous requests (SVID and CA): zero failed requests', async () => {
    const c = await clientFor('payments');
    const serial = () => serverSource.getX509Svid().leaf.serialNumber;
    const s0 = serial();
    let r: RotationUnderLoadResult;
    try {
      r = await rotationUnderLoad({
        dev,
        // worker 0 keeps its connection; workers 1 and 2 open a new one per request (new handshakes)
        request: async (worker) => {
          const res = await call(c.dispatcher, '/orders', {}, worker > 0);
          if (res.status !== 200) throw new Error(`status ${res.status}`);
        },
        afterSvidRotation: () => assert.notEqual(serial(), s0, 'server SVID rotated'),
        afterCaRotation: () =>
          assert.equal(serverSource.bundles.get('example.org')?.authorities.length, 1, 'old CA dropped'),
      });
    } finally {
      await c.dispatcher.close();
      await c.source.close();
    }
    console.log(`rotation under load: ${r.ok} requests ok, ${r.failed} failed`);
    assert.equal(r.failed, 0, r.errors.slice(0, 5).join('; '));
    assert.ok(r.ok > 20, `enough requests ran (${r.ok})`);
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

  const get = async (token?: string, path = '/orders') => {
    const res = await request(`${url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    const body = await res.body.text();
    const code = res.statusCode === 200 ? undefined : (JSON.parse(body) as { code?: string }).code;
    return { status: res.statusCode, body, code, www: res.headers['www-authenticate'] };
  };

  test('valid JWT-SVID from the Workload API: 200 with request.jwtSvid', async () => {
    const caller = await JwtSource.create({ address: jwtDev.address('caller'), timeoutMs: 5000 });
    try {
      const svid = await caller.fetchJwtSvid({ audience: 'orders' });
      const res = await get(svid.token);
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.body), { sub: PAYMENTS, aud: ['orders'] });
    } finally {
      await caller.close();
    }
  });

  test('missing, expired, wrong audience and wrong trust domain: 401 with WWW-Authenticate', async () => {
    const missing = await get();
    assert.equal(missing.status, 401);
    assert.equal(missing.www, 'Bearer realm="spiffe"');
    assert.equal(missing.code, 'JWTSVID_MISSING');

    const expired = await jwtDev.ca.issueJwtSvid(PAYMENTS, 'orders', {
      issuedAt: new Date(Date.now() - 3600_000),
      expiresAt: new Date(Date.now() - 600_000),
    });
    const r1 = await get(expired.token);
    assert.equal(r1.status, 401);
    assert.equal(r1.code, 'JWTSVID_EXPIRED');
    assert.equal(r1.www, 'Bearer realm="spiffe", error="invalid_token"', 'no validation detail in the challenge');

    const wrongAud = await jwtDev.ca.issueJwtSvid(PAYMENTS, 'billing');
    const r2 = await get(wrongAud.token);
    assert.equal(r2.status, 401);
    assert.equal(r2.code, 'JWTSVID_AUDIENCE_MISMATCH');

    const foreign = await DevCa.create({ trustDomain: 'evil.test' });
    const wrongTd = await foreign.issueJwtSvid('spiffe://evil.test/x', 'orders');
    const r3 = await get(wrongTd.token);
    assert.equal(r3.status, 401);
    assert.equal(r3.code, 'JWTSVID_UNKNOWN_KID');

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
