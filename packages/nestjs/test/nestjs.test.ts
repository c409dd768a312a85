import 'reflect-metadata';
import assert from 'node:assert/strict';
import { KeyObject } from 'node:crypto';
import type * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  type ArgumentsHost,
  Catch,
  Controller,
  type ExceptionFilter,
  type ExecutionContext,
  Get,
  ImATeapotException,
  type INestApplication,
  Injectable,
  type LoggerService,
  Module,
} from '@nestjs/common';
import { APP_GUARD, HttpAdapterHost, NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import {
  JwtSource,
  type JwtSvid as JwtSvidT,
  matchId,
  type SpiffeId as SpiffeIdT,
  StaticX509Source,
  toSpiffeId,
  X509BundleSet,
  X509Source,
  type X509Svid,
} from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import { createAuthority, DevCa, DevWorkloadApiServer, KeyUsage } from '@spiffe-ts/dev-server';
import { type RotationUnderLoadResult, rotationUnderLoad } from '@spiffe-ts/dev-server/testing';
import {
  AllowSpiffeIds,
  BearerJwtSvid,
  nestSpiffeLogger,
  PeerSpiffeId,
  RequireJwtSvid,
  type SpiffeAuthError,
  SpiffeAuthException,
  type SpiffeDenial,
  SpiffeGuard,
  SpiffeModule,
  type SpiffeModuleOptions,
  type SpiffeOptionsFactory,
  SpiffeService,
  spiffeServerTls,
} from '@spiffe-ts/nestjs';
import { Agent, type Dispatcher, request } from 'undici';

const ORDERS = 'spiffe://example.org/service/orders';
const PAYMENTS = 'spiffe://example.org/service/payment-processor';
const OTHER = 'spiffe://example.org/service/other';

@Controller('orders')
@AllowSpiffeIds(PAYMENTS)
class OrdersController {
  @Get()
  list(@PeerSpiffeId() id: SpiffeIdT | undefined) {
    return { caller: id?.toString() ?? null };
  }

  @Get('health')
  @AllowSpiffeIds({ trustDomain: 'example.org' })
  health(@PeerSpiffeId() id: SpiffeIdT | undefined) {
    return { ok: true, caller: id?.toString() ?? null };
  }

  @Get('nobody')
  @AllowSpiffeIds()
  nobody() {
    return 'never';
  }
}

@Controller('reports')
class ReportsController {
  @Get()
  @RequireJwtSvid({ audience: 'reports' })
  get(@BearerJwtSvid() svid: JwtSvidT | undefined, @PeerSpiffeId() id: SpiffeIdT | undefined) {
    return { sub: svid?.id.toString() ?? null, aud: svid?.audience ?? null, peer: id?.toString() ?? null };
  }

  @Get('payments-only')
  @RequireJwtSvid({ allow: [PAYMENTS] })
  paymentsOnly(@BearerJwtSvid() svid: JwtSvidT | undefined) {
    return { sub: svid?.id.toString() ?? null };
  }

  @Get('open')
  open(@PeerSpiffeId() id: SpiffeIdT | undefined) {
    return { peer: id?.toString() ?? null };
  }
}

const logger: LoggerService = { log: () => undefined, error: () => undefined, warn: () => undefined };

for (const platform of ['express', 'fastify'] as const) {
  describe(`@spiffe-ts/nestjs on platform-${platform} over real mTLS sockets`, () => {
    let dev: DevWorkloadApiServer;
    let partner: DevCa;
    let stranger: DevCa;
    let serverSource: X509Source;
    let app: INestApplication;
    let base: string;
    const denials: SpiffeDenial[] = [];
    // The module's logger option (pino-compatible): denials and refused handshakes land here.
    const logLines: Array<{ level: string; fields: Record<string, unknown>; message: string }> = [];
    const at = (level: string) => (fields: object, message: string) =>
      logLines.push({ level, fields: fields as Record<string, unknown>, message });
    const spiffeLogger = { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
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
    const call = async (dispatcher: Dispatcher, path: string, headers: Record<string, string> = {}, reset = false) => {
      const res = await request(`${base}${path}`, { dispatcher, headers, reset });
      return { status: res.statusCode, body: await res.body.text(), www: res.headers['www-authenticate'] };
    };
    const callWithSvid = async (svid: X509Svid, path = '/orders') => {
      const source = new StaticX509Source(svid, new X509BundleSet([dev.ca.x509Bundle(), partner.x509Bundle()]));
      Object.defineProperty(source, 'getX509Svid', { value: () => svid });
      const dispatcher = createSpiffeDispatcher({ source, authorize: matchId(ORDERS) });
      try {
        return await call(dispatcher, path);
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
      const spiffe = spiffeServerTls(serverSource);

      @Module({
        imports: [
          SpiffeModule.forRootAsync({
            useFactory: () => ({
              tls: spiffe,
              workloadApi: { address: dev.address('orders') },
              jwt: { audience: 'reports' },
              onDenied: (e) => denials.push(e),
              logger: spiffeLogger,
            }),
          }),
        ],
        controllers: [OrdersController, ReportsController],
      })
      class AppModule {}

      app =
        platform === 'express'
          ? await NestFactory.create(AppModule, { httpsOptions: spiffe.options, logger })
          : await NestFactory.create(AppModule, new FastifyAdapter({ https: spiffe.options }), { logger });
      await app.listen(0, '127.0.0.1');
      base = `https://127.0.0.1:${((app.getHttpServer() as http.Server).address() as AddressInfo).port}`;
    });

    after(async () => {
      await app.close();
      await serverSource.close();
      await dev.stop();
    });

    test('allowed peer: 200 with @SpiffeId()', async () => {
      const c = await clientFor('payments');
      try {
        const res = await call(c.dispatcher, '/orders');
        assert.equal(res.status, 200, res.body);
        assert.deepEqual(JSON.parse(res.body), { caller: PAYMENTS });
      } finally {
        await c.dispatcher.close();
        await c.source.close();
      }
    });

    test('another verified ID: 403 SpiffeAuthException body, onDenied told; handler-level rule overrides; empty list denies', async () => {
      const c = await clientFor('other');
      try {
        const res = await call(c.dispatcher, '/orders');
        assert.equal(res.status, 403);
        assert.deepEqual(JSON.parse(res.body), {
          statusCode: 403,
          error: 'Forbidden',
          code: 'UNAUTHORIZED_SPIFFE_ID',
          message: 'SPIFFE ID not authorized',
        });
        const event = denials.find((e) => String(e.spiffeId) === OTHER && e.route === 'GET /orders');
        assert.equal(event?.code, 'UNAUTHORIZED_SPIFFE_ID', JSON.stringify(denials));
        assert.equal(event?.statusCode, 403);
        assert.equal(event?.remoteAddress, '127.0.0.1');
        const line = await logLineFor('UNAUTHORIZED_SPIFFE_ID');
        assert.equal(line.level, 'warn');
        assert.equal(line.fields.spiffeId, OTHER);
        assert.equal(line.fields.route, 'GET /orders');
        assert.deepEqual(JSON.parse((await call(c.dispatcher, '/orders/health')).body), { ok: true, caller: OTHER });
        assert.equal((await call(c.dispatcher, '/orders/nobody')).status, 403);
        assert.deepEqual(JSON.parse((await call(c.dispatcher, '/reports/open')).body), { peer: OTHER });
      } finally {
        await c.dispatcher.close();
        await c.source.close();
      }
    });

    test('an app exception filter receives every kind of denial (code, status, headers) and reshapes it', async () => {
      const seen: Array<{ code: string; status: number; headers: Record<string, string> }> = [];
      @Catch(SpiffeAuthException)
      class ProblemFilter implements ExceptionFilter {
        constructor(private readonly host: HttpAdapterHost) {}
        catch(exception: SpiffeAuthException, argumentsHost: ArgumentsHost) {
          seen.push({ code: exception.code, status: exception.getStatus(), headers: { ...exception.headers } });
          const res = argumentsHost.switchToHttp().getResponse();
          for (const [name, value] of Object.entries(exception.headers)) {
            this.host.httpAdapter.setHeader(res, name, value);
          }
          this.host.httpAdapter.reply(res, { problem: exception.code }, exception.getStatus());
        }
      }
      const tlsWiring = spiffeServerTls(serverSource);
      const build = async (https: boolean) => {
        @Module({
          imports: [
            SpiffeModule.forRoot({
              ...(https ? { tls: tlsWiring } : {}),
              jwt: { bundles: dev.ca.jwtBundle(), audience: 'reports', realm: 'reports' },
            }),
          ],
          controllers: [OrdersController, ReportsController],
        })
        class FilteredModule {}
        const a =
          platform === 'express'
            ? await NestFactory.create(FilteredModule, {
                ...(https ? { httpsOptions: tlsWiring.options } : {}),
                logger,
              })
            : await NestFactory.create(FilteredModule, new FastifyAdapter(https ? { https: tlsWiring.options } : {}), {
                logger,
              });
        a.useGlobalFilters(new ProblemFilter(a.get(HttpAdapterHost)));
        await a.listen(0, '127.0.0.1');
        return { a, port: ((a.getHttpServer() as http.Server).address() as AddressInfo).port };
      };
      const secure = await build(true);
      const plain = await build(false);
      const c = await clientFor('other');
      const p = await clientFor('payments');
      try {
        // a real connection with no verified SPIFFE ID (plain HTTP) on a route that needs one
        const r0 = await request(`http://127.0.0.1:${plain.port}/orders`);
        assert.equal(r0.statusCode, 403);
        assert.deepEqual(await r0.body.json(), { problem: 'PEER_NOT_VERIFIED' });
        // a verified ID that is not allowed
        const r1 = await request(`https://127.0.0.1:${secure.port}/orders`, { dispatcher: c.dispatcher });
        assert.equal(r1.statusCode, 403);
        assert.deepEqual(await r1.body.json(), { problem: 'UNAUTHORIZED_SPIFFE_ID' });
        // a bad bearer token
        const r2 = await request(`https://127.0.0.1:${secure.port}/reports`, {
          dispatcher: p.dispatcher,
          headers: { authorization: 'Bearer not-a-jwt' },
        });
        assert.equal(r2.statusCode, 401);
        assert.equal(r2.headers['www-authenticate'], 'Bearer realm="reports", error="invalid_token"');
        assert.deepEqual(await r2.body.json(), { problem: 'JWTSVID_MALFORMED' });
        assert.deepEqual(seen, [
          { code: 'PEER_NOT_VERIFIED', status: 403, headers: {} },
          { code: 'UNAUTHORIZED_SPIFFE_ID', status: 403, headers: {} },
          {
            code: 'JWTSVID_MALFORMED',
            status: 401,
            headers: { 'WWW-Authenticate': 'Bearer realm="reports", error="invalid_token"' },
          },
        ]);
      } finally {
        await Promise.all([c.dispatcher.close(), p.dispatcher.close()]);
        await Promise.all([c.source.close(), p.source.close()]);
        await Promise.all([secure.a.close(), plain.a.close()]);
      }
    });

    test('a self-signed client shows up in the module logger with its reason', async () => {
      const self = await createAuthority({ isCa: false, keyUsage: KeyUsage.digitalSignature, uri: PAYMENTS });
      const key = KeyObject.from(self.keyPair.keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
      const agent = new Agent({ connect: { rejectUnauthorized: false, cert: self.certificate.toString(), key } });
      try {
        await assert.rejects(request(`${base}/orders`, { dispatcher: agent }));
      } finally {
        await agent.close();
      }
      const line = await logLineFor('TLS_SELF_SIGNED');
      assert.equal(line.message, 'SPIFFE: TLS handshake refused');
      assert.equal(line.fields.remoteAddress, '127.0.0.1');
    });

    test('no client certificate: the handshake is refused', async () => {
      const agent = new Agent({ connect: { rejectUnauthorized: false } });
      try {
        await assert.rejects(request(`${base}/reports/open`, { dispatcher: agent }));
      } finally {
        await agent.close();
      }
    });

    test('untrusted CA, cross-trust-domain and expired SVIDs are rejected before any guard runs', async () => {
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
      assert.equal((await callWithSvid(await dev.ca.issueX509Svid(PAYMENTS))).status, 200, 'control');
    });

    test('JWT-SVID: valid 200 with @JwtSvid(); missing/expired/wrong audience 401 + WWW-Authenticate; subject allowlist 403', async () => {
      const c = await clientFor('payments');
      const jwt = await JwtSource.create({ address: dev.address('payments'), timeoutMs: 5000 });
      try {
        const token = (await jwt.fetchJwtSvid({ audience: 'reports' })).token;
        const ok = await call(c.dispatcher, '/reports', { authorization: `Bearer ${token}` });
        assert.equal(ok.status, 200, ok.body);
        assert.deepEqual(JSON.parse(ok.body), { sub: PAYMENTS, aud: ['reports'], peer: PAYMENTS });

        const missing = await call(c.dispatcher, '/reports');
        assert.equal(missing.status, 401);
        assert.equal(missing.www, 'Bearer realm="spiffe"');
        const expired = await dev.ca.issueJwtSvid(PAYMENTS, 'reports', {
          issuedAt: new Date(Date.now() - 3600_000),
          expiresAt: new Date(Date.now() - 600_000),
        });
        const r1 = await call(c.dispatcher, '/reports', { authorization: `Bearer ${expired.token}` });
        assert.equal(r1.status, 401);
        assert.equal(r1.www, 'Bearer realm="spiffe", error="invalid_token"');
        assert.equal(JSON.parse(r1.body).code, 'JWTSVID_EXPIRED');
        const wrongAud = await dev.ca.issueJwtSvid(PAYMENTS, 'billing');
        assert.equal((await call(c.dispatcher, '/reports', { authorization: `Bearer ${wrongAud.token}` })).status, 401);

        // payments-only takes the module's default audience and allows one subject
        const other = await dev.ca.issueJwtSvid(OTHER, 'reports');
        const r2 = await call(c.dispatcher, '/reports/payments-only', { authorization: `Bearer ${other.token}` });
        assert.equal(r2.status, 403);
        assert.match(String(r2.www), /insufficient_scope/);
        const r3 = await call(c.dispatcher, '/reports/payments-only', { authorization: `Bearer ${token}` });
        assert.deepEqual(JSON.parse(r3.body), { sub: PAYMENTS });
      } finally {
        await jwt.close();
        await c.dispatcher.close();
        await c.source.close();
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
        });
      } finally {
        await c.dispatcher.close();
        await c.source.close();
      }
      console.log(`Nest ${platform} rotation under load: ${r.ok} requests ok, ${r.failed} failed`);
      assert.equal(r.failed, 0, r.errors.slice(0, 5).join('; '));
      assert.ok(r.ok > 20, `enough requests ran (${r.ok})`);
    });

    test('the module exposes its sources and closes the JwtSource it opened on shutdown', async () => {
      const svc = app.get(SpiffeService);
      const owned = svc.jwtSource;
      assert.ok(owned, 'module-owned JwtSource');
      await svc.onApplicationShutdown();
      await assert.rejects(owned.fetchJwtSvid({ audience: 'x' }), { code: 'SOURCE_CLOSED' });
    });
  });
}

describe('@spiffe-ts/nestjs global guard: deny by default with the module’s `allow`', () => {
  for (const allow of [[], undefined] as const) {
    test(`allow: ${allow === undefined ? 'not set (undecorated routes pass)' : '[] (undecorated routes are refused)'}`, async () => {
      const dev = await DevWorkloadApiServer.start({ workloads: { orders: ORDERS, payments: PAYMENTS } });
      const serverSource = await X509Source.create({ address: dev.address('orders'), timeoutMs: 5000 });
      const client = await X509Source.create({ address: dev.address('payments'), timeoutMs: 5000 });
      const dispatcher = createSpiffeDispatcher({ source: client, authorize: matchId(ORDERS) });
      const spiffe = spiffeServerTls(serverSource);
      // the two cases also cover forRoot and forRootAsync({ useClass })
      @Injectable()
      class OptionsFactory implements SpiffeOptionsFactory {
        createSpiffeOptions(): SpiffeModuleOptions {
          return { tls: spiffe, allow };
        }
      }
      @Module({
        imports: [
          allow === undefined
            ? SpiffeModule.forRoot({ tls: spiffe, allow })
            : SpiffeModule.forRootAsync({ useClass: OptionsFactory }),
        ],
        controllers: [OrdersController, ReportsController],
        providers: [{ provide: APP_GUARD, useExisting: SpiffeGuard }],
      })
      class GuardedModule {}
      const app = await NestFactory.create(GuardedModule, { httpsOptions: spiffe.options, logger });
      try {
        await app.listen(0, '127.0.0.1');
        const port = ((app.getHttpServer() as http.Server).address() as AddressInfo).port;
        const get = async (path: string) =>
          (await request(`https://127.0.0.1:${port}${path}`, { dispatcher })).statusCode;
        assert.equal(await get('/orders'), 200, 'a route that allows the peer itself');
        assert.equal(await get('/reports/open'), allow === undefined ? 200 : 403, 'a route without SPIFFE decorators');
      } finally {
        await app.close();
        await dispatcher.close();
        await client.close();
        await serverSource.close();
        await dev.stop();
      }
    });
  }
});

describe('SpiffeModule start-up checks', () => {
  test('a module `allow` without SPIFFE TLS wiring fails at start-up (every request would be 403)', async () => {
    @Module({ imports: [SpiffeModule.forRoot({ allow: ['spiffe://example.org/a'] })] })
    class NoTlsModule {}
    const app = await NestFactory.create(NoTlsModule, { logger });
    try {
      await assert.rejects(app.init(), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'TLS_NOT_CONFIGURED');
        assert.match(e.message, /tls: spiffeServerTls/);
        return true;
      });
    } finally {
      await app.close();
    }
  });

  test('@AllowSpiffeIds routes on an app without SPIFFE TLS: 403, and one error line saying why', async () => {
    const lines: Array<{ level: string; fields: Record<string, unknown> }> = [];
    const rec = (level: string) => (fields: object) => lines.push({ level, fields: fields as Record<string, unknown> });
    const spiffeLogger = { error: rec('error'), warn: rec('warn'), info: rec('info'), debug: rec('debug') };
    @Module({ imports: [SpiffeModule.forRoot({ logger: spiffeLogger })], controllers: [OrdersController] })
    class DecoratedOnlyModule {}
    const app = await NestFactory.create(DecoratedOnlyModule, { logger });
    try {
      await app.listen(0, '127.0.0.1');
      const port = ((app.getHttpServer() as http.Server).address() as AddressInfo).port;
      for (let i = 0; i < 2; i++) {
        assert.equal((await request(`http://127.0.0.1:${port}/orders`)).statusCode, 403);
      }
      assert.equal(lines.filter((l) => l.level === 'warn' && l.fields.reason === 'PEER_NOT_VERIFIED').length, 2);
      const errors = lines.filter((l) => l.level === 'error');
      assert.equal(errors.length, 1, 'said once');
      assert.equal(errors[0]?.fields.reason, 'TLS_NOT_CONFIGURED');
    } finally {
      await app.close();
    }
  });

  test('nestSpiffeLogger writes one line per event on a Nest logger', () => {
    const seen: string[] = [];
    const nest = {
      log: (m: string) => seen.push(`log ${m}`),
      warn: (m: string) => seen.push(`warn ${m}`),
      error: () => undefined,
      debug: () => undefined,
    };
    nestSpiffeLogger(nest).warn(
      { reason: 'TLS_SELF_SIGNED', remoteAddress: '10.0.0.1', spiffeId: undefined },
      'SPIFFE: TLS handshake refused',
    );
    assert.deepEqual(seen, ['warn SPIFFE: TLS handshake refused reason="TLS_SELF_SIGNED" remoteAddress="10.0.0.1"']);
  });
});

