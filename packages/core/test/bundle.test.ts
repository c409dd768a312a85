// X.509 bundles, JWT bundles, SPIFFE bundles (SPIFFE Trust Domain and Bundle standard) and bundle sets.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, type KeyObject, type X509Certificate } from 'node:crypto';
import { before, describe, test } from 'node:test';
import {
  BundleError,
  JwtBundle,
  JwtBundleSet,
  SpiffeBundle,
  SpiffeBundleSet,
  type SpiffeErrorCode,
  TrustDomain,
  X509Bundle,
  X509BundleSet,
} from '@spiffe-ts/core';
import { createAuthority } from '@spiffe-ts/dev-server';

const TD = TrustDomain.parse('example.org');
const OTHER = TrustDomain.parse('other.org');

let ca1: X509Certificate;
let ca2: X509Certificate;
let ca3: X509Certificate;
let ecKey: KeyObject;
let ecKey2: KeyObject;
let rsaKey: KeyObject;
let edKey: KeyObject;
let ecPrivate: KeyObject;

before(async () => {
  [ca1, ca2, ca3] = (
    await Promise.all([
      createAuthority({ uri: 'spiffe://example.org' }),
      createAuthority({ uri: 'spiffe://example.org' }),
      createAuthority({ uri: 'spiffe://other.org', keyType: 'ec-p384' }),
    ])
  ).map((a) => a.certificate) as [X509Certificate, X509Certificate, X509Certificate];
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  ecKey = ec.publicKey;
  ecPrivate = ec.privateKey;
  ecKey2 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
  rsaKey = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
  edKey = generateKeyPairSync('ed25519').publicKey;
});

function throwsBundle(fn: () => unknown, code: SpiffeErrorCode, label?: string): void {
  assert.throws(
    fn,
    (err: unknown) => {
      assert.ok(err instanceof BundleError, `${label ?? ''}: expected BundleError, got ${String(err)}`);
      assert.equal(err.code, code, `${label ?? ''}: ${err.message}`);
      return true;
    },
    label,
  );
}

const fingerprints = (certs: readonly X509Certificate[]) => certs.map((c) => c.fingerprint256);
const jwk = (key: KeyObject, extra: Record<string, unknown> = {}) => ({ ...key.export({ format: 'jwk' }), ...extra });

