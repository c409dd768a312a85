import assert from 'node:assert/strict';
import { KeyObject } from 'node:crypto';
import type * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  JwtBundleSet,
  JwtSource,
  matchId,
  StaticX509Source,
  X509BundleSet,
  X509Source,
  type X509Svid,
} from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import { createAuthority, DevCa, DevWorkloadApiServer, KeyUsage } from '@spiffe-ts/dev-server';
import { type RotationUnderLoadResult, rotationUnderLoad } from '@spiffe-ts/dev-server/testing';
import {
  allowSpiffeIds,
  createSpiffeHttpsServer,
  isSpiffeAuthError,
  jwtSvid,
  requirePeer,
  type SpiffeDenial,
  spiffeErrorHandler,
  spiffeIdentity,
  spiffeServerTls,
} from '@spiffe-ts/express';
import express5 from 'express';
import express4 from 'express4';
import { Agent, type Dispatcher, request } from 'undici';

const ORDERS = 'spiffe://example.org/service/orders';
const PAYMENTS = 'spiffe://example.org/service/payment-processor';
const OTHER = 'spiffe://example.org/service/other';

type ExpressFactory = typeof express5;
const flavours: Array<[string, ExpressFactory]> = [
  ['Express 5', express5],
  ['Express 4', express4 as unknown as ExpressFactory],
];

function listen(server: https.Server): Promise<string> {
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve(`https://127.0.0.1:${(server.address() as AddressInfo).port}`));
  });
}

