// Bundles from the Workload API are reused while their bytes are unchanged (bundle/reuse.ts): these tests
// check that reuse never stands in for changed, removed or bad bytes.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type X509Bundle, X509Source, type X509Svid } from '@spiffe-ts/core';
import { DevCa, DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { parseJwtBundlesResponse, parseX509SvidResponse } from '../src/workloadapi/parse.js';
import type { X509SVIDResponseMessage } from '../src/workloadapi/proto.js';

const ID = 'spiffe://example.org/service/orders';

/** A fresh copy of the bytes: reuse must depend on the content, not on the buffer object. */
const copy = (b: Uint8Array): Buffer => Buffer.from(Uint8Array.prototype.slice.call(b));

function message(svid: X509Svid, own: X509Bundle, federated: Record<string, Uint8Array>): X509SVIDResponseMessage {
  return {
    svids: [
      {
        spiffe_id: ID,
        x509_svid: Buffer.concat(svid.certificates.map((c) => c.raw)),
        x509_svid_key: svid.privateKey.export({ format: 'der', type: 'pkcs8' }),
        bundle: own.toDer(),
        hint: '',
      },
    ],
    crl: [],
    federated_bundles: Object.fromEntries(Object.entries(federated).map(([td, der]) => [td, copy(der)])),
  } as unknown as X509SVIDResponseMessage;
}

const authorityRaw = (b: X509Bundle | undefined): Buffer | undefined => b?.authorities[0]?.raw;

describe('federated bundles reused only while their bytes are unchanged', () => {
  let ca: DevCa;
  let a: DevCa;
  let b: DevCa;
  let b2: DevCa; // same trust domain as b, another CA: b's bundle as it would be after a change
  let svid: X509Svid;

  before(async () => {
    ca = await DevCa.create({ trustDomain: 'example.org' });
    a = await DevCa.create({ trustDomain: 'a.reuse.test' });
    b = await DevCa.create({ trustDomain: 'b.reuse.test' });
    b2 = await DevCa.create({ trustDomain: 'b.reuse.test' });
    svid = await ca.issueX509Svid(ID);
  });

  test('unchanged bytes in a new message give the same bundle objects', () => {
    const fed = { 'spiffe://a.reuse.test': a.x509Bundle().toDer(), 'spiffe://b.reuse.test': b.x509Bundle().toDer() };
    const one = parseX509SvidResponse(message(svid, ca.x509Bundle(), fed));
    const two = parseX509SvidResponse(message(svid, ca.x509Bundle(), fed));
    assert.equal(two.bundles.get('a.reuse.test'), one.bundles.get('a.reuse.test'));
    assert.equal(two.bundles.get('b.reuse.test'), one.bundles.get('b.reuse.test'));
    assert.deepEqual(authorityRaw(two.bundles.get('b.reuse.test')), b.x509Bundle().authorities[0]?.raw);
  });

  test('a bundle whose bytes changed is parsed again and its new content used; unchanged ones stay', () => {
    const before = parseX509SvidResponse(
      message(svid, ca.x509Bundle(), {
        'spiffe://a.reuse.test': a.x509Bundle().toDer(),
        'spiffe://b.reuse.test': b.x509Bundle().toDer(),
      }),
    );
    const after = parseX509SvidResponse(
      message(svid, ca.x509Bundle(), {
        'spiffe://a.reuse.test': a.x509Bundle().toDer(),
        'spiffe://b.reuse.test': b2.x509Bundle().toDer(),
      }),
    );
    assert.notEqual(after.bundles.get('b.reuse.test'), before.bundles.get('b.reuse.test'));
    assert.deepEqual(authorityRaw(after.bundles.get('b.reuse.test')), b2.x509Bundle().authorities[0]?.raw);
    assert.equal(after.bundles.get('a.reuse.test'), before.bundles.get('a.reuse.test'));
  });

  test('a change of one byte (same length) is a change', () => {
    const der = copy(b.x509Bundle().toDer());
    const first = parseX509SvidResponse(message(svid, ca.x509Bundle(), { 'spiffe://b.reuse.test': der }));
    // The last byte lies in the signature: the certificate still parses, but it is another certificate.
    const altered = copy(der);
    altered[altered.length - 1] = (altered[altered.length - 1] as number) ^ 0x01;
    const second = parseX509SvidResponse(message(svid, ca.x509Bundle(), { 'spiffe://b.reuse.test': altered }));
    const got = second.bundles.get('b.reuse.test');
    assert.notEqual(got, first.bundles.get('b.reuse.test'));
    assert.deepEqual(authorityRaw(got), altered);
  });

  test('a trust domain missing from an update is not in its bundle set', () => {
    parseX509SvidResponse(
      message(svid, ca.x509Bundle(), {
        'spiffe://a.reuse.test': a.x509Bundle().toDer(),
        'spiffe://b.reuse.test': b.x509Bundle().toDer(),
      }),
    );
    const next = parseX509SvidResponse(
      message(svid, ca.x509Bundle(), { 'spiffe://a.reuse.test': a.x509Bundle().toDer() }),
    );
    assert.equal(next.bundles.has('b.reuse.test'), false);
    assert.deepEqual(
      next.bundles.trustDomains().map((t) => t.name),
      ['a.reuse.test', 'example.org'],
    );
  });

  test('bad bytes for a known trust domain are refused, and do not disturb the good entry', () => {
    const good = b.x509Bundle().toDer();
    const first = parseX509SvidResponse(message(svid, ca.x509Bundle(), { 'spiffe://b.reuse.test': good }));
    assert.throws(() =>
      parseX509SvidResponse(message(svid, ca.x509Bundle(), { 'spiffe://b.reuse.test': Buffer.from('not a bundle') })),
    );
    const again = parseX509SvidResponse(message(svid, ca.x509Bundle(), { 'spiffe://b.reuse.test': good }));
    assert.equal(again.bundles.get('b.reuse.test'), first.bundles.get('b.reuse.test'));
  });

  test('the same bytes under another key are read for that key’s trust domain', () => {
    const der = b.x509Bundle().toDer();
    parseX509SvidResponse(message(svid, ca.x509Bundle(), { 'spiffe://b.reuse.test': der }));
    const other = parseX509SvidResponse(message(svid, ca.x509Bundle(), { 'spiffe://c.reuse.test': der }));
    assert.equal(other.bundles.get('c.reuse.test')?.trustDomain.name, 'c.reuse.test');
    assert.equal(other.bundles.has('b.reuse.test'), false);
  });

  test('JWT bundles: changed JWKS bytes are parsed again, unchanged ones reused', () => {
    const jwks = (c: DevCa) => Buffer.from(c.jwtBundle().marshal());
    const one = parseJwtBundlesResponse({ bundles: { 'spiffe://b.reuse.test': jwks(b) } } as never);
    const same = parseJwtBundlesResponse({ bundles: { 'spiffe://b.reuse.test': jwks(b) } } as never);
    const changed = parseJwtBundlesResponse({ bundles: { 'spiffe://b.reuse.test': jwks(b2) } } as never);
    assert.equal(same.get('b.reuse.test'), one.get('b.reuse.test'));
    assert.notEqual(changed.get('b.reuse.test'), one.get('b.reuse.test'));
    assert.deepEqual(changed.get('b.reuse.test')?.marshal(), b2.jwtBundle().marshal());
  });
});

describe('X509Source over the dev Workload API: federated bundle changes and removals reach the source', () => {
  let server: DevWorkloadApiServer;
  let a: DevCa;
  let b: DevCa;
  let b2: DevCa;

  before(async () => {
    a = await DevCa.create({ trustDomain: 'a.reuse.test' });
    b = await DevCa.create({ trustDomain: 'b.reuse.test' });
    b2 = await DevCa.create({ trustDomain: 'b.reuse.test' });
    server = await DevWorkloadApiServer.start({ workloads: { orders: ID }, autoRotate: false });
  });
  after(() => server.stop());

  test('a changed federated bundle replaces the old one; a dropped one disappears', async () => {
    server.setFault({ kind: 'x509', federatedBundles: [a.x509Bundle(), b.x509Bundle()] });
    const source = await X509Source.create({ address: server.address('orders') });
    try {
      const updated = () =>
        new Promise<void>((resolve) => {
          const off = source.onUpdate(() => {
            off();
            resolve();
          });
        });
      if (!source.bundles.has('b.reuse.test')) {
        const u = updated();
        await server.rotateSvids(['orders']);
        await u;
      }
      const first = source.bundles.get('b.reuse.test');
      assert.deepEqual(authorityRaw(first), b.x509Bundle().authorities[0]?.raw);

      server.setFault({ kind: 'x509', federatedBundles: [a.x509Bundle(), b2.x509Bundle()] });
      let u = updated();
      await server.rotateSvids(['orders']);
      await u;
      assert.deepEqual(authorityRaw(source.bundles.get('b.reuse.test')), b2.x509Bundle().authorities[0]?.raw);
      assert.notDeepEqual(authorityRaw(source.bundles.get('b.reuse.test')), authorityRaw(first));

      server.setFault({ kind: 'x509', federatedBundles: [a.x509Bundle()] });
      u = updated();
      await server.rotateSvids(['orders']);
      await u;
      assert.equal(source.bundles.has('b.reuse.test'), false);
      assert.equal(source.bundles.has('a.reuse.test'), true);
    } finally {
      await source.close();
    }
  });
});