describe('X509Bundle', () => {
  test('parse: single PEM certificate', () => {
    const b = X509Bundle.parse('example.org', ca1.toString());
    assert.equal(b.trustDomain.name, 'example.org');
    assert.deepEqual(fingerprints(b.authorities), fingerprints([ca1]));
  });

  test('parse: concatenated PEM certificates keep their order', () => {
    const b = X509Bundle.parse(TD, ca2.toString() + ca1.toString() + ca3.toString());
    assert.deepEqual(fingerprints(b.authorities), fingerprints([ca2, ca1, ca3]));
  });

  test('parse: PEM with text around the blocks and CRLF line endings', () => {
    const pem = `# bundle for example.org\r\n${ca1.toString().replace(/\n/g, '\r\n')}some trailer\n${ca2.toString()}`;
    assert.deepEqual(fingerprints(X509Bundle.parse(TD, pem).authorities), fingerprints([ca1, ca2]));
  });

  test('parse: PEM as bytes, including a long header before the first block (openssl -text, CA bundles)', () => {
    const pem = ca1.toString() + ca2.toString();
    assert.deepEqual(fingerprints(X509Bundle.parse(TD, Buffer.from(pem)).authorities), fingerprints([ca1, ca2]));
    const header = '##\n## Bundle of CA Root Certificates\n##\n## Certificate data as of today. Do not edit.\n##\n\n';
    assert.ok(header.length > 64);
    assert.deepEqual(
      fingerprints(X509Bundle.parse(TD, Buffer.from(header + pem)).authorities),
      fingerprints([ca1, ca2]),
    );
    assert.deepEqual(
      fingerprints(X509Bundle.parse(TD, new TextEncoder().encode(header + pem)).authorities),
      fingerprints([ca1, ca2]),
    );
  });

  test('parse: PEM blocks of other types are ignored', () => {
    const key = ecPrivate.export({ format: 'pem', type: 'pkcs8' }).toString();
    assert.deepEqual(fingerprints(X509Bundle.parse(TD, key + ca1.toString()).authorities), fingerprints([ca1]));
  });

  test('parse: single DER certificate', () => {
    const b = X509Bundle.parse(TD, ca1.raw);
    assert.deepEqual(fingerprints(b.authorities), fingerprints([ca1]));
  });

  test('parse: concatenated DER certificates (as the Workload API sends them)', () => {
    const der = Buffer.concat([ca1.raw, ca3.raw, ca2.raw]);
    assert.deepEqual(fingerprints(X509Bundle.parse(TD, der).authorities), fingerprints([ca1, ca3, ca2]));
    // A Uint8Array view into a bigger buffer must be read at its own offset.
    const big = Buffer.concat([Buffer.from('xxxx'), der, Buffer.from('yyyy')]);
    const view = new Uint8Array(big.buffer, big.byteOffset + 4, der.length);
    assert.deepEqual(fingerprints(X509Bundle.parse(TD, view).authorities), fingerprints([ca1, ca3, ca2]));
  });

  test('parse: an array of certificates, DER and PEM', () => {
    const b = X509Bundle.parse(TD, [ca1, ca2.raw, ca3.toString()]);
    assert.deepEqual(fingerprints(b.authorities), fingerprints([ca1, ca2, ca3]));
  });

  test('duplicate authorities are kept once', () => {
    const b = X509Bundle.parse(TD, ca1.toString() + ca1.toString() + ca2.toString());
    assert.deepEqual(fingerprints(b.authorities), fingerprints([ca1, ca2]));
  });

  test('parse: invalid input is BUNDLE_INVALID', () => {
    const half = ca1.raw.subarray(0, Math.floor(ca1.raw.length / 2));
    const cases: Array<[string, unknown]> = [
      ['empty string', ''],
      ['text without PEM', 'not a certificate'],
      ['only a key block', ecPrivate.export({ format: 'pem', type: 'pkcs8' }).toString()],
      ['PEM block with garbage body', '-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n'],
      ['garbage bytes', Buffer.from([0xff, 0xfe, 0xfd, 0xfc])],
      ['truncated DER', half],
      ['DER with trailing garbage', Buffer.concat([ca1.raw, Buffer.from([0x30, 0x82, 0xff])])],
      ['DER SEQUENCE that is not a certificate', Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01])],
      ['a certificate followed by a bad one', [ca1, Buffer.from('nope')]],
      ['a number', 42],
      ['null', null],
    ];
    for (const [label, input] of cases) {
      throwsBundle(() => X509Bundle.parse(TD, input as string), 'BUNDLE_INVALID', label);
    }
  });

  test('DER that makes the ASN.1 decoder throw (a Name string retagged as GeneralizedTime) is BUNDLE_INVALID', () => {
    const raw = Buffer.from(ca1.raw);
    const at = raw.indexOf(Buffer.from('spiffe-ts'));
    assert.ok(at > 2 && (raw[at - 2] === 0x0c || raw[at - 2] === 0x13), 'a UTF8String or PrintableString');
    raw[at - 2] = 0x18;
    throwsBundle(() => X509Bundle.parse(TD, raw), 'BUNDLE_INVALID');
    throwsBundle(() => X509Bundle.parse(TD, Buffer.concat([ca2.raw, raw])), 'BUNDLE_INVALID');
  });

  test('accessors, equality and copies', () => {
    const b = new X509Bundle(TD, [ca1]);
    assert.ok(b.hasAuthority(ca1));
    assert.ok(!b.hasAuthority(ca2));
    const b2 = b.withAuthority(ca2);
    assert.deepEqual(fingerprints(b2.authorities), fingerprints([ca1, ca2]));
    assert.deepEqual(fingerprints(b.authorities), fingerprints([ca1]), 'original unchanged');
    assert.deepEqual(fingerprints(b2.withoutAuthority(ca1).authorities), fingerprints([ca2]));
    assert.ok(b.equals(new X509Bundle('example.org', [ca1])));
    assert.ok(!b.equals(b2));
    assert.ok(!b.equals(new X509Bundle(OTHER, [ca1])));
    assert.ok(!b2.equals(new X509Bundle(TD, [ca2, ca1])), 'order matters');
    assert.equal(X509Bundle.empty(TD).authorities.length, 0);
  });

  test('toPem and toDer round-trip', () => {
    const b = new X509Bundle(TD, [ca1, ca2]);
    assert.ok(X509Bundle.parse(TD, b.toPem()).equals(b));
    assert.ok(X509Bundle.parse(TD, b.toDer()).equals(b));
    assert.deepEqual(b.toDer(), Buffer.concat([ca1.raw, ca2.raw]));
  });

  test('is immutable', () => {
    const b = new X509Bundle(TD, [ca1]);
    assert.ok(Object.isFrozen(b));
    assert.ok(Object.isFrozen(b.authorities));
    assert.throws(() => (b.authorities as X509Certificate[]).push(ca2), TypeError);
  });

  test('as a bundle source: only its own trust domain', () => {
    const b = new X509Bundle(TD, [ca1]);
    assert.equal(b.getX509BundleForTrustDomain(TrustDomain.parse('example.org')), b);
    throwsBundle(() => b.getX509BundleForTrustDomain(OTHER), 'BUNDLE_NOT_FOUND');
  });

  test('invalid trust domain throws', () => {
    assert.throws(() => new X509Bundle('Example.org', [ca1]), { code: 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR' });
  });
});

