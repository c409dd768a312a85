import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  connectSpiffeTls,
  createSpiffeHttpsAgent,
  createSpiffeTlsServer,
  matchAny,
  matchId,
  peerSpiffeId,
  StaticX509Source,
  X509BundleSet,
  type X509Svid,
} from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import { DevCa } from '@spiffe-ts/dev-server';
import { request as undiciRequest } from 'undici';

const SERVER = 'spiffe://example.org/service/orders';
const ALLOWED = 'spiffe://example.org/service/payment-processor';
const OTHER = 'spiffe://example.org/service/other';

let ca: DevCa;
let partner: DevCa;
let stranger: DevCa;
let serverSvid: X509Svid;
let server: https.Server;
let port: number;
const seen: string[] = [];
const rejects: string[] = [];
let serverSource: StaticX509Source;

function clientSource(svid: X509Svid): StaticX509Source {
  return new StaticX509Source(svid, new X509BundleSet([ca.x509Bundle(), partner.x509Bundle()]));
}

/** The serial number of the client certificate the server receives on its next connection. */
async function serialSeenByServer(): Promise<string | undefined> {
  const [socket] = (await once(server, 'secureConnection')) as [import('node:tls').TLSSocket];
  return socket.getPeerX509Certificate()?.serialNumber;
}

async function get(svid: X509Svid, expectServer = SERVER): Promise<{ status: number; body: string }> {
  const dispatcher = createSpiffeDispatcher({ source: clientSource(svid), authorize: matchId(expectServer) });
  try {
    const res = await undiciRequest(`https://127.0.0.1:${port}/whoami`, { dispatcher });
    return { status: res.statusCode, body: await res.body.text() };
  } finally {
    await dispatcher.close();
  }
}

