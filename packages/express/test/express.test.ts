import assert from 'node:assert/strict';
import type * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { JwtBundleSet, JwtSource, type X509Source, type X509Svid } from '@spiffe-ts/core';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
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
import { request } from 'undici';
import {
  type Answer,
  assertHandshakeRefused,
  assertOtherRefused,
  assertReshapedDenials,
  assertRotationUnderLoad,
  captureLogger,
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

for (const [flavour, express] of flavours) {
  describe(`@spiffe-ts/express over real mTLS sockets (${flavour})`, () => {
    let fx: MtlsFixture;
    let dev: DevWorkloadApiServer;
    let serverSource: X509Source;
    let server: https.Server;
    let base: string;
    const denials: SpiffeDenial[] = [];
    const onDenied = (e: SpiffeDenial) => denials.push(e);
    // A pino-compatible logger given to the middleware and the server
    const { logger, lineFor: logLineFor } = captureLogger();

    const clientFor = (workload: string) => spiffeClient(dev, workload, ORDERS);
    const callWithSvid = (svid: X509Svid, path = '/orders') =>
      withSvidDispatcher(fx, svid, (dispatcher) => send(`${base}${path}`, { dispatcher }));

    before(async () => {
      fx = await startMtlsFixture();
      ({ dev, serverSource } = fx);

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
      await fx.close();
    });

    test('a self-signed client shows up in the logger given to the server, with its reason', async () => {
      await assertHandshakeRefused(`${base}/orders`, await selfSignedClientCert(PAYMENTS));
      const line = await logLineFor('TLS_SELF_SIGNED');
      assert.equal(line.level, 'warn');
      assert.equal(line.message, 'SPIFFE: TLS handshake refused');
      assert.equal(line.fields.remoteAddress, '127.0.0.1');
    });

    test('allowed peer gets 200 and req.spiffeId', async () => {
      const c = await clientFor('payments');
      try {
        const res = await send(`${base}/orders`, c);
        assert.equal(res.status, 200);
        assert.deepEqual(res.json(), { caller: PAYMENTS });
        assert.deepEqual((await send(`${base}/whoami`, c)).json(), { caller: PAYMENTS });
        assert.deepEqual((await send(`${base}/plain`, c)).json(), { caller: PAYMENTS });
      } finally {
        await c.close();
      }
    });

    test('another verified ID gets the 403 error body from spiffeErrorHandler, and onDenied the peer ID and route', async () => {
      const c = await clientFor('other');
      try {
        assertOtherRefused(await send(`${base}/orders`, c), denials, '/orders/');
        const line = await logLineFor('UNAUTHORIZED_SPIFFE_ID');
        assert.equal(line.level, 'warn');
        assert.equal(line.message, 'SPIFFE: request denied');
        assert.equal(line.fields.spiffeId, OTHER);
        assert.equal(line.fields.remoteAddress, '127.0.0.1');
        // the trust-domain allowlist admits it; an empty allowlist denies everyone
        assert.equal((await send(`${base}/health`, c)).status, 200);
        assert.equal((await send(`${base}/nobody`, c)).status, 403);
      } finally {
        await c.close();
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
      const plainBase = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
      const requestDenied: Record<string, () => Promise<Answer>> = {
        // a real connection with no verified SPIFFE ID (plain HTTP) on a route that needs one
        PEER_NOT_VERIFIED: () => send(`${plainBase}/mtls`),
        // a verified ID that is not allowed
        UNAUTHORIZED_SPIFFE_ID: () => send(`${secureBase}/mtls`, c),
        // an allowed peer with a bad bearer token
        JWTSVID_MALFORMED: () => send(`${secureBase}/jwt`, { ...p, headers: { authorization: 'Bearer not-a-jwt' } }),
      };
      try {
        await assertReshapedDenials('orders', requestDenied, seen);
        // the bearer denial event names the verified mTLS peer of the request
        assert.deepEqual(
          jwtDenials.map((e) => [e.code, String(e.spiffeId), e.route]),
          [['JWTSVID_MALFORMED', PAYMENTS, '/jwt']],
        );
      } finally {
        await Promise.all([c.close(), p.close()]);
        await closeServer(secure);
        await new Promise<void>((resolve) => plain.close(() => resolve()));
      }
    });

    test('no client certificate: the handshake is refused', async () => {
      await assertHandshakeRefused(`${base}/whoami`);
    });

    test('untrusted CA, cross-trust-domain and expired SVIDs are rejected before any middleware runs', async () => {
      for (const { name, svid } of await handshakeRefusedSvids(fx)) {
        await assert.rejects(callWithSvid(svid), Error, name);
      }
      // a federated partner with its own (trusted) CA is verified and identified, then denied by the allowlist
      const partnerSvid = await fx.partner.issueX509Svid('spiffe://partner.test/billing');
      assert.equal((await callWithSvid(partnerSvid)).status, 403);
      assert.equal((await callWithSvid(await dev.ca.issueX509Svid(PAYMENTS))).status, 200, 'control: good SVID');
    });

    test('rotation under continuous requests (SVID and CA): zero failed requests', async () => {
      const c = await clientFor('payments');
      try {
        await assertRotationUnderLoad(fx, flavour, async (worker) => {
          // worker 0 keeps its connection; workers 1 and 2 open a new one per request (new handshakes)
          const res = await send(`${base}/orders`, { ...c, reset: worker > 0 });
          if (res.status !== 200) throw new Error(`status ${res.status}`);
        });
      } finally {
        await c.close();
      }
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

    const get = (token: string | undefined, path = '/api/orders') => sendBearer(`${url}${path}`, token);

    test('valid JWT-SVID from the Workload API: 200 with req.jwtSvid', async () => {
      const res = await get(await workloadJwtSvid(dev, 'caller', 'orders'));
      assert.equal(res.status, 200);
      assert.deepEqual(res.json(), { sub: PAYMENTS, aud: ['orders'] });
    });

    test('missing, malformed, expired, wrong audience, wrong trust domain: 401 with WWW-Authenticate', async () => {
      const missing = await get(undefined);
      assert.equal(missing.status, 401);
      assert.equal(missing.www, 'Bearer realm="spiffe"');
      assert.equal(missing.code, 'JWTSVID_MISSING');
      for (const { name, token, code } of await refusedJwtSvids(dev.ca, 'orders')) {
        const r = await get(token);
        assert.equal(r.status, 401, name);
        assert.equal(r.code, code, name);
        assert.equal(r.www, INVALID_TOKEN_CHALLENGE, `${name}: no validation detail in the challenge`);
      }
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
