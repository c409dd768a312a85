// An attached server gives OpenSSL only its own trust domain's CAs (so that a thousand federated trust domains
// cost neither a huge trust store per context nor a huge CertificateRequest) and admits a federated peer on
// SPIFFE verification alone. These tests try to get a certificate past that path that SPIFFE verification
// would not accept: each must be refused before any handler runs.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import * as tls from 'node:tls';
import {
  createSpiffeTlsServer,
  peerSpiffeId,
  type SpiffeRejectEvent,
  StaticX509Source,
  X509BundleSet,
  type X509Svid,
} from '@spiffe-ts/core';
import { createAuthority, DevCa, issueX509SvidWith } from '@spiffe-ts/dev-server';
import { presentChain } from './raw-tls.js';

const SERVER = 'spiffe://example.org/service/orders';
const PARTNER = 'spiffe://partner.test/billing';

let ca: DevCa;
let partner: DevCa;
let server: tls.Server;
let port: number;
const served: string[] = [];
const rejects: SpiffeRejectEvent[] = [];
let detach: () => void;

/** Connects with the given PEM chain and key (no checks on our side); resolves with what the server answered. */
const connect = (certificates: string, privateKey: string) => presentChain(port, certificates, privateKey);

const present = (svid: X509Svid) => {
  const { certificates, privateKey } = svid.toPem();
  return connect(certificates, privateKey);
};

async function refused(attempt: Promise<string>, code: string): Promise<void> {
  const before = served.length;
  const seen = rejects.length;
  assert.equal(await attempt, '', 'nothing was served');
  assert.equal(served.length, before, 'the handler never ran');
  assert.ok(
    rejects.slice(seen).some((r) => r.reason === code),
    `refused as ${code}, got ${rejects.slice(seen).map((r) => r.reason)}`,
  );
}

