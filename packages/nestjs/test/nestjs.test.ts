import 'reflect-metadata';
import assert from 'node:assert/strict';
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
  type JwtSvid as JwtSvidT,
  matchId,
  type SpiffeId as SpiffeIdT,
  toSpiffeId,
  X509Source,
  type X509Svid,
} from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
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
import { type Dispatcher, request } from 'undici';
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
  spiffeClient,
  startMtlsFixture,
  withSvidDispatcher,
  workloadJwtSvid,
} from '../../../test/support/adapters.js';

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
    let fx: MtlsFixture;
    let dev: DevWorkloadApiServer;
    let serverSource: X509Source;
    let app: INestApplication;
    let base: string;
    const denials: SpiffeDenial[] = [];
    // The module's logger option (pino-compatible): denials and refused handshakes land here.
    const { logger: spiffeLogger, lineFor: logLineFor } = captureLogger();

    const clientFor = (workload: string) => spiffeClient(dev, workload, ORDERS);
    const call = (dispatcher: Dispatcher, path: string, headers: Record<string, string> = {}, reset = false) =>
      send(`${base}${path}`, { dispatcher, headers, reset });
    const callWithSvid = (svid: X509Svid, path = '/orders') =>
      withSvidDispatcher(fx, svid, (dispatcher) => call(dispatcher, path));

    before(async () => {
      fx = await startMtlsFixture();
      ({ dev, serverSource } = fx);
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
      await fx.close();
    });

    test('allowed peer: 200 with @SpiffeId()', async () => {
      const c = await clientFor('payments');
      try {
        const res = await call(c.dispatcher, '/orders');
        assert.equal(res.status, 200, res.body);
        assert.deepEqual(JSON.parse(res.body), { caller: PAYMENTS });
      } finally {
        await c.close();
      }
    });

    test('another verified ID: 403 SpiffeAuthException body, onDenied told; handler-level rule overrides; empty list denies', async () => {
      const c = await clientFor('other');
      try {
        assertOtherRefused(await call(c.dispatcher, '/orders'), denials, 'GET /orders');
        const line = await logLineFor('UNAUTHORIZED_SPIFFE_ID');
        assert.equal(line.level, 'warn');
        assert.equal(line.fields.spiffeId, OTHER);
        assert.equal(line.fields.route, 'GET /orders');
        assert.deepEqual(JSON.parse((await call(c.dispatcher, '/orders/health')).body), { ok: true, caller: OTHER });
        assert.equal((await call(c.dispatcher, '/orders/nobody')).status, 403);
        assert.deepEqual(JSON.parse((await call(c.dispatcher, '/reports/open')).body), { peer: OTHER });
      } finally {
        await c.close();
      }
    });

    test('an app exception filter receives every kind of denial (code, status, headers) and reshapes it', async () => {
      const seen: Array<{ code: string; statusCode: number; headers: Record<string, string> }> = [];
      @Catch(SpiffeAuthException)
      class ProblemFilter implements ExceptionFilter {
        constructor(private readonly host: HttpAdapterHost) {}
        catch(exception: SpiffeAuthException, argumentsHost: ArgumentsHost) {
          seen.push({ code: exception.code, statusCode: exception.getStatus(), headers: { ...exception.headers } });
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
      const secureBase = `https://127.0.0.1:${secure.port}`;
      const requestDenied: Record<string, () => Promise<Answer>> = {
        // a real connection with no verified SPIFFE ID (plain HTTP) on a route that needs one
        PEER_NOT_VERIFIED: () => send(`http://127.0.0.1:${plain.port}/orders`),
        // a verified ID that is not allowed
        UNAUTHORIZED_SPIFFE_ID: () => send(`${secureBase}/orders`, c),
        // a bad bearer token
        JWTSVID_MALFORMED: () =>
          send(`${secureBase}/reports`, { ...p, headers: { authorization: 'Bearer not-a-jwt' } }),
      };
      try {
        await assertReshapedDenials('reports', requestDenied, seen);
      } finally {
        await Promise.all([c.close(), p.close()]);
        await Promise.all([secure.a.close(), plain.a.close()]);
      }
    });

    test('a self-signed client shows up in the module logger with its reason', async () => {
      await assertHandshakeRefused(`${base}/orders`, await selfSignedClientCert(PAYMENTS));
      const line = await logLineFor('TLS_SELF_SIGNED');
      assert.equal(line.message, 'SPIFFE: TLS handshake refused');
      assert.equal(line.fields.remoteAddress, '127.0.0.1');
    });

    test('no client certificate: the handshake is refused', async () => {
      await assertHandshakeRefused(`${base}/reports/open`);
    });

    test('untrusted CA, cross-trust-domain and expired SVIDs are rejected before any guard runs', async () => {
      for (const { name, svid } of await handshakeRefusedSvids(fx)) {
        await assert.rejects(callWithSvid(svid), Error, name);
      }
      assert.equal((await callWithSvid(await dev.ca.issueX509Svid(PAYMENTS))).status, 200, 'control');
    });

    test('JWT-SVID: valid 200 with @JwtSvid(); missing/expired/wrong audience 401 + WWW-Authenticate; subject allowlist 403', async () => {
      const c = await clientFor('payments');
      try {
        const token = await workloadJwtSvid(dev, 'payments', 'reports');
        const ok = await call(c.dispatcher, '/reports', { authorization: `Bearer ${token}` });
        assert.equal(ok.status, 200, ok.body);
        assert.deepEqual(ok.json(), { sub: PAYMENTS, aud: ['reports'], peer: PAYMENTS });

        const missing = await call(c.dispatcher, '/reports');
        assert.equal(missing.status, 401);
        assert.equal(missing.www, 'Bearer realm="spiffe"');
        for (const { name, token: bad, code } of await refusedJwtSvids(dev.ca, 'reports')) {
          const r = await call(c.dispatcher, '/reports', { authorization: `Bearer ${bad}` });
          assert.equal(r.status, 401, name);
          assert.equal(r.www, INVALID_TOKEN_CHALLENGE, name);
          assert.equal(r.json().code, code, name);
        }

        // payments-only takes the module's default audience and allows one subject
        const other = await dev.ca.issueJwtSvid(OTHER, 'reports');
        const r2 = await call(c.dispatcher, '/reports/payments-only', { authorization: `Bearer ${other.token}` });
        assert.equal(r2.status, 403);
        assert.match(String(r2.www), /insufficient_scope/);
        const r3 = await call(c.dispatcher, '/reports/payments-only', { authorization: `Bearer ${token}` });
        assert.deepEqual(r3.json(), { sub: PAYMENTS });
      } finally {
        await c.close();
      }
    });

    test('rotation under continuous requests (SVID and CA): zero failed requests', async () => {
      const c = await clientFor('payments');
      try {
        await assertRotationUnderLoad(fx, `Nest ${platform}`, async (worker) => {
          // worker 0 keeps its connection; workers 1 and 2 open a new one per request (new handshakes)
          const res = await call(c.dispatcher, '/orders', {}, worker > 0);
          if (res.status !== 200) throw new Error(`status ${res.status}`);
        });
      } finally {
        await c.close();
      }
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