describe('SpiffeModule.forRootAsync', () => {
  test('useExisting takes the options from a provider of an imported module', async () => {
    @Injectable()
    class ConfigFactory implements SpiffeOptionsFactory {
      createSpiffeOptions(): SpiffeModuleOptions {
        return { allow: [PAYMENTS], jwt: { audience: 'from-config' } };
      }
    }
    @Module({ providers: [ConfigFactory], exports: [ConfigFactory] })
    class ConfigModule {}
    @Module({ imports: [SpiffeModule.forRootAsync({ imports: [ConfigModule], useExisting: ConfigFactory })] })
    class AppModule {}
    const ctx = await NestFactory.createApplicationContext(AppModule, { logger });
    try {
      const svc = ctx.get(SpiffeService);
      assert.deepEqual(svc.jwtDefaults, { audience: 'from-config' });
      assert.equal(svc.defaultAllow?.(toSpiffeId(PAYMENTS)), true);
      assert.equal(svc.defaultAllow?.(toSpiffeId(OTHER)), false);
    } finally {
      await ctx.close();
    }
  });

  test('exactly one of useFactory, useClass, useExisting', () => {
    assert.throws(() => SpiffeModule.forRootAsync({}), TypeError);
    assert.throws(() => SpiffeModule.forRootAsync({ useFactory: () => ({}), useClass: class {} as never }), TypeError);
  });
});