describe('JwtBundle', () => {
  test('parse: a JWKS with EC, RSA and OKP keys', () => {
    const jwks = { keys: [jwk(ecKey, { kid: 'ec' }), jwk(rsaKey, { kid: 'rsa' }), jwk(edKey, { kid: 'ed' })] };
    for (const input of [jwks, JSON.stringify(jwks), Buffer.from(JSON.stringify(jwks))]) {
      const b = JwtBundle.parse('example.org', input);
      assert.equal(b.trustDomain.name, 'example.org');
      assert.deepEqual([...b.authorities.keys()], ['ec', 'rsa', 'ed']);
      assert.ok(b.findAuthority('ec')?.publicKey.equals(ecKey));
      assert.ok(b.findAuthority('rsa')?.publicKey.equals(rsaKey));
      assert.ok(b.findAuthority('ed')?.publicKey.equals(edKey));
      assert.equal(b.findAuthority('nope'), undefined);
    }
  });

  test('parse: missing "keys" is an empty bundle, an empty list too', () => {
    assert.equal(JwtBundle.parse(TD, '{}').authorities.size, 0);
    assert.equal(JwtBundle.parse(TD, '{"keys":[]}').authorities.size, 0);
  });

  test('parse: invalid JWKS documents are BUNDLE_INVALID', () => {
    const cases: Array<[string, unknown]> = [
      ['not JSON', '{"keys": ['],
      ['not JSON bytes', Buffer.from('garbage')],
      ['JSON array', '[]'],
      ['JSON string', '"keys"'],
      ['JSON null', 'null'],
      ['keys not an array (object)', { keys: { a: jwk(ecKey, { kid: 'a' }) } }],
      ['keys not an array (string)', '{"keys":"x"}'],
      ['keys null', '{"keys":null}'],
      ['key not an object', { keys: ['x'] }],
      ['key null', { keys: [null] }],
      ['missing kid', { keys: [jwk(ecKey)] }],
      ['empty kid', { keys: [jwk(ecKey, { kid: '' })] }],
      ['numeric kid', { keys: [jwk(ecKey, { kid: 7 })] }],
      ['private key (d present)', { keys: [jwk(ecPrivate, { kid: 'priv' })] }],
      ['EC key without y', { keys: [{ ...jwk(ecKey, { kid: 'a' }), y: undefined }] }],
      ['EC key with a bad curve', { keys: [{ ...jwk(ecKey, { kid: 'a' }), crv: 'P-999' }] }],
      ['RSA key without n', { keys: [{ ...jwk(rsaKey, { kid: 'a' }), n: undefined }] }],
      ['one bad key among good ones', { keys: [jwk(ecKey, { kid: 'a' }), jwk(ecKey2)] }],
    ];
    for (const [label, input] of cases) {
      throwsBundle(() => JwtBundle.parse(TD, input as string), 'BUNDLE_INVALID', label);
    }
  });

  test('private key material never survives into the bundle (d: present is refused, even as a string)', () => {
    const priv = jwk(ecPrivate, { kid: 'k' }) as Record<string, unknown>;
    assert.equal(typeof priv.d, 'string');
    throwsBundle(() => JwtBundle.parse(TD, { keys: [priv] }), 'BUNDLE_INVALID');
    throwsBundle(() => JwtBundle.parse(TD, JSON.stringify({ keys: [priv] })), 'BUNDLE_INVALID');
  });

  test('toJwks / marshal round-trip and carry no private material', () => {
    const b = JwtBundle.fromKeys(TD, { a: ecKey, b: rsaKey });
    const doc = JSON.parse(b.marshal());
    assert.deepEqual(
      doc.keys.map((k: { kid: string }) => k.kid),
      ['a', 'b'],
    );
    for (const k of doc.keys) assert.equal(k.d, undefined);
    const back = JwtBundle.parse(TD, b.marshal());
    assert.ok(back.findAuthority('a')?.publicKey.equals(ecKey));
    assert.ok(back.findAuthority('b')?.publicKey.equals(rsaKey));
    assert.deepEqual(back.toJwks(), b.toJwks());
  });

  test('withAuthority adds or replaces a key and leaves the original alone', () => {
    const b = JwtBundle.fromKeys(TD, { a: ecKey });
    const b2 = b.withAuthority('b', ecKey2);
    assert.deepEqual([...b2.authorities.keys()], ['a', 'b']);
    assert.deepEqual([...b.authorities.keys()], ['a']);
    const b3 = b2.withAuthority('a', rsaKey);
    assert.ok(b3.findAuthority('a')?.publicKey.equals(rsaKey));
    assert.ok(b2.findAuthority('a')?.publicKey.equals(ecKey));
  });

  test('empty key ID is refused', () => {
    throwsBundle(() => JwtBundle.fromKeys(TD, { '': ecKey }), 'BUNDLE_INVALID');
    throwsBundle(() => JwtBundle.fromKeys(TD, {}).withAuthority('', ecKey), 'BUNDLE_INVALID');
  });

  test('is frozen; as a bundle source only serves its own trust domain', () => {
    const b = JwtBundle.fromKeys(TD, { a: ecKey });
    assert.ok(Object.isFrozen(b));
    assert.ok(Object.isFrozen(b.findAuthority('a')));
    assert.equal(b.getJwtBundleForTrustDomain(TrustDomain.parse('example.org')), b);
    throwsBundle(() => b.getJwtBundleForTrustDomain(OTHER), 'BUNDLE_NOT_FOUND');
  });
});

