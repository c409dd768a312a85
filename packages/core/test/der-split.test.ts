// Concatenated DER certificates are split by OpenSSL (internal/x509util.ts): every byte must belong to a
// certificate in its one DER encoding, else the whole input is refused.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { X509Bundle, X509Svid } from '@spiffe-ts/core';
import { DevCa } from '@spiffe-ts/dev-server';

describe('concatenated DER certificates', () => {
  let one: Buffer;
  let two: Buffer;
  let svid: X509Svid;

  before(async () => {
    const a = await DevCa.create({ trustDomain: 'a.split.test' });
    const b = await DevCa.create({ trustDomain: 'b.split.test' });
    one = (a.x509Bundle().authorities[0] as { raw: Buffer }).raw;
    two = (b.x509Bundle().authorities[0] as { raw: Buffer }).raw;
    svid = await a.issueX509Svid('spiffe://a.split.test/w');
  });

  test('are read one by one, each exactly its bytes', () => {
    const bundle = X509Bundle.parse('a.split.test', Buffer.concat([one, two]));
    assert.deepEqual(
      bundle.authorities.map((c) => c.raw),
      [one, two],
    );
    const key = svid.privateKey.export({ format: 'der', type: 'pkcs8' });
    const parsed = X509Svid.parse(Buffer.concat([svid.leaf.raw, one]), key);
    assert.deepEqual(
      parsed.certificates.map((c) => c.raw),
      [svid.leaf.raw, one],
    );
  });

  test('trailing bytes that are no certificate are refused', () => {
    assert.throws(() => X509Bundle.parse('a.split.test', Buffer.concat([one, Buffer.from([0x30, 0x03, 1, 2, 3])])));
    assert.throws(() => X509Bundle.parse('a.split.test', Buffer.concat([one, Buffer.from([0])])));
    const pem = `-----BEGIN CERTIFICATE-----\n${two.toString('base64')}\n-----END CERTIFICATE-----\n`;
    assert.throws(() => X509Bundle.parse('a.split.test', Buffer.concat([one, Buffer.from(pem)])));
  });

  test('a certificate in a non-DER encoding (long-form length padded with a zero byte) is refused', () => {
    // The outer SEQUENCE's length, re-encoded with one more length byte: valid BER, not DER.
    assert.equal(one[0], 0x30);
    const lenBytes = (one[1] as number) & 0x7f;
    assert.ok((one[1] as number) & 0x80, 'long-form length expected for a certificate');
    const padded = Buffer.concat([
      Buffer.from([0x30, 0x80 | (lenBytes + 1), 0]),
      one.subarray(2, 2 + lenBytes),
      one.subarray(2 + lenBytes),
    ]);
    assert.throws(() => X509Bundle.parse('a.split.test', padded));
    assert.throws(() => X509Bundle.parse('a.split.test', Buffer.concat([padded, two])));
  });
});