describe('SpiffeGuard is extensible', () => {
  test('a subclass overrides throwDenied (its own exception) and getRequest; the decision stays the core one', async () => {
    const requests: string[] = [];
    @Injectable()
    class TeapotGuard extends SpiffeGuard {
      protected override getRequest(context: ExecutionContext) {
        const req = super.getRequest(context);
        requests.push(String(req?.url));
        return req;
      }
      protected override throwDenied(error: SpiffeAuthError): never {
        throw new ImATeapotException({ denied: error.code, status: error.statusCode });
      }
    }
    @Module({
      imports: [SpiffeModule.forRoot({ allow: [] })],
      controllers: [ReportsController],
      providers: [{ provide: APP_GUARD, useClass: TeapotGuard }],
    })
    class TeapotModule {}
    const app = await NestFactory.create(TeapotModule, { logger });
    try {
      await app.listen(0, '127.0.0.1');
      const port = ((app.getHttpServer() as http.Server).address() as AddressInfo).port;
      // plain HTTP: no verified SPIFFE ID, and the module's allow: [] denies undecorated routes
      const res = await request(`http://127.0.0.1:${port}/reports/open`);
      assert.equal(res.statusCode, 418);
      assert.deepEqual(await res.body.json(), { denied: 'PEER_NOT_VERIFIED', status: 403 });
      assert.deepEqual(requests, ['/reports/open']);
    } finally {
      await app.close();
    }
  });
});
