// Where OpenSSL verified the handshake, the peer verification cache is keyed by the leaf alone (tls/peer.ts,
// verifyTlsPeer). These tests try to get an answer out of that cache that a full verification would not give:
// a different leaf, a rotated bundle, an ended validity window, a leaf that failed before. Real TLS sockets.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, before, describe, mock, test } from 'node:test';
import * as tls from 'node:tls';
import {
  connectSpiffeTls,
  createSpiffeTlsServer,
  peerSpiffeId,
  type SpiffeRejectEvent,
  StaticX509Source,
  X509Bundle,
  X509BundleSet,
  type X509MaterialSource,
  type X509Svid,
} from '@spiffe-ts/core';
import { DevCa } from '@spiffe-ts/dev-server';
import { presentChain } from './raw-tls.js';

const SERVER = 'spiffe://example.org/server';
const CLIENT = 'spiffe://example.org/client';
const DAY = 86_400_000;

describe('server: the leaf-keyed cache never answers for a leaf it did not verify', () => {
  let ca: DevCa;
  let server: tls.Server;
  let port: number;
  let client: X509Svid;
  const served: string[] = [];
  const rejects: SpiffeRejectEvent[] = [];

  function present(svid: X509Svid, extraPem = ''): Promise<string> {
    const { certificates, privateKey } = svid.toPem();
    return presentChain(port, certificates + extraPem, privateKey);
  }

  async function refused(attempt: Promise<string>, code: string): Promise<void> {
    const seen = rejects.length;
    const before = served.length;
    assert.equal(await attempt, '', 'nothing was served');
    assert.equal(served.length, before, 'the handler never ran');
    assert.deepEqual(
      rejects.slice(seen).map((r) => r.reason),
      [code],
    );
  }

  before(async () => {
    ca = await DevCa.create({ trustDomain: 'example.org' });
    client = await ca.issueX509Svid(CLIENT);
    const spiffe = createSpiffeTlsServer({
      source: new StaticX509Source(await ca.issueX509Svid(SERVER), ca.x509Bundle()),
      authorize: [CLIENT],
      onReject: (e) => rejects.push(e),
    });
    server = tls.createServer(spiffe.options, (socket) => {
      if (socket.destroyed) return;
      served.push(String(peerSpiffeId(socket)));
      socket.end(`${peerSpiffeId(socket)}`);
    });
    spiffe.attach(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
    // Verified and kept (twice: the second answer comes from the cache).
    assert.equal(await present(client), CLIENT);
    assert.equal(await present(client), CLIENT);
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  test('a different leaf of the same CA (OpenSSL accepts it) is verified in full and refused', async () => {
    // Two URI SANs: a valid X.509 chain for OpenSSL, not an X.509-SVID.
    const twoIds = await ca.issueX509Svid(CLIENT, { uris: [CLIENT, 'spiffe://example.org/other'] });
    await refused(present(twoIds), 'X509SVID_MULTIPLE_URI_SANS');
  });

  test('a leaf that failed verification is refused again (failures are never kept)', async () => {
    const twoIds = await ca.issueX509Svid(CLIENT, { uris: [CLIENT, 'spiffe://example.org/x'] });
    await refused(present(twoIds), 'X509SVID_MULTIPLE_URI_SANS');
    await refused(present(twoIds), 'X509SVID_MULTIPLE_URI_SANS');
    await refused(present(twoIds), 'X509SVID_MULTIPLE_URI_SANS');
  });

  test('a verified leaf that the authorizer refuses is refused on every connection', async () => {
    const stranger = await ca.issueX509Svid('spiffe://example.org/stranger');
    await refused(present(stranger), 'UNAUTHORIZED_SPIFFE_ID');
    await refused(present(stranger), 'UNAUTHORIZED_SPIFFE_ID');
  });

  test('the kept leaf sent with an unrelated extra certificate is still the verified peer', async () => {
    // What the cache may answer for: the same leaf (its key proven by the handshake) whatever else is sent.
    const unrelated = await DevCa.create({ trustDomain: 'unrelated.test' });
    assert.equal(await present(client, unrelated.x509Bundle().toPem()), CLIENT);
  });

  test('after the kept validity window ends, the leaf is verified again (and found expired)', async () => {
    assert.equal(await present(client), CLIENT);
    // Our clock only: OpenSSL still sees the leaf as valid, so only the window check can refuse it.
    mock.timers.enable({ apis: ['Date'], now: Date.now() + 2 * DAY });
    try {
      await refused(present(client), 'X509SVID_EXPIRED');
    } finally {
      mock.timers.reset();
    }
    assert.equal(await present(client), CLIENT);
  });
});

/** A source whose bundles can be replaced (as a Workload API update does). */
class MutableSource implements X509MaterialSource {
  constructor(
    private readonly svid: X509Svid,
    public bundles: X509BundleSet,
  ) {}
  getX509Svid(): X509Svid {
    return this.svid;
  }
  getX509BundleForTrustDomain(td: Parameters<X509BundleSet['getX509BundleForTrustDomain']>[0]): X509Bundle {
    return this.bundles.getX509BundleForTrustDomain(td);
  }
}

describe('client: a kept server leaf is verified again once its trust domain bundle changes', () => {
  let server: tls.Server;
  let port: number;
  let ca: DevCa;
  let partner: DevCa;

  before(async () => {
    ca = await DevCa.create({ trustDomain: 'example.org' });
    partner = await DevCa.create({ trustDomain: 'partner.test' });
    // An example.org ID issued by partner.test's CA: OpenSSL on the client accepts it as long as the client
    // trusts partner.test at all; SPIFFE verification only while example.org's bundle lists that CA.
    const svid = await partner.issueX509Svid(SERVER);
    const { certificates, privateKey } = svid.toPem();
    server = tls.createServer({ cert: certificates, key: privateKey }, (socket) => socket.end('ok'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  test('rotation of the bundle: the same leaf is refused once the new bundle no longer trusts its CA', async () => {
    const partnerRoots = partner.x509Bundle().authorities;
    const both = new X509Bundle('example.org', [...ca.x509Bundle().authorities, ...partnerRoots]);
    const source = new MutableSource(await ca.issueX509Svid(CLIENT), new X509BundleSet([both, partner.x509Bundle()]));
    const connect = () => connectSpiffeTls({ source, authorize: [SERVER], host: '127.0.0.1', port });
    for (let i = 0; i < 2; i++) {
      const socket = await connect();
      assert.equal(String(peerSpiffeId(socket)), SERVER);
      socket.destroy();
    }
    // example.org's bundle rotates to its own CA only; partner.test's CA is still trusted (by OpenSSL too).
    source.bundles = new X509BundleSet([ca.x509Bundle(), partner.x509Bundle()]);
    await assert.rejects(connect(), { code: 'X509SVID_UNTRUSTED' });
    await assert.rejects(connect(), { code: 'X509SVID_UNTRUSTED' });
  });
});