function closeServer(server: https.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

async function call(
  base: string,
  dispatcher: Dispatcher,
  path: string,
  headers: Record<string, string> = {},
  reset = false,
) {
  const res = await request(`${base}${path}`, { dispatcher, headers, reset });
  const body = await res.body.text();
  return { status: res.statusCode, body, headers: res.headers };
}

for (const [flavour, express] of flavours) {
  describe(`@spiffe-ts/express over real mTLS sockets (${flavour})`, () => {
    let dev: DevWorkloadApiServer;
    let partner: DevCa;
    let stranger: DevCa;
    let serverSource: X509Source;
    let server: https.Server;
    let base: string;
    const denials: SpiffeDenial[] = [];
    const onDenied = (e: SpiffeDenial) => denials.push(e);
    // A pino-compatible logger given to the middleware and the server
    const logLines: Array<{ level: string; fields: Record<string, unknown>; message: string }> = [];
    const at = (level: string) => (fields: object, message: string) =>
      logLines.push({ level, fields: fields as Record<string, unknown>, message });
    const logger = { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
    const logLineFor = async (reason: string) => {
      for (let i = 0; i < 100; i++) {
        const line = logLines.find((l) => l.fields.reason === reason);
        if (line) return line;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`no log line with reason ${reason}`);
    };

    const clientFor = async (workload: string) => {
      const source = await X509Source.create({ address: dev.address(workload), timeoutMs: 5000 });
      return { source, dispatcher: createSpiffeDispatcher({ source, authorize: matchId(ORDERS) }) };
    };

    const callWithSvid = async (svid: X509Svid, path = '/orders') => {
      const source = new StaticX509Source(svid, new X509BundleSet([dev.ca.x509Bundle(), partner.x509Bundle()]));
      Object.defineProperty(source, 'getX509Svid', { value: () => svid }); // present even if expired
      const dispatcher = createSpiffeDispatcher({ source, authorize: matchId(ORDERS) });
      try {
        return await call(base, dispatcher, path);
      } finally {
        await dispatcher.close();
      }
    };

    before(async () => {
      partner = await DevCa.create({ trustDomain: 'partner.test' });
      stranger = await DevCa.create({ trustDomain: 'example.org' });
      dev = await DevWorkloadApiServer.start({
        workloads: { orders: ORDERS, payments: PAYMENTS, other: OTHER },
        federatedWith: [partner],
        svidTtlSeconds: 3600,
      });
      serverSource = await X509Source.create({ address: dev.address('orders'), timeoutMs: 5000 });

      const app = express();
      app.get('/whoami', spiffeIdentity(), (req, res) => {
        res.json({ caller: req.spiffeId?.toString() ?? null });
      });
      const orders = express.Router();
      orders.use(requirePeer([PAYMENTS], { onDenied, logger }));
      orders.get('/', (req, res) => {
        res.json({ caller: req.spiffeId?.toString() });
      });
      app.use('/orders', orders);
      app.get('/health', requirePeer({ trustDomain: 'example.org' }), (_req, res) => {
        res.send('ok');
      });
      app.get('/nobody', allowSpiffeIds(), (_req, res) => {
        res.send('never');
      });
      // No SPIFFE middleware on this route: the server alone puts the verified ID on the request.
      app.get('/plain', (req, res) => {
        res.json({ caller: req.spiffeId?.toString() ?? null });
      });
      app.use(spiffeErrorHandler());
      server = createSpiffeHttpsServer(app, spiffeServerTls(serverSource), { logger });
      base = await listen(server);
    });

    after(async () => {
      await closeServer(server);
      await serverSource.close();
      await dev.stop();
    });

    test('a self-signed client shows up in the logger given to the server, with its reason', async () => {
      const self = await createAuthority({ isCa: false, keyUsage: KeyUsage.digitalSignature, uri: PAYMENTS });
      const key = KeyObject.from(self.keyPair.keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
      const agent = new Agent({ connect: { rejectUnauthorized: false, cert: self.certificate.toString(), key } });
      try {
        await assert.rejects(request(`${base}/orders`, { dispatcher: agent }));
      } finally {
        await agent.close();
      }
      const line = await logLineFor('TLS_SELF_SIGNED');
      assert.equal(line.level, 'warn');
      assert.equal(line.message, 'SPIFFE: TLS handshake refused');
      assert.equal(line.fields.remoteAddress, '127.0.0.1');
    });

    test('allowed peer gets 200 and req.spiffeId', async () => {
      const c = await clientFor('payments');
      try {
        const res = await call(base, c.dispatcher, '/orders');
        assert.equal(res.status, 200);
        assert.deepEqual(JSON.parse(res.body), { caller: PAYMENTS });
        assert.deepEqual(JSON.parse((await call(base, c.dispatcher, '/whoami')).body), { caller: PAYMENTS });
        assert.deepEqual(JSON.parse((await call(base, c.dispatcher, '/plain')).body), { caller: PAYMENTS });
      } finally {
        await c.dispatcher.close();
        await c.source.close();
      }
    });

    test('another verified ID gets the 403 error body from spiffeErrorHandler, and onDenied the peer ID and route', async () => {
      const c = await clientFor('other');
      try {
        const res = await call(base, c.dispatcher, '/orders');
        assert.equal(res.status, 403);
        assert.deepEqual(JSON.parse(res.body), {
          statusCode: 403,
          error: 'Forbidden',
          code: 'UNAUTHORIZED_SPIFFE_ID',
          message: 'SPIFFE ID not authorized',
        });
        const event = denials.find((d) => String(d.spiffeId) === OTHER && d.route === '/orders/');
        assert.deepEqual(event && { ...event, spiffeId: String(event.spiffeId) }, {
          code: 'UNAUTHORIZED_SPIFFE_ID',
          message: 'SPIFFE ID not authorized',
          statusCode: 403,
          spiffeId: OTHER,
          route: '/orders/',
          remoteAddress: '127.0.0.1',
        });
        const line = await logLineFor('UNAUTHORIZED_SPIFFE_ID');
        assert.equal(line.level, 'warn');
        assert.equal(line.message, 'SPIFFE: request denied');
        assert.equal(line.fields.spiffeId, OTHER);
        assert.equal(line.fields.remoteAddress, '127.0.0.1');
        // the trust-domain allowlist admits it; an empty allowlist denies everyone
        assert.equal((await call(base, c.dispatcher, '/health')).status, 200);
        assert.equal((await call(base, c.dispatcher, '/nobody')).status, 403);
      } finally {
        await c.dispatcher.close();
        await c.source.close();
      }
    });

    test("the app's error middleware receives every kind of denial (code, statusCode, headers) and reshapes it", async () => {
      const seen: Array<{ code: string; statusCode: number; headers: Record<string, string> }> = [];
      const jwtDenials: SpiffeDenial[] = [];
      const app = express();
      app.get('/mtls', requirePeer([PAYMENTS]), (_req, res) => {
        res.send('ok');
      });
      app.get(
        '/jwt',
        requirePeer([PAYMENTS]),
        jwtSvid({
          bundles: new JwtBundleSet([dev.ca.jwtBundle()]),
          audience: 'orders',
          realm: 'orders',
          onDenied: (e) => jwtDenials.push(e),
        }),
        (_req, res) => {
          res.send('ok');
        },
      );
      app.use((err: unknown, _req: express5.Request, res: express5.Response, next: express5.NextFunction) => {
        if (!isSpiffeAuthError(err)) return next(err);
        seen.push({ code: err.code, statusCode: err.statusCode, headers: { ...err.headers } });
        res.status(err.statusCode).set(err.headers).json({ problem: err.code });
      });
      const secure = createSpiffeHttpsServer(app, spiffeServerTls(serverSource));
      const secureBase = await listen(secure);
      const plain = app.listen(0, '127.0.0.1');
      await new Promise((r) => plain.once('listening', r));
      const c = await clientFor('other');
      const p = await clientFor('payments');
      try {
        // a real connection with no verified SPIFFE ID (plain HTTP) on a route that needs one
        const r0 = await request(`http://127.0.0.1:${(plain.address() as AddressInfo).port}/mtls`);
        assert.equal(r0.statusCode, 403);
        assert.deepEqual(await r0.body.json(), { problem: 'PEER_NOT_VERIFIED' });
        // a verified ID that is not allowed
        const r1 = await request(`${secureBase}/mtls`, { dispatcher: c.dispatcher });
        assert.equal(r1.statusCode, 403);
        assert.deepEqual(await r1.body.json(), { problem: 'UNAUTHORIZED_SPIFFE_ID' });
        // an allowed peer with a bad bearer token
        const r2 = await request(`${secureBase}/jwt`, {
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
        // the bearer denial event names the verified mTLS peer of the request
        assert.deepEqual(
          jwtDenials.map((e) => [e.code, String(e.spiffeId), e.route]),
          [['JWTSVID_MALFORMED', PAYMENTS, '/jwt']],
        );
      } finally {
        await Promise.all([c.dispatcher.close(), p.dispatcher.close()]);
        await Promise.all([c.source.close(), p.source.close()]);
        await closeServer(secure);
        await new Promise<void>((resolve) => plain.close(() => resolve()));
      }
    });

    test('no client certificate: the handshake is refused', async () => {
      const agent = new Agent({ connect: { rejectUnauthorized: false } });
      try {
        await assert.rejects(request(`${base}/whoami`, { dispatcher: agent }));
      } finally {
        await agent.close();
      }
    });

    test('untrusted CA, cross-trust-domain and expired SVIDs are rejected before any middleware runs', async () => {
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
      // a federated partner with its own (trusted) CA is verified and identified, then denied by the allowlist
      const partnerSvid = await partner.issueX509Svid('spiffe://partner.test/billing');
      assert.equal((await callWithSvid(partnerSvid)).status, 403);
      assert.equal((await callWithSvid(await dev.ca.issueX509Svid(PAYMENTS))).status, 200, 'control: good SVID');
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
            const res = await call(base, c.dispatcher, '/orders', {}, worker > 0);
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
      console.log(`${flavour} rotation under load: ${r.ok} requests ok, ${r.failed} failed`);
      assert.equal(r.failed, 0, r.errors.slice(0, 5).join('; '));
      assert.ok(r.ok > 20, `enough requests ran (${r.ok})`);
    });
  });

  describe(`@spiffe-ts/express JWT-SVID bearer validation (${flavour})`, () => {
    let dev: DevWorkloadApiServer;
    let jwtSource: JwtSource;
    let server: https.Server | import('node:http').Server;
    let url: string;

    before(async () => {
      dev = await DevWorkloadApiServer.start({ workloads: { api: ORDERS, caller: PAYMENTS } });
      jwtSource = await JwtSource.create({ address: dev.address('api'), timeoutMs: 5000 });
      const app = express();
      app.get('/public', (_req, res) => {
        res.send('public');
      });
      const api = express.Router();
      api.use(jwtSvid({ audience: 'orders', bundles: jwtSource }));
      api.get('/orders', (req, res) => {
        res.json({ sub: req.jwtSvid?.id.toString(), aud: req.jwtSvid?.audience });
      });
      app.use('/api', api);
      app.get(
        '/only-payments',
        jwtSvid({
          audience: 'orders',
          bundles: new JwtBundleSet([dev.ca.jwtBundle()]),
          allow: [PAYMENTS],
        }),
        (req, res) => {
          res.send(String(req.jwtSvid?.id));
        },
      );
      app.use(spiffeErrorHandler());
      await new Promise<void>((resolve) => {
        server = app.listen(0, '127.0.0.1', () => resolve());
      });
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    after(async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await jwtSource.close();
      await dev.stop();
    });

    const get = async (token: string | undefined, path = '/api/orders') => {
      const res = await request(`${url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
      const body = await res.body.text();
      const code = res.statusCode === 200 ? undefined : (JSON.parse(body) as { code?: string }).code;
      return { status: res.statusCode, body, code, www: res.headers['www-authenticate'] };
    };

    test('valid JWT-SVID from the Workload API: 200 with req.jwtSvid', async () => {
      const caller = await JwtSource.create({ address: dev.address('caller'), timeoutMs: 5000 });
      try {
        const svid = await caller.fetchJwtSvid({ audience: 'orders' });
        const res = await get(svid.token);
        assert.equal(res.status, 200);
        assert.deepEqual(JSON.parse(res.body), { sub: PAYMENTS, aud: ['orders'] });
      } finally {
        await caller.close();
      }
    });

    test('missing, malformed, expired, wrong audience, wrong trust domain: 401 with WWW-Authenticate', async () => {
      const missing = await get(undefined);
      assert.equal(missing.status, 401);
      assert.equal(missing.www, 'Bearer realm="spiffe"');
      assert.equal(missing.code, 'JWTSVID_MISSING');
      assert.equal((await get('not-a-jwt')).code, 'JWTSVID_MALFORMED');

      const expired = await dev.ca.issueJwtSvid(PAYMENTS, 'orders', {
        issuedAt: new Date(Date.now() - 3600_000),
        expiresAt: new Date(Date.now() - 600_000),
      });
      const r1 = await get(expired.token);
      assert.equal(r1.status, 401);
      assert.equal(r1.code, 'JWTSVID_EXPIRED');
      assert.equal(r1.www, 'Bearer realm="spiffe", error="invalid_token"', 'no validation detail in the challenge');

      const r2 = await get((await dev.ca.issueJwtSvid(PAYMENTS, 'billing')).token);
      assert.equal(r2.status, 401);
      assert.equal(r2.code, 'JWTSVID_AUDIENCE_MISMATCH');

      const foreign = await DevCa.create({ trustDomain: 'evil.test' });
      const r3 = await get((await foreign.issueJwtSvid('spiffe://evil.test/x', 'orders')).token);
      assert.equal(r3.status, 401);
      assert.equal(r3.code, 'JWTSVID_UNKNOWN_KID');

      assert.equal((await get(undefined, '/public')).status, 200, 'routes without the middleware are public');
    });

    test('subject allowlist: 403 insufficient_scope for other subjects', async () => {
      const good = await dev.ca.issueJwtSvid(PAYMENTS, 'orders');
      const bad = await dev.ca.issueJwtSvid(OTHER, 'orders');
      assert.equal((await get(good.token, '/only-payments')).status, 200);
      const r = await get(bad.token, '/only-payments');
      assert.equal(r.status, 403);
      assert.match(String(r.www), /insufficient_scope/);
    });

    test('plain HTTP never yields an mTLS identity', async () => {
      const app = express();
      app.get('/', allowSpiffeIds(PAYMENTS), (_req, res) => {
        res.send('never');
      });
      app.get('/who', spiffeIdentity(), (req, res) => {
        res.json({ id: req.spiffeId ?? null });
      });
      app.use(spiffeErrorHandler());
      const plain = app.listen(0, '127.0.0.1');
      await new Promise((r) => plain.once('listening', r));
      const u = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
      try {
        assert.equal((await request(`${u}/`)).statusCode, 403);
        assert.deepEqual(await (await request(`${u}/who`)).body.json(), { id: null });
      } finally {
        await new Promise<void>((resolve) => plain.close(() => resolve()));
      }
    });
  });
}

test('allowlists are validated when the middleware is built', () => {
  assert.throws(() => allowSpiffeIds('spiffe://Example.org/x'), { code: 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR' });
  assert.throws(() => requirePeer({ trustDomain: 'not a domain' }));
});
