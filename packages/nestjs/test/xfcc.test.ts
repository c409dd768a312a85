// Identity behind a proxy (trustedProxy + x-forwarded-client-cert), tokens bound to the peer, and path
// allowlists, on both platforms over real sockets: mTLS from a "proxy" workload, and plain HTTP on loopback
// as a local sidecar. XFCC values follow Envoy's documented format (no Envoy binary in the registries).
import 'reflect-metadata';
import assert from 'node:assert/strict';
import type * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Controller, Get, type INestApplication, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { JwtBundleSet, matchId, type SpiffeId, X509Source } from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import {
  AllowSpiffeIds,
  BearerJwtSvid,
  PeerSpiffeId,
  PeerSpiffeIdSource,
  RequireJwtSvid,
  type SpiffeDenial,
  SpiffeModule,
  spiffeServerTls,
} from '@spiffe-ts/nestjs';
import { type Dispatcher, request } from 'undici';

const SERVER = 'spiffe://example.org/ns/prod/sa/orders';
const PROXY = 'spiffe://example.org/ns/prod/sa/envoy';
const ROGUE_PROXY = 'spiffe://example.org/ns/prod/sa/rogue-envoy';
const CLIENT = 'spiffe://example.org/ns/prod/sa/frontend';
const HASH = '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688';
const xfcc = (uri: string, by = PROXY) => `By=${by};Hash=${HASH};Subject="";URI=${uri}`;

@Controller()
@AllowSpiffeIds([{ trustDomain: 'example.org', path: '/ns/*/sa/frontend' }, PROXY])
class WhoController {
  @Get('who')
  who(@PeerSpiffeId() id: SpiffeId | undefined, @PeerSpiffeIdSource() source: string | undefined) {
    return { id: id?.toString(), source };
  }

  @Get('prod')
  @AllowSpiffeIds({ trustDomain: 'example.org', pathPrefix: '/ns/prod' })
  prod(@PeerSpiffeId() id: SpiffeId | undefined) {
    return { id: id?.toString() };
  }

  @Get('bound')
  @RequireJwtSvid()
  bound(@BearerJwtSvid() svid: { id: SpiffeId } | undefined) {
    return { sub: svid?.id.toString() };
  }
}

let dev: DevWorkloadApiServer;
let serverSource: X509Source;
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

before(async () => {
  dev = await DevWorkloadApiServer.start({
    workloads: { server: SERVER, proxy: PROXY, rogue: ROGUE_PROXY, client: CLIENT },
  });
  serverSource = await X509Source.create({ address: dev.address('server'), timeoutMs: 5000 });
});
after(async () => {
  for (const c of clients) {
    await c.dispatcher.close();
    await c.source.close();
  }
  await serverSource.close();
  await dev.stop();
});

