// Identity behind a proxy (trustedProxy + x-forwarded-client-cert), tokens bound to the peer, and path
// allowlists, on both platforms over real sockets: mTLS from a "proxy" workload, and plain HTTP on loopback
// as a local sidecar. The identities, XFCC headers and attack cases are shared with the other adapters
// (test/support/adapters.ts).
import 'reflect-metadata';
import assert from 'node:assert/strict';
import type * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Controller, Get, type INestApplication, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { JwtBundleSet, type SpiffeId, X509Source } from '@spiffe-ts/core';
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
import {
  assertProxyForwards,
  assertSidecarForwards,
  assertXfccCases,
  assertXfccRefused,
  CLIENT,
  forwarded,
  MALFORMED_XFCC,
  MULTI_HOP_XFCC,
  PROD_PREFIX_XFCC,
  PROXY,
  SERVER,
  send,
  spiffeClients,
  untrustedXfccFrom,
  XFCC_WORKLOADS,
  xfcc,
  xfccSender,
} from '../../../test/support/adapters.js';

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
const clients = spiffeClients(SERVER);
const clientFor = (workload: string) => clients.dispatcher(dev, workload);

before(async () => {
  dev = await DevWorkloadApiServer.start({
    workloads: XFCC_WORKLOADS,
  });
  serverSource = await X509Source.create({ address: dev.address('server'), timeoutMs: 5000 });
});
after(async () => {
  await clients.close();
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
      await assertProxyForwards(`${base}/who`, await clientFor('proxy'));
    });

    test('multi-hop: only the last element counts; path allowlists apply to forwarded IDs', async () => {
      const proxy = await clientFor('proxy');
      await assertXfccCases(MULTI_HOP_XFCC, xfccSender(`${base}/who`, proxy), (id) => ({ id, source: 'proxy' }));
      await assertXfccCases(PROD_PREFIX_XFCC, xfccSender(`${base}/prod`, proxy), (id) => ({ id }));
    });

    test('spoofing: a direct client, or a proxy not on the list, sending XFCC is refused', async () => {
      denials.length = 0;
      for (const from of ['client', 'rogue'] as const) {
        const sender = xfccSender(`${base}/who`, await clientFor(from));
        await assertXfccRefused(untrustedXfccFrom(from), 'XFCC_UNTRUSTED_PEER', sender);
      }
      assert.equal(denials[0]?.spiffeId?.toString(), CLIENT, 'the denial names the verified connection');
    });

    test('malformed headers from the trusted proxy are refused', async () => {
      await assertXfccRefused(MALFORMED_XFCC, 'XFCC_MALFORMED', xfccSender(`${base}/who`, await clientFor('proxy')));
    });

    test('bindToPeer: the token subject must be the (forwarded) peer', async () => {
      const proxy = await clientFor('proxy');
      const good = (await dev.ca.issueJwtSvid(CLIENT, ['orders'])).token;
      const h = forwarded(xfcc(CLIENT));
      const ok = await send(`${base}/bound`, { headers: { ...h, authorization: `Bearer ${good}` }, dispatcher: proxy });
      assert.equal(ok.status, 200);
      assert.deepEqual(ok.json(), { sub: CLIENT });
      // The same token from the proxy without the header: the peer is the proxy, not the token's subject.
      const unbound = await send(`${base}/bound`, { headers: { authorization: `Bearer ${good}` }, dispatcher: proxy });
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
    await assertSidecarForwards(`${url}/who`);
  });

  test('bad trustedProxy options fail when the module is created', async () => {
    @Module({ imports: [SpiffeModule.forRoot({ trustedProxy: { header: 'bad header', localSidecar: true } })] })
    class BadModule {}
    await assert.rejects(NestFactory.create(BadModule, { logger: false, abortOnError: false }), TypeError);
  });
});