describe('SPIFFE mTLS with node:https and real sockets', () => {
  before(async () => {
    ca = await DevCa.create({ trustDomain: 'example.org' });
    partner = await DevCa.create({ trustDomain: 'partner.test' });
    stranger = await DevCa.create({ trustDomain: 'example.org' });
    serverSvid = await ca.issueX509Svid(SERVER);
    serverSource = new StaticX509Source(serverSvid, new X509BundleSet([ca.x509Bundle(), partner.x509Bundle()]));
    const spiffe = createSpiffeTlsServer({
      source: serverSource,
      authorize: [matchId(ALLOWED), { trustDomain: 'partner.test' }],
      onReject: ({ error }) => rejects.push((error as { code?: string }).code ?? error.message),
    });
    server = https.createServer(spiffe.options, (req, res) => {
      const id = peerSpiffeId(req.socket);
      seen.push(String(id));
      res.end(String(id));
    });
    spiffe.attach(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  test('allowed peer: request served, verified peer ID exposed', async () => {
    const res = await get(await ca.issueX509Svid(ALLOWED));
    assert.equal(res.status, 200);
    assert.equal(res.body, ALLOWED);
  });

  test('federated peer allowed by trust domain (verified against its own bundle)', async () => {
    const res = await get(await partner.issueX509Svid('spiffe://partner.test/billing'));
    assert.equal(res.body, 'spiffe://partner.test/billing');
  });

  test('other ID: dropped before any request reaches the handler', async () => {
    const before = seen.length;
    await assert.rejects(get(await ca.issueX509Svid(OTHER)));
    assert.equal(seen.length, before, 'handler never ran');
    assert.ok(rejects.includes('UNAUTHORIZED_SPIFFE_ID'));
  });

  test('cross-trust-domain: example.org ID signed by partner.test CA is rejected', async () => {
    const forged = await partner.issueX509Svid(ALLOWED); // claims example.org, signed by partner.test
    const before = seen.length;
    await assert.rejects(get(forged));
    assert.equal(seen.length, before);
    assert.ok(rejects.includes('X509SVID_UNTRUSTED'));
  });

  test('untrusted CA and missing client certificate fail the handshake', async () => {
    await assert.rejects(get(await stranger.issueX509Svid(ALLOWED)));
    const socketErr = await new Promise<Error>((resolve) => {
      const req = https.request(
        { host: '127.0.0.1', port, ca: ca.x509Bundle().toPem(), rejectUnauthorized: false },
        () => resolve(new Error('unexpected response')),
      );
      req.on('error', resolve);
      req.end();
    });
    assert.notEqual(socketErr.message, 'unexpected response');
  });

  test('expired client SVID is rejected', async () => {
    const expired = await ca.issueX509Svid(ALLOWED, {
      notBefore: new Date(Date.now() - 7200_000),
      notAfter: new Date(Date.now() - 3600_000),
    });
    const before = seen.length;
    await assert.rejects(
      (async () => {
        const s = new StaticX509Source(expired, new X509BundleSet([ca.x509Bundle()]));
        // bypass the source's own expiry guard to present the expired certificate on the wire
        Object.defineProperty(s, 'getX509Svid', { value: () => expired });
        const d = createSpiffeDispatcher({ source: s, authorize: matchId(SERVER) });
        try {
          await undiciRequest(`https://127.0.0.1:${port}/`, { dispatcher: d });
        } finally {
          await d.close();
        }
      })(),
    );
    assert.equal(seen.length, before);
  });

  test('client refuses a server whose SPIFFE ID is not the expected one', async () => {
    await assert.rejects(get(await ca.issueX509Svid(ALLOWED), 'spiffe://example.org/service/somebody-else'), {
      code: 'UNAUTHORIZED_SPIFFE_ID',
    });
  });

  test('connectSpiffeTls exposes the verified server ID; https.Agent works', async () => {
    const socket = await connectSpiffeTls({
      source: clientSource(await ca.issueX509Svid(ALLOWED)),
      authorize: matchAny(),
      host: '127.0.0.1',
      port,
    });
    assert.equal(peerSpiffeId(socket)?.toString(), SERVER);
    socket.destroy();
    const agent = createSpiffeHttpsAgent({
      source: clientSource(await ca.issueX509Svid(ALLOWED)),
      authorize: matchId(SERVER),
    });
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          let b = '';
          res.on('data', (c) => (b += c));
          res.on('end', () => resolve(b));
        })
        .on('error', reject);
    });
    agent.destroy();
    assert.equal(body, ALLOWED);
  });

  test('client connections share a TLS context per SVID and bundle set, and follow the source as it rotates', async () => {
    const { spiffeTlsConnectOptions } = await import('@spiffe-ts/core');
    const first = await ca.issueX509Svid(ALLOWED);
    const source = new StaticX509Source(first, new X509BundleSet([stranger.x509Bundle()])); // server not trusted
    const connect = () => connectSpiffeTls({ source, authorize: matchId(SERVER), host: '127.0.0.1', port });
    const a = spiffeTlsConnectOptions({ source, authorize: matchAny() });
    const b = spiffeTlsConnectOptions({ source, authorize: matchAny() });
    assert.ok(a.secureContext && a.secureContext === b.secureContext, 'one context for the same material');
    await assert.rejects(connect(), 'the bundle does not hold the server CA');

    // The bundle now trusts the server: a new context, so the handshake's chain check uses the new bundle.
    source.update(first, new X509BundleSet([ca.x509Bundle(), partner.x509Bundle()]));
    let seen = serialSeenByServer();
    let socket = await connect();
    assert.equal(await seen, first.leaf.serialNumber);
    socket.destroy();
    // A new client SVID: new connections present it.
    const second = await ca.issueX509Svid(ALLOWED);
    source.update(second);
    seen = serialSeenByServer();
    socket = await connect();
    assert.equal(await seen, second.leaf.serialNumber);
    socket.destroy();
  });

  test('tlsOptions that shape the TLS context are honored (they get a context of their own)', async () => {
    const { spiffeTlsConnectOptions } = await import('@spiffe-ts/core');
    const source = clientSource(await ca.issueX509Svid(ALLOWED));
    const tls12 = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } as const;
    assert.equal(
      spiffeTlsConnectOptions({ source, authorize: matchAny(), tlsOptions: tls12 }).secureContext,
      undefined,
    );
    // Honored: a TLS 1.2-only client is refused by our server, which speaks TLS 1.3 only unless told otherwise.
    await assert.rejects(
      connectSpiffeTls({ source, authorize: matchAny(), host: '127.0.0.1', port, tlsOptions: tls12 }),
      /version|alert/i,
    );
    const shared = await connectSpiffeTls({
      source,
      authorize: matchAny(),
      host: '127.0.0.1',
      port,
      tlsOptions: { ALPNProtocols: ['http/1.1'] },
    });
    assert.equal(shared.getProtocol(), 'TLSv1.3');
    shared.destroy();
  });

  test('TLS 1.3 is the floor and renegotiation is refused on both sides, whatever the options', async () => {
    const { createSpiffeTlsServer, spiffeTlsConnectOptions } = await import('@spiffe-ts/core');
    const { constants } = await import('node:crypto');
    const source = clientSource(await ca.issueX509Svid(ALLOWED));
    const server = createSpiffeTlsServer({ source, authorize: matchAny(), tlsOptions: { secureOptions: 0 } });
    assert.equal(server.options.minVersion, 'TLSv1.3');
    assert.ok((server.options.secureOptions ?? 0) & constants.SSL_OP_NO_RENEGOTIATION);
    const optIn = createSpiffeTlsServer({ source, authorize: matchAny(), tlsOptions: { minVersion: 'TLSv1.2' } });
    assert.equal(optIn.options.minVersion, 'TLSv1.2');
    assert.ok((optIn.options.secureOptions ?? 0) & constants.SSL_OP_NO_RENEGOTIATION);
    const client = spiffeTlsConnectOptions({ source, authorize: matchAny(), tlsOptions: { secureOptions: 0 } });
    assert.equal(client.minVersion, 'TLSv1.3');
    assert.ok((client.secureOptions ?? 0) & constants.SSL_OP_NO_RENEGOTIATION);
  });

  test('live rotation: new handshakes use the new server SVID, open connections keep working', async () => {
    const dispatcher = createSpiffeDispatcher({
      source: clientSource(await ca.issueX509Svid(ALLOWED)),
      authorize: matchId(SERVER),
    });
    try {
      const r1 = await undiciRequest(`https://127.0.0.1:${port}/`, { dispatcher });
      await r1.body.text();
      const newSvid = await ca.issueX509Svid(SERVER);
      serverSource.update(newSvid);
      // existing keep-alive connection still works
      const r2 = await undiciRequest(`https://127.0.0.1:${port}/`, { dispatcher });
      assert.equal(await r2.body.text(), ALLOWED);
      // a new connection sees the new certificate
      const sock = await connectSpiffeTls({
        source: clientSource(await ca.issueX509Svid(ALLOWED)),
        authorize: matchAny(),
        host: '127.0.0.1',
        port,
      });
      assert.equal(sock.getPeerX509Certificate()?.serialNumber, newSvid.leaf.serialNumber);
      sock.destroy();
    } finally {
      await dispatcher.close();
    }
  });
});

