// Identity behind a proxy (trustedProxy + x-forwarded-client-cert), tokens bound to the peer, and path
// allowlists, over real sockets: mTLS from a "proxy" workload, and plain HTTP on loopback as a local sidecar.
// The identities, XFCC headers and attack cases are shared with the other adapters (test/support/adapters.ts).
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { JwtBundleSet, X509Source } from '@spiffe-ts/core';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import {
  createSpiffeHttpsServer,
  jwtSvid,
  requirePeer,
  type SpiffeDenial,
  spiffeErrorHandler,
  spiffeIdentity,
  spiffeServerTls,
} from '@spiffe-ts/express';
import express from 'express';
import {
  assertProxyForwards,
  assertSidecarBindsTokens,
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

let dev: DevWorkloadApiServer;
let serverSource: X509Source;
let server: https.Server;
let base: string;
const denials: SpiffeDenial[] = [];
const clients = spiffeClients(SERVER);
const clientFor = (workload: string) => clients.dispatcher(dev, workload);

function listen(s: http.Server | https.Server, scheme: string): Promise<string> {
  return new Promise((resolve) =>
    s.listen(0, '127.0.0.1', () => resolve(`${scheme}://127.0.0.1:${(s.address() as AddressInfo).port}`)),
  );
}

describe('@spiffe-ts/express trustedProxy over mTLS (proxy identified by SPIFFE ID)', () => {
  before(async () => {
    dev = await DevWorkloadApiServer.start({
      workloads: XFCC_WORKLOADS,
    });
    serverSource = await X509Source.create({ address: dev.address('server'), timeoutMs: 5000 });
    const app = express();
    const trustedProxy = { ids: [PROXY] };
    const onDenied = (e: SpiffeDenial) => denials.push(e);
    app.get('/whoami', spiffeIdentity({ trustedProxy }), (req, res) => {
      res.json({ id: req.spiffeId?.toString(), source: req.spiffeIdSource });
    });
    app.use(
      requirePeer([{ trustDomain: 'example.org', path: '/ns/*/sa/frontend' }, PROXY], { trustedProxy, onDenied }),
    );
    app.get('/who', (req, res) => {
      res.json({ id: req.spiffeId?.toString(), source: req.spiffeIdSource });
    });
    app.get(
      '/prod',
      requirePeer({ trustDomain: 'example.org', pathPrefix: '/ns/prod' }, { trustedProxy }),
      (req, res) => {
        res.json({ id: req.spiffeId?.toString() });
      },
    );
    app.use(spiffeErrorHandler());
    server = createSpiffeHttpsServer(app, spiffeServerTls(serverSource));
    base = await listen(server, 'https');
  });
  after(async () => {
    await clients.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await serverSource.close();
    await dev.stop();
  });

  test('the trusted proxy forwards the client ID; the request shows it came from the proxy', async () => {
    const proxy = await clientFor('proxy');
    await assertProxyForwards(`${base}/who`, proxy);
    const identity = await send(`${base}/whoami`, { headers: forwarded(xfcc(CLIENT)), dispatcher: proxy });
    assert.deepEqual(identity.json(), { id: CLIENT, source: 'proxy' });
  });

  test('multi-hop: the last element (added by the nearest proxy) is the one used', async () => {
    const who = xfccSender(`${base}/who`, await clientFor('proxy'));
    await assertXfccCases(MULTI_HOP_XFCC, who, (id) => ({ id, source: 'proxy' }));
  });

  test('a forwarded ID goes through the same allowlists (path prefix)', async () => {
    await assertXfccCases(PROD_PREFIX_XFCC, xfccSender(`${base}/prod`, await clientFor('proxy')), (id) => ({ id }));
  });

  test('spoofing: a direct client sending XFCC is refused, by requirePeer and by spiffeIdentity', async () => {
    const client = await clientFor('client');
    denials.length = 0;
    for (const path of ['/who', '/whoami']) {
      await assertXfccRefused(untrustedXfccFrom('client'), 'XFCC_UNTRUSTED_PEER', xfccSender(`${base}${path}`, client));
    }
    assert.equal(denials[0]?.spiffeId?.toString(), CLIENT, 'the denial names the verified connection');
  });

  test('spoofing: a proxy not on the trusted list is refused', async () => {
    const rogue = xfccSender(`${base}/who`, await clientFor('rogue'));
    await assertXfccRefused(untrustedXfccFrom('rogue'), 'XFCC_UNTRUSTED_PEER', rogue);
  });

  test('malformed headers from the trusted proxy are refused', async () => {
    await assertXfccRefused(MALFORMED_XFCC, 'XFCC_MALFORMED', xfccSender(`${base}/who`, await clientFor('proxy')));
  });
});

describe('@spiffe-ts/express trustedProxy as a local sidecar, with tokens bound to the peer', () => {
  let jdev: DevWorkloadApiServer;
  let plain: http.Server;
  let url: string;
  before(async () => {
    jdev = await DevWorkloadApiServer.start({ workloads: { x: SERVER } });
    const app = express();
    const trustedProxy = { localSidecar: true };
    app.use(requirePeer({ trustDomain: 'example.org', path: '/ns/*/sa/frontend' }, { trustedProxy }));
    app.get('/who', (req, res) => {
      res.json({ id: req.spiffeId?.toString(), source: req.spiffeIdSource });
    });
    const bundles = new JwtBundleSet([jdev.ca.jwtBundle()]);
    app.get('/bound', jwtSvid({ bundles, audience: 'orders', bindToPeer: true }), (req, res) => {
      res.json({ sub: req.jwtSvid?.id.toString() });
    });
    app.use(spiffeErrorHandler());
    plain = http.createServer(app);
    url = await listen(plain, 'http');
  });
  after(async () => {
    plain.closeAllConnections();
    await new Promise((r) => plain.close(r));
    await jdev.stop();
  });

  test('plain HTTP from loopback: the sidecar forwards the ID', async () => {
    await assertSidecarForwards(`${url}/who`);
  });

  test('bindToPeer: the token subject must be the forwarded peer', async () => {
    await assertSidecarBindsTokens(jdev.ca, `${url}/bound`);
  });

  test('bad options fail when the middleware is built', () => {
    assert.throws(() => requirePeer([], { trustedProxy: {} }), TypeError);
    assert.throws(() => spiffeIdentity({ trustedProxy: { localSidecar: 1 as never } }), TypeError);
    assert.throws(() => requirePeer({ trustDomain: 'example.org', pathPrefix: '/ns//x' }));
    assert.throws(
      () => jwtSvid({ bundles: new JwtBundleSet([]), audience: 'a', bindToPeer: 'yes' as never }),
      TypeError,
    );
  });
});