describe('SpiffeBundle', () => {
  function doc(keys: unknown[], extra: Record<string, unknown> = {}): string {
    return JSON.stringify({ keys, ...extra });
  }
  const x509Entry = (c: X509Certificate, extra: Record<string, unknown> = {}) => ({
    ...jwk(c.publicKey),
    use: 'x509-svid',
    x5c: [c.raw.toString('base64')],
    ...extra,
  });

  test('parse: x509-svid and jwt-svid entries, spiffe_sequence and spiffe_refresh_hint', () => {
    const input = doc(
      [
        x509Entry(ca1),
        jwk(ecKey, { kid: 'k1', use: 'jwt-svid' }),
        x509Entry(ca2),
        jwk(rsaKey, { kid: 'k2', use: 'jwt-svid' }),
      ],
      { spiffe_sequence: 42, spiffe_refresh_hint: 300 },
    );
    const b = SpiffeBundle.parse('example.org', input);
    assert.equal(b.trustDomain.name, 'example.org');
    assert.deepEqual(fingerprints(b.x509Authorities), fingerprints([ca1, ca2]));
    assert.deepEqual([...b.jwtAuthorities.keys()], ['k1', 'k2']);
    assert.ok(b.jwtAuthorities.get('k1')?.publicKey.equals(ecKey));
    assert.equal(b.sequenceNumber, 42n);
    assert.equal(b.refreshHintSeconds, 300);
    assert.ok(Object.isFrozen(b));
    // Derived bundles.
    assert.ok(b.x509Bundle().equals(new X509Bundle(TD, [ca1, ca2])));
    assert.deepEqual([...b.jwtBundle().authorities.keys()], ['k1', 'k2']);
    assert.ok(b.getX509BundleForTrustDomain(TD).equals(new X509Bundle(TD, [ca1, ca2])));
    assert.ok(b.getJwtBundleForTrustDomain(TD).findAuthority('k2')?.publicKey.equals(rsaKey));
    throwsBundle(() => b.getX509BundleForTrustDomain(OTHER), 'BUNDLE_NOT_FOUND');
    throwsBundle(() => b.getJwtBundleForTrustDomain(OTHER), 'BUNDLE_NOT_FOUND');
  });

  test('parse: from bytes and from an object', () => {
    const input = doc([x509Entry(ca1)], { spiffe_sequence: 0 });
    for (const v of [Buffer.from(input), JSON.parse(input)]) {
      const b = SpiffeBundle.parse(TD, v);
      assert.deepEqual(fingerprints(b.x509Authorities), fingerprints([ca1]));
      assert.equal(b.sequenceNumber, 0n);
      assert.equal(b.refreshHintSeconds, undefined);
    }
  });

  test('parse: sequence and refresh hint are optional', () => {
    const b = SpiffeBundle.parse(TD, doc([]));
    assert.equal(b.sequenceNumber, undefined);
    assert.equal(b.refreshHintSeconds, undefined);
    assert.equal(b.x509Authorities.length, 0);
    assert.equal(b.jwtAuthorities.size, 0);
    assert.deepEqual(JSON.parse(b.marshal()), { keys: [] });
  });

  test('marshal / parse round-trip', () => {
    const original = new SpiffeBundle({
      trustDomain: TD,
      x509Authorities: [ca1, ca3],
      jwtAuthorities: JwtBundle.fromKeys(TD, { k1: ecKey, k2: rsaKey }).authorities.values(),
      sequenceNumber: 7,
      refreshHintSeconds: 60,
    });
    const json = JSON.parse(original.marshal());
    assert.equal(json.spiffe_sequence, 7);
    assert.equal(json.spiffe_refresh_hint, 60);
    assert.deepEqual(
      json.keys.map((k: { use: string }) => k.use),
      ['x509-svid', 'x509-svid', 'jwt-svid', 'jwt-svid'],
    );
    assert.deepEqual(json.keys[0].x5c, [ca1.raw.toString('base64')]);
    assert.equal(json.keys[2].kid, 'k1');
    for (const k of json.keys) assert.equal(k.d, undefined);

    const back = SpiffeBundle.parse(TD, original.marshal());
    assert.deepEqual(fingerprints(back.x509Authorities), fingerprints([ca1, ca3]));
    assert.deepEqual([...back.jwtAuthorities.keys()], ['k1', 'k2']);
    assert.ok(back.jwtAuthorities.get('k2')?.publicKey.equals(rsaKey));
    assert.equal(back.sequenceNumber, 7n);
    assert.equal(back.refreshHintSeconds, 60);
    assert.equal(back.marshal(), original.marshal());
  });

  test('entries with an unknown or missing "use" are ignored', () => {
    const b = SpiffeBundle.parse(
      TD,
      doc([
        jwk(ecKey, { kid: 'enc', use: 'enc' }),
        jwk(ecKey2, { kid: 'nouse' }),
        { ...x509Entry(ca2), use: 'sig' },
        { kty: 'oct', k: 'c2VjcmV0', use: 'something-else' },
        x509Entry(ca1),
        jwk(rsaKey, { kid: 'jwt', use: 'jwt-svid' }),
      ]),
    );
    assert.deepEqual(fingerprints(b.x509Authorities), fingerprints([ca1]));
    assert.deepEqual([...b.jwtAuthorities.keys()], ['jwt']);
  });

  test('x509-svid entries: no certificate means the entry is ignored, several mean the first is used', () => {
    // X509-SVID §6.2 (go-spiffe refuses all three documents).
    const b64 = (c: X509Certificate) => c.raw.toString('base64');
    for (const [label, x5c] of [
      ['x5c: []', []],
      ['no x5c', undefined],
    ] as const) {
      const b = SpiffeBundle.parse(TD, doc([x509Entry(ca1, { x5c }), x509Entry(ca2)]));
      assert.deepEqual(fingerprints(b.x509Authorities), fingerprints([ca2]), label);
    }
    const several = SpiffeBundle.parse(TD, doc([x509Entry(ca1, { x5c: [b64(ca1), b64(ca2), 'not base64!'] })]));
    assert.deepEqual(fingerprints(several.x509Authorities), fingerprints([ca1]));
  });

  test('x509-svid entries whose x5c is malformed refuse the bundle', () => {
    throwsBundle(
      () => SpiffeBundle.parse(TD, doc([x509Entry(ca1, { x5c: ca1.raw.toString('base64') })])),
      'BUNDLE_INVALID',
      'x5c as a string',
    );
    throwsBundle(() => SpiffeBundle.parse(TD, doc([x509Entry(ca1, { x5c: [42] })])), 'BUNDLE_INVALID', 'x5c: [42]');
    throwsBundle(
      () => SpiffeBundle.parse(TD, doc([x509Entry(ca1, { x5c: ['bm90IGEgY2VydA=='] })])),
      'BUNDLE_INVALID',
      'not a certificate',
    );
  });

  test('jwt-svid entries follow the JWT bundle rules', () => {
    throwsBundle(() => SpiffeBundle.parse(TD, doc([jwk(ecKey, { use: 'jwt-svid' })])), 'BUNDLE_INVALID', 'no kid');
    throwsBundle(
      () => SpiffeBundle.parse(TD, doc([jwk(ecPrivate, { kid: 'p', use: 'jwt-svid' })])),
      'BUNDLE_INVALID',
      'private key',
    );
  });

  test('invalid documents are BUNDLE_INVALID', () => {
    const cases: Array<[string, unknown]> = [
      ['missing keys', '{}'],
      ['keys null', '{"keys":null}'],
      ['keys not an array', '{"keys":{}}'],
      ['not JSON', 'nope'],
      ['array', '[]'],
      ['key not an object', '{"keys":[1]}'],
      ['negative sequence', '{"keys":[],"spiffe_sequence":-1}'],
      ['fractional sequence', '{"keys":[],"spiffe_sequence":1.5}'],
      ['string sequence', '{"keys":[],"spiffe_sequence":"1"}'],
      ['null sequence', '{"keys":[],"spiffe_sequence":null}'],
      ['sequence above 2^64 - 1', '{"keys":[],"spiffe_sequence":18446744073709551616}'],
      ['sequence in exponent form', '{"keys":[],"spiffe_sequence":1e3}'],
      ['sequence with a fraction part', '{"keys":[],"spiffe_sequence":1.0}'],
      ['negative zero sequence', '{"keys":[],"spiffe_sequence":-0}'],
      ['negative refresh hint', '{"keys":[],"spiffe_refresh_hint":-5}'],
      ['string refresh hint', '{"keys":[],"spiffe_refresh_hint":"60"}'],
    ];
    for (const [label, input] of cases)
      throwsBundle(() => SpiffeBundle.parse(TD, input as string), 'BUNDLE_INVALID', label);
  });

  test('fromBundles', () => {
    const x = new X509Bundle(TD, [ca1]);
    const j = JwtBundle.fromKeys(TD, { k: ecKey });
    const b = SpiffeBundle.fromBundles(x, j);
    assert.deepEqual(fingerprints(b.x509Authorities), fingerprints([ca1]));
    assert.deepEqual([...b.jwtAuthorities.keys()], ['k']);
    assert.equal(SpiffeBundle.fromBundles(undefined, j).trustDomain.name, 'example.org');
    throwsBundle(() => SpiffeBundle.fromBundles(), 'BUNDLE_INVALID');
    throwsBundle(
      () => SpiffeBundle.fromBundles(x, JwtBundle.fromKeys(OTHER, { k: ecKey })),
      'BUNDLE_TRUST_DOMAIN_MISMATCH',
    );
  });
});