describe('verifyPeer: cached verifications never outlive their bundle or skip the authorizer', () => {
  test('a chain that verified is refused once its CA leaves the bundle, and the authorizer always runs', async () => {
    const { verifyPeer, X509SvidError, AuthorizationError } = await import('@spiffe-ts/core');
    const localCa = await DevCa.create({ trustDomain: 'example.org' });
    const peer = await localCa.issueX509Svid(ALLOWED);
    const chain = peer.certificates.map((c) => Buffer.from(c.raw));
    const trusting = new X509BundleSet([localCa.x509Bundle()]);
    assert.equal(verifyPeer(chain, trusting, matchAny()).toString(), ALLOWED);
    assert.equal(verifyPeer(chain, trusting, matchAny()).toString(), ALLOWED); // served from the cache
    assert.throws(() => verifyPeer(chain, trusting, matchId(OTHER)), AuthorizationError);
    // Same trust domain, a different CA: the cached result must not apply.
    const rotated = await DevCa.create({ trustDomain: 'example.org' });
    assert.throws(() => verifyPeer(chain, new X509BundleSet([rotated.x509Bundle()]), matchAny()), X509SvidError);
    // An equal but new bundle object re-verifies (and succeeds).
    const again = new X509BundleSet([localCa.x509Bundle()]);
    assert.equal(verifyPeer(chain, again, matchAny()).toString(), ALLOWED);
  });
});