describe('attached server: federated peers are verified by SPIFFE verification, not by OpenSSL', () => {
  before(async () => {
    ca = await DevCa.create({ trustDomain: 'example.org' });
    partner = await DevCa.create({ trustDomain: 'partner.test' });
    const source = new StaticX509Source(
      await ca.issueX509Svid(SERVER),
      new X509BundleSet([ca.x509Bundle(), partner.x509Bundle()]),
    );
    const spiffe = createSpiffeTlsServer({
      source,
      authorize: [{ trustDomain: 'partner.test' }, 'spiffe://example.org/service/payments'],
      onReject: (e) => rejects.push(e),
    });
    server = tls.createServer(spiffe.options, (socket) => {
      // A plain tls.Server's own listener still sees a refused (destroyed) socket.
      if (socket.destroyed) return;
      const id = peerSpiffeId(socket);
      served.push(String(id));
      socket.end(`${id} authorized=${socket.authorized}`);
    });
    detach = spiffe.attach(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  test('a federated peer is admitted with its verified ID, as is a peer of our own trust domain', async () => {
    assert.equal(await present(await partner.issueX509Svid(PARTNER)), `${PARTNER} authorized=true`);
    assert.equal(
      await present(await ca.issueX509Svid('spiffe://example.org/service/payments')),
      'spiffe://example.org/service/payments authorized=true',
    );
    // With its trust domain's root sent along (OpenSSL: self-signed certificate in chain).
    const svid = await partner.issueX509Svid(PARTNER);
    const { certificates, privateKey } = svid.toPem();
    assert.equal(await connect(certificates + partner.x509Bundle().toPem(), privateKey), `${PARTNER} authorized=true`);
  });

  test('the OpenSSL store of an attached server holds only its own trust domain', async () => {
    // A federated peer is not verified by OpenSSL: without the SPIFFE path it would never be admitted. The
    // CertificateRequest lists the acceptable CAs; node:tls exposes no way to read it, so this checks the
    // behaviour instead: a partner peer's socket is unauthorized before our listener runs.
    const verdicts: Array<boolean> = [];
    const early = (socket: tls.TLSSocket) => verdicts.push(socket.authorized);
    server.prependListener('secureConnection', early);
    try {
      await present(await partner.issueX509Svid(PARTNER));
    } finally {
      server.removeListener('secureConnection', early);
    }
    assert.deepEqual(verdicts, [false]);
  });

  test('a federated ID from a CA that is in no bundle is refused (unknown CA)', async () => {
    const impostor = await DevCa.create({ trustDomain: 'partner.test' });
    await refused(present(await impostor.issueX509Svid(PARTNER)), 'TLS_UNKNOWN_CA');
  });

  test('a federated ID signed by our own CA is refused (each ID chains to its own trust domain)', async () => {
    await refused(present(await ca.issueX509Svid(PARTNER)), 'X509SVID_UNTRUSTED');
  });

  test('an ID of our trust domain signed by the federated CA is refused', async () => {
    await refused(present(await partner.issueX509Svid('spiffe://example.org/service/payments')), 'X509SVID_UNTRUSTED');
  });

  test('a federated certificate whose signature was altered is refused', async () => {
    const svid = await partner.issueX509Svid(PARTNER);
    const der = Buffer.from(svid.leaf.raw);
    der[der.length - 5] = (der[der.length - 5] as number) ^ 0xff; // inside the signature value
    const pemCert = `-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`;
    await refused(connect(pemCert, svid.toPem().privateKey), 'X509SVID_UNTRUSTED');
  });

  test('an expired federated certificate is refused', async () => {
    const expired = await partner.issueX509Svid(PARTNER, {
      notBefore: new Date(Date.now() - 7200_000),
      notAfter: new Date(Date.now() - 3600_000),
    });
    const before = served.length;
    assert.equal(await present(expired), '');
    assert.equal(served.length, before, 'the handler never ran');
  });

  test('a federated certificate from a CA named like the partner CA is refused', async () => {
    // Same subject name as the partner's root, another key: name matching alone would take it for the root.
    const name = (partner.x509Bundle().authorities[0] as { subject: string }).subject.split('\n').join(', ');
    const rogue = await createAuthority({ uri: 'spiffe://partner.test', subject: name });
    await refused(present(await issueX509SvidWith(rogue, PARTNER)), 'X509SVID_UNTRUSTED');
  });

  test('a verified federated peer the authorizer does not allow is refused as unauthorized', async () => {
    const other = await DevCa.create({ trustDomain: 'other.test' });
    const source = new StaticX509Source(
      await ca.issueX509Svid(SERVER),
      new X509BundleSet([ca.x509Bundle(), partner.x509Bundle(), other.x509Bundle()]),
    );
    const localRejects: SpiffeRejectEvent[] = [];
    const spiffe = createSpiffeTlsServer({
      source,
      authorize: [{ trustDomain: 'partner.test' }],
      onReject: (e) => localRejects.push(e),
    });
    const s = tls.createServer(spiffe.options, (socket) => socket.end('served'));
    spiffe.attach(s);
    s.listen(0, '127.0.0.1');
    await once(s, 'listening');
    try {
      const { certificates, privateKey } = (await other.issueX509Svid('spiffe://other.test/x')).toPem();
      const answer = await presentChain((s.address() as AddressInfo).port, certificates, privateKey);
      assert.equal(answer, '');
      assert.deepEqual(
        localRejects.map((r) => r.reason),
        ['UNAUTHORIZED_SPIFFE_ID'],
      );
    } finally {
      await new Promise<void>((r) => s.close(() => r()));
    }
  });

  test('detached, the server trusts every trust domain through OpenSSL again', async () => {
    detach();
    try {
      // Unattached, node:tls itself refuses what it cannot verify and reads the full store.
      const answer = await present(await partner.issueX509Svid(PARTNER));
      assert.match(answer, /authorized=true$/);
    } finally {
      detach = () => undefined;
    }
  });
});