for (const platform of ['express', 'fastify'] as const) {
  describe(`@spiffe-ts/nestjs trustedProxy over mTLS (platform-${platform})`, () => {
    let app: INestApplication;
    let base: string;
    const denials: SpiffeDenial[] = [];
    before(async () => {
      const spiffe = spiffeServerTls(serverSource);
      @Module({
        imports: [
          SpiffeModule.forRoot({
            tls: spiffe,
            trustedProxy: { ids: [PROXY] },
            jwt: { bundles: new JwtBundleSet([dev.ca.jwtBundle()]), audience: 'orders', bindToPeer: true },
            onDenied: (e) => denials.push(e),
          }),
        ],
        controllers: [WhoController],
      })
      class AppModule {}
      app =
        platform === 'express'
          ? await NestFactory.create(AppModule, { httpsOptions: spiffe.options, logger: false })
          : await NestFactory.create(AppModule, new FastifyAdapter({ https: spiffe.options }), { logger: false });
      await app.listen(0, '127.0.0.1');
      base = `https://127.0.0.1:${((app.getHttpServer() as http.Server).address() as AddressInfo).port}`;
    });
    after(async () => {
      await app.close();
    });

    test('the trusted proxy forwards the client ID; @PeerSpiffeIdSource says proxy', async () => {
      const proxy = await clientFor('proxy');
      const res = await get(`${base}/who`, { 'x-forwarded-client-cert': xfcc(CLIENT) }, proxy);
      assert.equal(res.status, 200);
      assert.deepEqual(res.json(), { id: CLIENT, source: 'proxy' });
      assert.deepEqual((await get(`${base}/who`, {}, proxy)).json(), { id: PROXY, source: 'connection' });
    });

    test('multi-hop: only the last element counts; path allowlists apply to forwarded IDs', async () => {
      const proxy = await clientFor('proxy');
      const spoofLast = `${xfcc(CLIENT)},${xfcc('spiffe://example.org/ns/prod/sa/admin')}`;
      const denied = await get(`${base}/who`, { 'x-forwarded-client-cert': spoofLast }, proxy);
      assert.equal(denied.status, 403);
      assert.equal(denied.json().code, 'UNAUTHORIZED_SPIFFE_ID');
      const h = { 'x-forwarded-client-cert': xfcc('spiffe://example.org/ns/production/sa/frontend') };
      assert.equal((await get(`${base}/prod`, h, proxy)).status, 403);
      assert.equal((await get(`${base}/prod`, { 'x-forwarded-client-cert': xfcc(CLIENT) }, proxy)).status, 200);
    });

    test('spoofing: a direct client, or a proxy not on the list, sending XFCC is refused', async () => {
      denials.length = 0;
      for (const w of ['client', 'rogue']) {
        const d = await clientFor(w);
        const res = await get(`${base}/who`, { 'x-forwarded-client-cert': xfcc(CLIENT) }, d);
        assert.equal(res.status, 403, w);
        assert.equal(res.json().code, 'XFCC_UNTRUSTED_PEER', w);
      }
      assert.equal(denials[0]?.spiffeId?.toString(), CLIENT, 'the denial names the verified connection');
    });

    test('malformed headers from the trusted proxy are refused', async () => {
      const proxy = await clientFor('proxy');
      for (const h of [`URI=${CLIENT};`, `Foo=bar;URI=${CLIENT}`, `URI=${CLIENT};URI=${PROXY}`]) {
        const res = await get(`${base}/who`, { 'x-forwarded-client-cert': h }, proxy);
        assert.equal(res.status, 403, h);
        assert.equal(res.json().code, 'XFCC_MALFORMED', h);
      }
    });

    test('bindToPeer: the token subject must be the (forwarded) peer', async () => {
      const proxy = await clientFor('proxy');
      const good = (await dev.ca.issueJwtSvid(CLIENT, ['orders'])).token;
      const h = { 'x-forwarded-client-cert': xfcc(CLIENT) };
      const ok = await get(`${base}/bound`, { ...h, authorization: `Bearer ${good}` }, proxy);
      assert.equal(ok.status, 200);
      assert.deepEqual(ok.json(), { sub: CLIENT });
      // The same token from the proxy without the header: the peer is the proxy, not the token's subject.
      const unbound = await get(`${base}/bound`, { authorization: `Bearer ${good}` }, proxy);
      assert.equal(unbound.status, 401);
      assert.equal(unbound.json().code, 'JWTSVID_NOT_BOUND_TO_PEER');
    });
  });
}

describe('@spiffe-ts/nestjs trustedProxy as a local sidecar (plain HTTP on loopback)', () => {
  let app: INestApplication;
  let url: string;
  before(async () => {
    @Module({
      imports: [SpiffeModule.forRoot({ trustedProxy: { localSidecar: true }, allow: [] })],
      controllers: [WhoController],
    })
    class SidecarModule {}
    app = await NestFactory.create(SidecarModule, { logger: false });
    await app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${((app.getHttpServer() as http.Server).address() as AddressInfo).port}`;
  });
  after(async () => {
    await app.close();
  });

  test('the sidecar forwards the ID; without it there is none', async () => {
    const res = await get(`${url}/who`, { 'x-forwarded-client-cert': xfcc(CLIENT) });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json(), { id: CLIENT, source: 'proxy' });
    const none = await get(`${url}/who`, {});
    assert.equal(none.status, 403);
    assert.equal(none.json().code, 'PEER_NOT_VERIFIED');
  });

  test('bad trustedProxy options fail when the module is created', async () => {
    @Module({ imports: [SpiffeModule.forRoot({ trustedProxy: { header: 'bad header', localSidecar: true } })] })
    class BadModule {}
    await assert.rejects(NestFactory.create(BadModule, { logger: false, abortOnError: false }), TypeError);
  });
});
