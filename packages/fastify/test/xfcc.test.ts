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
  assertProxyForwards,
  assertSidecarBindsTokens,
  assertSidecarForwards,
  assertXfccCases,
  assertXfccRefused,
  CLIENT,
  MALFORMED_XFCC,
  MULTI_HOP_XFCC,
  PROD_PREFIX_XFCC,
  PROXY,
  SERVER,
  spiffeClients,
  untrustedXfccFrom,
  XFCC_WORKLOADS,
  xfccSender,
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
    await assertProxyForwards(`${base}/who`, await clientFor('proxy'));
  });

  test('multi-hop: the last element (added by the nearest proxy) is the one used', async () => {
    const who = xfccSender(`${base}/who`, await clientFor('proxy'));
    await assertXfccCases(MULTI_HOP_XFCC, who, (id) => ({ id, source: 'proxy' }));
  });

  test('a forwarded ID goes through the same allowlists (path prefix route)', async () => {
    await assertXfccCases(PROD_PREFIX_XFCC, xfccSender(`${base}/prod`, await clientFor('proxy')), (id) => ({ id }));
  });

  test('spoofing: a direct client sending XFCC is refused, not trusted and not ignored', async () => {
    const client = xfccSender(`${base}/who`, await clientFor('client'));
    denials.length = 0;
    await assertXfccRefused(untrustedXfccFrom('client'), 'XFCC_UNTRUSTED_PEER', client);
    assert.equal(denials[0]?.spiffeId?.toString(), CLIENT, 'the denial names the verified connection, not the header');
  });

  test('spoofing: a proxy not on the trusted list is refused', async () => {
    const rogue = xfccSender(`${base}/prod`, await clientFor('rogue'));
    await assertXfccRefused(untrustedXfccFrom('rogue'), 'XFCC_UNTRUSTED_PEER', rogue);
  });

  test('malformed headers from the trusted proxy are refused', async () => {
    await assertXfccRefused(MALFORMED_XFCC, 'XFCC_MALFORMED', xfccSender(`${base}/who`, await clientFor('proxy')));
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
    await assertSidecarForwards(`${url}/who`);
  });

  test('bindToPeer: the token subject must be the forwarded peer', async () => {
    await assertSidecarBindsTokens(ca.ca, `${url}/bound`);
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