describe('bundle sets', () => {
  test('X509BundleSet is keyed by trust domain', () => {
    const a = new X509Bundle(TD, [ca1]);
    const o = new X509Bundle(OTHER, [ca3]);
    const set = new X509BundleSet([o, a]);
    assert.equal(set.size, 2);
    assert.equal(set.get('example.org'), a);
    assert.equal(set.get(TrustDomain.parse('other.org')), o);
    assert.equal(set.get('third.org'), undefined);
    assert.ok(set.has(TD));
    assert.ok(!set.has('third.org'));
    assert.equal(set.getX509BundleForTrustDomain(TD), a);
    assert.equal(set.getX509BundleForTrustDomain(OTHER), o);
    throwsBundle(() => set.getX509BundleForTrustDomain(TrustDomain.parse('third.org')), 'BUNDLE_NOT_FOUND');
    assert.deepEqual(
      set.trustDomains().map((t) => t.name),
      ['example.org', 'other.org'],
    );
    assert.deepEqual(fingerprints(set.allAuthorities()), fingerprints([ca1, ca3]));
    assert.throws(() => set.get('Example.org'), { code: 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR' });
  });

  test('X509BundleSet: with replaces the bundle of a trust domain, without removes it, both copy', () => {
    const set = new X509BundleSet([new X509Bundle(TD, [ca1])]);
    const replaced = set.with(new X509Bundle(TD, [ca2]));
    assert.ok(replaced instanceof X509BundleSet);
    assert.equal(replaced.size, 1);
    assert.deepEqual(fingerprints(replaced.getX509BundleForTrustDomain(TD).authorities), fingerprints([ca2]));
    assert.deepEqual(fingerprints(set.getX509BundleForTrustDomain(TD).authorities), fingerprints([ca1]));
    const added = set.with(new X509Bundle(OTHER, [ca3]));
    assert.equal(added.size, 2);
    assert.equal(set.size, 1);
    const removed = added.without('example.org');
    assert.ok(removed instanceof X509BundleSet);
    assert.deepEqual(removed.trustDomains().map(String), ['other.org']);
    throwsBundle(() => removed.getX509BundleForTrustDomain(TD), 'BUNDLE_NOT_FOUND');
    assert.equal(added.size, 2);
  });

  test('X509BundleSet equality', () => {
    const s1 = new X509BundleSet([new X509Bundle(TD, [ca1]), new X509Bundle(OTHER, [ca3])]);
    const s2 = new X509BundleSet([new X509Bundle(OTHER, [ca3]), new X509Bundle(TD, [ca1])]);
    assert.ok(s1.equals(s2));
    assert.ok(!s1.equals(new X509BundleSet([new X509Bundle(TD, [ca1])])));
    assert.ok(!s1.equals(new X509BundleSet([new X509Bundle(TD, [ca2]), new X509Bundle(OTHER, [ca3])])));
  });

  test('JwtBundleSet is keyed by trust domain', () => {
    const a = JwtBundle.fromKeys(TD, { a: ecKey });
    const o = JwtBundle.fromKeys(OTHER, { a: rsaKey });
    const set = new JwtBundleSet([a, o]);
    assert.equal(set.getJwtBundleForTrustDomain(TD), a);
    // The same key ID in two trust domains stays separate.
    assert.ok(set.getJwtBundleForTrustDomain(TD).findAuthority('a')?.publicKey.equals(ecKey));
    assert.ok(set.getJwtBundleForTrustDomain(OTHER).findAuthority('a')?.publicKey.equals(rsaKey));
    throwsBundle(() => set.getJwtBundleForTrustDomain(TrustDomain.parse('third.org')), 'BUNDLE_NOT_FOUND');
    throwsBundle(() => new JwtBundleSet().getJwtBundleForTrustDomain(TD), 'BUNDLE_NOT_FOUND');
    const without = set.without(OTHER);
    assert.ok(without instanceof JwtBundleSet);
    throwsBundle(() => without.getJwtBundleForTrustDomain(OTHER), 'BUNDLE_NOT_FOUND');
  });

  test('SpiffeBundleSet serves both kinds per trust domain', () => {
    const a = new SpiffeBundle({
      trustDomain: TD,
      x509Authorities: [ca1],
      jwtAuthorities: JwtBundle.fromKeys(TD, { k: ecKey }).authorities.values(),
    });
    const o = new SpiffeBundle({ trustDomain: OTHER, x509Authorities: [ca3] });
    const set = new SpiffeBundleSet([a, o]);
    assert.deepEqual(fingerprints(set.getX509BundleForTrustDomain(TD).authorities), fingerprints([ca1]));
    assert.deepEqual(fingerprints(set.getX509BundleForTrustDomain(OTHER).authorities), fingerprints([ca3]));
    assert.ok(set.getJwtBundleForTrustDomain(TD).findAuthority('k')?.publicKey.equals(ecKey));
    assert.equal(set.getJwtBundleForTrustDomain(OTHER).authorities.size, 0);
    const third = TrustDomain.parse('third.org');
    throwsBundle(() => set.getX509BundleForTrustDomain(third), 'BUNDLE_NOT_FOUND');
    throwsBundle(() => set.getJwtBundleForTrustDomain(third), 'BUNDLE_NOT_FOUND');
    assert.deepEqual(
      set.bundles().map((b) => b.trustDomain.name),
      ['example.org', 'other.org'],
    );
  });
});

test('JWT authorities of a bundle cannot be changed after construction', () => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const bundle = JwtBundle.fromKeys('example.org', { k1: publicKey });
  const map = bundle.authorities as Map<string, unknown>;
  assert.throws(() => map.set('k2', {}), TypeError);
  assert.throws(() => map.delete('k1'), TypeError);
  assert.throws(() => map.clear(), TypeError);
  assert.equal(bundle.authorities.size, 1);
});

describe('issue #21: bundle parsing', () => {
  const x509Entry = (c: X509Certificate, extra: Record<string, unknown> = {}) => ({
    ...jwk(c.publicKey),
    use: 'x509-svid',
    x5c: [c.raw.toString('base64')],
    ...extra,
  });

  test('spiffe_sequence at or above 2^53 is read and written exactly (unsigned 64-bit)', () => {
    for (const digits of ['9007199254740992', '9007199254740993', '12345678901234567891', '18446744073709551615']) {
      const text = `{"keys":[],"spiffe_sequence":${digits},"spiffe_refresh_hint":60}`;
      const b = SpiffeBundle.parse(TD, text);
      assert.equal(b.sequenceNumber, BigInt(digits), digits);
      assert.equal(SpiffeBundle.parse(TD, Buffer.from(text)).sequenceNumber, BigInt(digits), `${digits} (bytes)`);
      const out = b.marshal();
      assert.ok(out.includes(`"spiffe_sequence":${digits}`), out);
      assert.equal(SpiffeBundle.parse(TD, out).sequenceNumber, BigInt(digits));
      assert.equal(SpiffeBundle.parse(TD, out).refreshHintSeconds, 60);
    }
    // Built by hand from a bigint, written exactly.
    const built = new SpiffeBundle({ trustDomain: TD, sequenceNumber: 2n ** 64n - 1n });
    assert.equal(built.marshal(), '{"keys":[],"spiffe_sequence":18446744073709551615}');
    // A nested member of the same name does not confuse the reader; the top-level one is used.
    const nested = `{"keys":[{"kty":"oct","use":"x","spiffe_sequence":5}],"spiffe_sequence":9007199254740993}`;
    assert.equal(SpiffeBundle.parse(TD, nested).sequenceNumber, 9007199254740993n);
    // Small values stay plain JSON numbers.
    assert.equal(new SpiffeBundle({ trustDomain: TD, sequenceNumber: 3n }).toJSON().spiffe_sequence, 3);
  });

  test('a SPIFFE bundle document repeating a member name with another value is refused', () => {
    const doc = JSON.stringify({ keys: [], spiffe_sequence: 1 });
    const repeated = `${doc.slice(0, -1)},"spiffe_sequence":2}`;
    assert.throws(
      () => SpiffeBundle.parse('example.org', repeated),
      (e: BundleError) => e instanceof BundleError && e.code === 'BUNDLE_INVALID',
    );
    assert.equal(SpiffeBundle.parse('example.org', doc).sequenceNumber, 1n);
  });

  test('spiffe_sequence: negative, non-integer or above 2^64 - 1 is refused', () => {
    for (const raw of ['-1', '1.5', '1e3', '18446744073709551616', '99999999999999999999999']) {
      throwsBundle(() => SpiffeBundle.parse(TD, `{"keys":[],"spiffe_sequence":${raw}}`), 'BUNDLE_INVALID', raw);
    }
    throwsBundle(() => new SpiffeBundle({ trustDomain: TD, sequenceNumber: 2n ** 64n }), 'BUNDLE_INVALID', '2^64');
    throwsBundle(() => new SpiffeBundle({ trustDomain: TD, sequenceNumber: -1n }), 'BUNDLE_INVALID', '-1n');
    throwsBundle(
      () => new SpiffeBundle({ trustDomain: TD, sequenceNumber: 2 ** 60 }),
      'BUNDLE_INVALID',
      'unsafe number',
    );
  });

  test('x5c that is not strict base64 of exactly one DER certificate refuses the bundle', () => {
    const b64 = ca1.raw.toString('base64');
    const cases: Array<[string, string]> = [
      ['base64url', ca1.raw.toString('base64url')],
      ['with a newline', `${b64.slice(0, 64)}\n${b64.slice(64)}`],
      ['with a space', `${b64.slice(0, 64)} ${b64.slice(64)}`],
      ['without padding', b64.replace(/=+$/, '')],
      ['two certificates in one entry', Buffer.concat([ca1.raw, ca2.raw]).toString('base64')],
      ['trailing bytes', Buffer.concat([ca1.raw, Buffer.from([0])]).toString('base64')],
    ];
    assert.ok(b64.includes('+') || b64.includes('/') || b64.endsWith('='), 'test certificate exercises base64');
    for (const [label, x5c] of cases) {
      if (x5c === b64) continue; // e.g. a certificate whose base64 needs no padding
      throwsBundle(
        () => SpiffeBundle.parse(TD, JSON.stringify({ keys: [x509Entry(ca1, { x5c: [x5c] })] })),
        'BUNDLE_INVALID',
        label,
      );
    }
  });

  test('x509-svid entries whose JWK key members differ from the certificate key are not used', () => {
    const cases: Array<[string, Record<string, unknown>]> = [
      ['another key', x509Entry(ca1, { ...jwk(ecKey2) })],
      ['another kty', x509Entry(ca1, { ...jwk(rsaKey) })],
      ['other x', x509Entry(ca1, { x: jwk(ca2.publicKey).x })],
      ['other crv', x509Entry(ca1, { crv: 'P-384' })],
      ['no kty', x509Entry(ca1, { kty: undefined })],
    ];
    for (const [label, entry] of cases) {
      const b = SpiffeBundle.parse(TD, JSON.stringify({ keys: [entry, x509Entry(ca2)] }));
      assert.deepEqual(fingerprints(b.x509Authorities), fingerprints([ca2]), label);
    }
    const ok = SpiffeBundle.parse(TD, JSON.stringify({ keys: [x509Entry(ca1), x509Entry(ca3)] }));
    assert.deepEqual(fingerprints(ok.x509Authorities), fingerprints([ca1, ca3]));
  });

  test('one unusable JWT key (oct, unknown or missing kty) is ignored, not the whole bundle', () => {
    const good = jwk(ecKey, { kid: 'good', use: 'jwt-svid' });
    const unusable = [
      { kty: 'oct', k: 'c2VjcmV0', kid: 'hmac', use: 'jwt-svid' },
      { ...jwk(ecKey, { kid: 'xyz', use: 'jwt-svid' }), kty: 'XYZ' },
      { ...jwk(ecKey, { kid: 'none', use: 'jwt-svid' }), kty: undefined },
    ];
    for (const bad of unusable) {
      const sb = SpiffeBundle.parse(TD, JSON.stringify({ keys: [bad, x509Entry(ca1), good] }));
      assert.deepEqual([...sb.jwtAuthorities.keys()], ['good'], String(bad.kty));
      assert.deepEqual(fingerprints(sb.x509Authorities), fingerprints([ca1]));
      const jb = JwtBundle.parse(TD, JSON.stringify({ keys: [bad, good] }));
      assert.deepEqual([...jb.authorities.keys()], ['good'], String(bad.kty));
    }
    // Private key material is still refused, whatever the kty.
    throwsBundle(
      () => JwtBundle.parse(TD, JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0', d: 'eA', kid: 'h' }] })),
      'BUNDLE_INVALID',
    );
  });

  test('a jwt-svid key whose x5c / x5t members are malformed or name another key is ignored (RFC 7517 §4.7-4.9)', () => {
    const thumb = (c: X509Certificate, h: string) => createHash(h).update(c.raw).digest('base64url');
    const withCert = (extra: Record<string, unknown>) => jwk(ca1.publicKey, { kid: 'k', use: 'jwt-svid', ...extra });
    const good = jwk(ecKey, { kid: 'good', use: 'jwt-svid' });
    const ok = withCert({
      x5c: [ca1.raw.toString('base64')],
      x5t: thumb(ca1, 'sha1'),
      'x5t#S256': thumb(ca1, 'sha256'),
    });
    const kept = SpiffeBundle.parse(TD, JSON.stringify({ keys: [ok, good] }));
    assert.deepEqual([...kept.jwtAuthorities.keys()].sort(), ['good', 'k']);
    for (const [label, extra] of [
      ['x5c of another key', { x5c: [ca2.raw.toString('base64')] }],
      ['x5c garbage', { x5c: ['not base64!'] }],
      ['x5c empty', { x5c: [] }],
      ['x5c not an array', { x5c: ca1.raw.toString('base64') }],
      ['x5t malformed', { x5t: 'abc' }],
      ['x5t of another certificate', { x5c: [ca1.raw.toString('base64')], x5t: thumb(ca2, 'sha1') }],
      ['x5t#S256 of another certificate', { x5c: [ca1.raw.toString('base64')], 'x5t#S256': thumb(ca2, 'sha256') }],
      ['x5t#S256 with the SHA-1 length', { 'x5t#S256': thumb(ca1, 'sha1') }],
    ] as const) {
      const sb = SpiffeBundle.parse(TD, JSON.stringify({ keys: [withCert(extra), good] }));
      assert.deepEqual([...sb.jwtAuthorities.keys()], ['good'], label);
      const jb = JwtBundle.parse(TD, JSON.stringify({ keys: [withCert(extra), good] }));
      assert.deepEqual([...jb.authorities.keys()], ['good'], label);
    }
  });

  test('an empty X.509 bundle ("trust nothing") is accepted', () => {
    assert.equal(X509Bundle.parse(TD, new Uint8Array(0)).authorities.length, 0);
    assert.equal(X509Bundle.parse(TD, Buffer.alloc(0)).authorities.length, 0);
    assert.equal(X509Bundle.parse(TD, []).authorities.length, 0);
    assert.equal(SpiffeBundle.parse(TD, '{"keys":[]}').x509Authorities.length, 0);
  });
});
