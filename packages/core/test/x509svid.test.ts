// X.509-SVID standard: parsing an SVID (chain + key) and verifying a peer's chain against bundles.
// @peculiar/x509 (used here to craft RSASSA-PSS chains) needs the reflect polyfill loaded first.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { webcrypto, X509Certificate } from 'node:crypto';
import { before, describe, test } from 'node:test';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  Certificate,
  GeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  id_ce_nameConstraints,
  NameConstraints,
} from '@peculiar/asn1-x509';
import * as px509 from '@peculiar/x509';
import {
  idFromCertificate,
  JwtBundle,
  SpiffeBundle,
  SpiffeBundleSet,
  type SpiffeErrorCode,
  SpiffeIdError,
  TrustDomain,
  tryIdFromCertificate,
  verifyX509Svid,
  X509Bundle,
  X509BundleSet,
  X509Svid,
  X509SvidError,
} from '@spiffe-ts/core';
import {
  type Authority,
  createAuthority,
  type IssueX509Options,
  issueX509SvidWith,
  KeyUsage,
} from '@spiffe-ts/dev-server';

const ID = 'spiffe://example.org/workload';
const OTHER_ID = 'spiffe://other.org/workload';
const HOUR = 3600_000;
const DAY = 24 * HOUR;

let rootA: Authority; // example.org
let rootA2: Authority; // example.org, a second (rotated) root
let interA: Authority; // example.org intermediate under rootA
let rootB: Authority; // other.org
let interB: Authority; // other.org intermediate under rootB
let stranger: Authority; // trusted by nobody
let rootPathLen0: Authority; // pathLenConstraint 0
let interUnderPathLen0: Authority;
let interPathLen0: Authority; // under rootA, pathLenConstraint 0
let interBelowPathLen0: Authority; // under interPathLen0
let interExpired: Authority;
let interNotYetValid: Authority;
let interNoKeyCertSign: Authority;
let interNoKeyUsage: Authority;
let interNotCa: Authority;
let rootExpired: Authority;
let chainI1: Authority; // rootA -> chainI1 -> chainI2
let chainI2: Authority;
let rsaSvid: X509Svid;
let bundles: X509BundleSet; // example.org (rootA, rootA2) and other.org (rootB)

before(async () => {
  const past = new Date(Date.now() - 2 * DAY);
  [rootA, rootA2, rootB, stranger, rootPathLen0, rootExpired] = await Promise.all([
    createAuthority({ uri: 'spiffe://example.org' }),
    createAuthority({ uri: 'spiffe://example.org' }),
    createAuthority({ uri: 'spiffe://other.org' }),
    createAuthority({ uri: 'spiffe://example.org' }),
    createAuthority({ pathLength: 0 }),
    createAuthority({ notBefore: past, notAfter: new Date(past.getTime() + DAY) }),
  ]);
  [
    interA,
    interB,
    interUnderPathLen0,
    interPathLen0,
    interExpired,
    interNotYetValid,
    interNoKeyCertSign,
    interNoKeyUsage,
    interNotCa,
    chainI1,
    rsaSvid,
  ] = await Promise.all([
    createAuthority({ parent: rootA, uri: 'spiffe://example.org' }),
    createAuthority({ parent: rootB }),
    createAuthority({ parent: rootPathLen0 }),
    createAuthority({ parent: rootA, pathLength: 0 }),
    createAuthority({ parent: rootA, notBefore: past, notAfter: new Date(past.getTime() + DAY) }),
    createAuthority({ parent: rootA, notBefore: new Date(Date.now() + DAY), ttlSeconds: 86400 }),
    createAuthority({ parent: rootA, keyUsage: KeyUsage.digitalSignature | KeyUsage.cRLSign }),
    createAuthority({ parent: rootA, keyUsage: null }),
    createAuthority({ parent: rootA, isCa: false }),
    createAuthority({ parent: rootA }),
    issueX509SvidWith(rootA, ID, { keyType: 'rsa-2048' }),
  ]);
  [interBelowPathLen0, chainI2] = await Promise.all([
    createAuthority({ parent: interPathLen0 }),
    createAuthority({ parent: chainI1 }),
  ]);
  bundles = new X509BundleSet([
    new X509Bundle('example.org', [rootA.certificate, rootA2.certificate, rootPathLen0.certificate]),
    new X509Bundle('other.org', [rootB.certificate]),
  ]);
});

function issue(signer: Authority, options: IssueX509Options = {}, id = ID): Promise<X509Svid> {
  return issueX509SvidWith(signer, id, options);
}

function throwsSvid(fn: () => unknown, code: SpiffeErrorCode, label?: string): void {
  assert.throws(
    fn,
    (err: unknown) => {
      assert.ok(err instanceof X509SvidError, `${label ?? ''}: expected X509SvidError, got ${String(err)}`);
      assert.equal(err.code, code, `${label ?? ''}: ${err.message}`);
      return true;
    },
    label,
  );
}

/** Parses the SVID's own chain and key, as a workload would load them. */
function parseSvid(svid: X509Svid): X509Svid {
  return X509Svid.parse([...svid.certificates], svid.privateKey);
}

/** Verifies the SVID's chain against `bundles`. */
function verify(svid: X509Svid, source = bundles, now?: Date) {
  return verifyX509Svid([...svid.certificates], source, now ? { now } : {});
}

/** The certificate with the RSASSA-PSS parameters of both signature algorithm fields removed (DER re-encoded). */
function withoutPssParameters(der: Buffer): Buffer {
  const cert = AsnConvert.parse(der, Certificate);
  cert.signatureAlgorithm.parameters = undefined;
  cert.tbsCertificate.signature.parameters = undefined;
  return Buffer.from(AsnConvert.serialize(cert));
}

const fps = (certs: readonly X509Certificate[]) => certs.map((c) => c.fingerprint256);

/** A copy of the certificate with the tag of the GeneralName holding `uri` replaced (breaks the SAN extension). */
function withBrokenSan(cert: X509Certificate, uri: string): X509Certificate {
  const raw = Buffer.from(cert.raw);
  const at = raw.indexOf(Buffer.from(uri));
  assert.ok(at > 2 && raw[at - 2] === 0x86, 'URI GeneralName found');
  raw[at - 2] = 0x89; // [9] is not a GeneralName alternative
  return new X509Certificate(raw);
}

describe('X509Svid.parse', () => {
  test('PEM chain and PKCS#8 PEM key (EC)', async () => {
    const svid = await issue(rootA);
    const pem = svid.toPem();
    assert.match(pem.privateKey, /^-----BEGIN PRIVATE KEY-----/);
    const parsed = X509Svid.parse(pem.certificates, pem.privateKey);
    assert.equal(parsed.id.toString(), ID);
    assert.deepEqual(fps(parsed.certificates), fps(svid.certificates));
    assert.equal(parsed.leaf.fingerprint256, svid.leaf.fingerprint256);
    assert.equal(parsed.privateKey.asymmetricKeyType, 'ec');
    assert.equal(parsed.hint, '');
    assert.equal(parsed.expiresAt.getTime(), new Date(svid.leaf.validTo).getTime());
    assert.equal(parsed.notBefore.getTime(), new Date(svid.leaf.validFrom).getTime());
    // And as bytes.
    const fromBytes = X509Svid.parse(Buffer.from(pem.certificates), Buffer.from(pem.privateKey), { hint: 'internal' });
    assert.equal(fromBytes.id.toString(), ID);
    assert.equal(fromBytes.hint, 'internal');
  });

  test('DER chain (concatenated) and PKCS#8 DER key, with an intermediate', async () => {
    const svid = await issue(interA, { chain: [interA.certificate] });
    const der = Buffer.concat(svid.certificates.map((c) => c.raw));
    const key = svid.privateKey.export({ format: 'der', type: 'pkcs8' });
    const parsed = X509Svid.parse(der, key);
    assert.equal(parsed.id.toString(), ID);
    assert.deepEqual(fps(parsed.certificates), fps([svid.leaf, interA.certificate]));
  });

  test('EC key as SEC1 PEM', async () => {
    const svid = await issue(rootA);
    const sec1 = svid.privateKey.export({ format: 'pem', type: 'sec1' }).toString();
    assert.match(sec1, /BEGIN EC PRIVATE KEY/);
    assert.equal(X509Svid.parse(svid.toPem().certificates, sec1).id.toString(), ID);
  });

  test('RSA key: PKCS#8 PEM, PKCS#8 DER and PKCS#1 PEM', () => {
    assert.equal(rsaSvid.privateKey.asymmetricKeyType, 'rsa');
    const certs = rsaSvid.toPem().certificates;
    const keys = [
      rsaSvid.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      rsaSvid.privateKey.export({ format: 'der', type: 'pkcs8' }),
      rsaSvid.privateKey.export({ format: 'pem', type: 'pkcs1' }).toString(),
    ];
    for (const key of keys) {
      const parsed = X509Svid.parse(certs, key);
      assert.equal(parsed.id.toString(), ID);
      assert.equal(parsed.privateKey.asymmetricKeyType, 'rsa');
    }
    assert.equal(X509Svid.parse(rsaSvid.leaf.raw, keys[1] as Buffer).id.toString(), ID);
  });

  test('X509Certificate objects and a KeyObject; toPem round-trips', async () => {
    const svid = await issue(interA, { chain: [interA.certificate] });
    const parsed = parseSvid(svid);
    const again = X509Svid.parse(parsed.toPem().certificates, parsed.toPem().privateKey);
    assert.deepEqual(fps(again.certificates), fps(svid.certificates));
    assert.ok(again.privateKey.equals(svid.privateKey));
  });

  test('DNS SANs next to the one URI SAN are fine', async () => {
    const svid = await issue(rootA, { dnsNames: ['orders.internal', 'localhost'] });
    assert.equal(parseSvid(svid).id.toString(), ID);
  });

  test('is frozen', async () => {
    const parsed = parseSvid(await issue(rootA));
    assert.ok(Object.isFrozen(parsed));
    assert.ok(Object.isFrozen(parsed.certificates));
  });

  // One test per X.509-SVID rule.
  test('no URI SAN: X509SVID_NO_URI_SAN', async () => {
    const svid = await issue(rootA, { uris: [], dnsNames: ['example.org'] });
    throwsSvid(() => parseSvid(svid), 'X509SVID_NO_URI_SAN');
    throwsSvid(() => idFromCertificate(svid.leaf), 'X509SVID_NO_URI_SAN');
    assert.equal(tryIdFromCertificate(svid.leaf), undefined);
  });

  test('two URI SANs: X509SVID_MULTIPLE_URI_SANS', async () => {
    const svid = await issue(rootA, { uris: [ID, 'spiffe://example.org/other'] });
    throwsSvid(() => parseSvid(svid), 'X509SVID_MULTIPLE_URI_SANS');
    throwsSvid(() => idFromCertificate(svid.leaf), 'X509SVID_MULTIPLE_URI_SANS');
    // Even the same ID twice.
    const twice = await issue(rootA, { uris: [ID, ID] });
    throwsSvid(() => parseSvid(twice), 'X509SVID_MULTIPLE_URI_SANS');
  });

  test('URI SAN that is not a SPIFFE ID: X509SVID_INVALID (cause: SpiffeIdError)', async () => {
    for (const uri of [
      'https://example.org/workload',
      'spiffe://example.org/workload/',
      'spiffe://EXAMPLE.org/workload',
      'spiffe://example.org/a?b=c',
    ]) {
      const svid = await issue(rootA, { uris: [uri] });
      assert.throws(
        () => parseSvid(svid),
        (err: unknown) => {
          assert.ok(err instanceof X509SvidError);
          assert.equal(err.code, 'X509SVID_INVALID', uri);
          assert.ok(err.cause instanceof SpiffeIdError);
          return true;
        },
      );
      assert.equal(tryIdFromCertificate(svid.leaf), undefined);
    }
  });

  test('leaf is a CA: X509SVID_LEAF_IS_CA', async () => {
    const svid = await issue(rootA, { isCa: true, keyUsage: KeyUsage.digitalSignature });
    throwsSvid(() => parseSvid(svid), 'X509SVID_LEAF_IS_CA');
  });

  test('leaf without digitalSignature: X509SVID_LEAF_KEY_USAGE', async () => {
    const svid = await issue(rootA, { keyUsage: KeyUsage.keyEncipherment | KeyUsage.keyAgreement });
    throwsSvid(() => parseSvid(svid), 'X509SVID_LEAF_KEY_USAGE');
  });

  test('leaf without a key usage extension: X509SVID_LEAF_KEY_USAGE', async () => {
    const svid = await issue(rootA, { keyUsage: null });
    throwsSvid(() => parseSvid(svid), 'X509SVID_LEAF_KEY_USAGE');
  });

  test('leaf with keyCertSign: X509SVID_LEAF_KEY_USAGE', async () => {
    const svid = await issue(rootA, { keyUsage: KeyUsage.digitalSignature | KeyUsage.keyCertSign });
    throwsSvid(() => parseSvid(svid), 'X509SVID_LEAF_KEY_USAGE');
  });

  test('leaf with cRLSign: X509SVID_LEAF_KEY_USAGE', async () => {
    const svid = await issue(rootA, { keyUsage: KeyUsage.digitalSignature | KeyUsage.cRLSign });
    throwsSvid(() => parseSvid(svid), 'X509SVID_LEAF_KEY_USAGE');
  });

  test('signing certificate that is not a CA: X509SVID_SIGNING_CERT_NOT_CA', async () => {
    const svid = await issue(interNotCa, { chain: [interNotCa.certificate] });
    throwsSvid(() => parseSvid(svid), 'X509SVID_SIGNING_CERT_NOT_CA');
  });

  test('signing certificate without keyCertSign: X509SVID_SIGNING_CERT_KEY_USAGE', async () => {
    const svid = await issue(interNoKeyCertSign, { chain: [interNoKeyCertSign.certificate] });
    throwsSvid(() => parseSvid(svid), 'X509SVID_SIGNING_CERT_KEY_USAGE');
    const noKu = await issue(interNoKeyUsage, { chain: [interNoKeyUsage.certificate] });
    throwsSvid(() => parseSvid(noKu), 'X509SVID_SIGNING_CERT_KEY_USAGE');
  });

  test('private key of another SVID: X509SVID_KEY_MISMATCH', async () => {
    const [a, b] = await Promise.all([issue(rootA), issue(rootA)]);
    throwsSvid(() => X509Svid.parse([...a.certificates], b.privateKey), 'X509SVID_KEY_MISMATCH');
    throwsSvid(() => X509Svid.parse(a.toPem().certificates, b.toPem().privateKey), 'X509SVID_KEY_MISMATCH');
    // An RSA key for an EC certificate, and the other way round.
    throwsSvid(() => X509Svid.parse([...a.certificates], rsaSvid.privateKey), 'X509SVID_KEY_MISMATCH');
    throwsSvid(() => X509Svid.parse([...rsaSvid.certificates], a.privateKey), 'X509SVID_KEY_MISMATCH');
  });

  test('unreadable certificates or key: X509SVID_INVALID', async () => {
    const svid = await issue(rootA);
    const pem = svid.toPem();
    const cases: Array<[string, () => unknown]> = [
      ['no certificates', () => X509Svid.parse('', pem.privateKey)],
      ['empty array', () => X509Svid.parse([], pem.privateKey)],
      ['garbage certificates', () => X509Svid.parse(Buffer.from('garbage'), pem.privateKey)],
      ['truncated DER', () => X509Svid.parse(svid.leaf.raw.subarray(0, 100), pem.privateKey)],
      ['garbage key', () => X509Svid.parse(pem.certificates, 'not a key')],
      ['empty key', () => X509Svid.parse(pem.certificates, '')],
      ['garbage DER key', () => X509Svid.parse(pem.certificates, Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00]))],
      ['public key object', () => X509Svid.parse(pem.certificates, svid.leaf.publicKey)],
      ['certificate as the key', () => X509Svid.parse(pem.certificates, pem.certificates)],
    ];
    for (const [label, fn] of cases) throwsSvid(fn, 'X509SVID_INVALID', label);
  });

  test('malformed SAN extension in a certificate node:crypto accepts: typed X509SVID_INVALID', async () => {
    const svid = await issue(rootA);
    const broken = withBrokenSan(svid.leaf, ID);
    throwsSvid(() => X509Svid.parse([broken], svid.privateKey), 'X509SVID_INVALID', 'parse');
    throwsSvid(() => idFromCertificate(broken), 'X509SVID_INVALID', 'idFromCertificate');
    assert.equal(tryIdFromCertificate(broken), undefined);
  });
});

/** A copy of the certificate with its first Name string retagged as GeneralizedTime (asn1js throws on it). */
function withBadNameTag(cert: X509Certificate): Buffer {
  const raw = Buffer.from(cert.raw);
  const at = raw.indexOf(Buffer.from('spiffe-ts'));
  assert.ok(at > 2 && (raw[at - 2] === 0x0c || raw[at - 2] === 0x13), 'a UTF8String or PrintableString');
  raw[at - 2] = 0x18;
  return raw;
}

/** A copy of the certificate whose EC public key is no longer a point on the curve (node cannot decode it). */
function withBadPublicKey(cert: X509Certificate): X509Certificate {
  const raw = Buffer.from(cert.raw);
  const at = raw.indexOf(Buffer.from([0x03, 0x42, 0x00, 0x04])); // BIT STRING of a P-256 uncompressed point
  assert.ok(at > 0, 'P-256 subjectPublicKey found');
  raw[at + 10] = (raw[at + 10] as number) ^ 0xff;
  const broken = new X509Certificate(raw);
  assert.throws(() => broken.publicKey, 'node refuses the key');
  return broken;
}

describe('X509Svid.parse: inputs that break the decoders', () => {
  test('DER the ASN.1 decoder throws on: X509SVID_INVALID', async () => {
    const svid = await issue(rootA);
    throwsSvid(() => X509Svid.parse(withBadNameTag(svid.leaf), svid.privateKey), 'X509SVID_INVALID');
  });

  test('leaf whose public key cannot be decoded: X509SVID_INVALID', async () => {
    const svid = await issue(rootA);
    throwsSvid(() => X509Svid.parse([withBadPublicKey(svid.leaf)], svid.privateKey), 'X509SVID_INVALID');
  });
});

describe('verifyX509Svid', () => {
  test('leaf signed directly by a root of its trust domain', async () => {
    const svid = await issue(rootA);
    const { id, verifiedChain } = verify(svid);
    assert.equal(id.toString(), ID);
    assert.deepEqual(fps(verifiedChain), fps([svid.leaf, rootA.certificate]));
  });

  test('leaf signed by a rotated (second) root in the bundle', async () => {
    const svid = await issue(rootA2);
    assert.deepEqual(fps(verify(svid).verifiedChain), fps([svid.leaf, rootA2.certificate]));
  });

  test('leaf via an intermediate', async () => {
    const svid = await issue(interA, { chain: [interA.certificate] });
    const { id, verifiedChain } = verify(svid);
    assert.equal(id.toString(), ID);
    assert.deepEqual(fps(verifiedChain), fps([svid.leaf, interA.certificate, rootA.certificate]));
  });

  test('two intermediates, presented out of order, and with the root appended', async () => {
    const svid = await issue(chainI2, { chain: [chainI1.certificate, chainI2.certificate, rootA.certificate] });
    const { verifiedChain } = verify(svid);
    assert.deepEqual(fps(verifiedChain), fps([svid.leaf, chainI2.certificate, chainI1.certificate, rootA.certificate]));
  });

  test('accepts PEM, DER and every kind of bundle source', async () => {
    const svid = await issue(interA, { chain: [interA.certificate] });
    const bundleA = new X509Bundle('example.org', [rootA.certificate]);
    const spiffeA = new SpiffeBundle({ trustDomain: 'example.org', x509Authorities: [rootA.certificate] });
    const sources = [bundleA, spiffeA, new SpiffeBundleSet([spiffeA]), new X509BundleSet([bundleA])];
    const inputs = [
      svid.toPem().certificates,
      Buffer.concat(svid.certificates.map((c) => c.raw)),
      [...svid.certificates],
    ];
    for (const source of sources) {
      for (const input of inputs) {
        assert.equal(verifyX509Svid(input, source).id.toString(), ID);
      }
    }
    // A JWT-only SPIFFE bundle trusts no X.509 authority.
    const jwtOnly = SpiffeBundle.fromBundles(undefined, JwtBundle.fromKeys('example.org', {}));
    throwsSvid(() => verifyX509Svid([...svid.certificates], jwtOnly), 'X509SVID_UNTRUSTED');
  });

  test('RSA leaf', () => {
    assert.equal(verify(rsaSvid).id.toString(), ID);
  });

  describe('cross trust domain', () => {
    test('a leaf claiming trust domain A signed by B’s CA fails even though B’s bundle is in the set', async () => {
      const forged = await issue(rootB, {}, ID);
      throwsSvid(() => verify(forged), 'X509SVID_UNTRUSTED');
      // Control: B's own IDs do verify with the same set.
      const legit = await issue(rootB, {}, OTHER_ID);
      assert.equal(verify(legit).id.toString(), OTHER_ID);
    });

    test('...also through B’s intermediate', async () => {
      const forged = await issue(interB, { chain: [interB.certificate] }, ID);
      throwsSvid(() => verify(forged), 'X509SVID_UNTRUSTED');
      const legit = await issue(interB, { chain: [interB.certificate] }, OTHER_ID);
      assert.equal(verify(legit).id.toString(), OTHER_ID);
    });

    test('...also when B’s root is appended to the chain', async () => {
      const forged = await issue(rootB, { chain: [rootB.certificate] }, ID);
      throwsSvid(() => verify(forged), 'X509SVID_UNTRUSTED');
    });

    test('...and when only B’s bundle is known', async () => {
      const forged = await issue(rootB, {}, ID);
      const onlyB = new X509BundleSet([new X509Bundle('other.org', [rootB.certificate])]);
      throwsSvid(() => verify(forged, onlyB), 'X509SVID_UNTRUSTED');
      throwsSvid(() => verifyX509Svid([...forged.certificates], onlyB.get('other.org')!), 'X509SVID_UNTRUSTED');
    });

    test('A’s root does not vouch for IDs of B', async () => {
      const forged = await issue(rootA, {}, OTHER_ID);
      throwsSvid(() => verify(forged), 'X509SVID_UNTRUSTED');
    });
  });

  test('leaf signed by an untrusted CA: X509SVID_UNTRUSTED', async () => {
    const svid = await issue(stranger);
    throwsSvid(() => verify(svid), 'X509SVID_UNTRUSTED');
    // Presenting the untrusted root in the chain does not help.
    const withRoot = await issue(stranger, { chain: [stranger.certificate] });
    throwsSvid(() => verify(withRoot), 'X509SVID_UNTRUSTED');
  });

  test('intermediate missing from the chain: X509SVID_UNTRUSTED', async () => {
    const svid = await issue(interA);
    throwsSvid(() => verify(svid), 'X509SVID_UNTRUSTED');
  });

  test('no bundle for the leaf’s trust domain: X509SVID_UNTRUSTED', async () => {
    const svid = await issue(rootA);
    throwsSvid(() => verify(svid, new X509BundleSet([])), 'X509SVID_UNTRUSTED');
    throwsSvid(
      () => verify(svid, new X509BundleSet([new X509Bundle('other.org', [rootA.certificate])])),
      'X509SVID_UNTRUSTED',
    );
    throwsSvid(() => verify(svid, new X509BundleSet([X509Bundle.empty('example.org')])), 'X509SVID_UNTRUSTED');
  });

  test('expired leaf: X509SVID_EXPIRED', async () => {
    const svid = await issue(rootA, {
      notBefore: new Date(Date.now() - 2 * HOUR),
      notAfter: new Date(Date.now() - HOUR),
    });
    throwsSvid(() => verify(svid), 'X509SVID_EXPIRED');
  });

  test('not-yet-valid leaf: X509SVID_NOT_YET_VALID', async () => {
    const svid = await issue(rootA, {
      notBefore: new Date(Date.now() + HOUR),
      notAfter: new Date(Date.now() + 2 * HOUR),
    });
    throwsSvid(() => verify(svid), 'X509SVID_NOT_YET_VALID');
  });

  test('the `now` option moves the verification time', async () => {
    const svid = await issue(rootA);
    const from = new Date(svid.leaf.validFrom).getTime();
    const to = new Date(svid.leaf.validTo).getTime();
    assert.equal(verify(svid, bundles, new Date(from + 1000)).id.toString(), ID);
    assert.equal(verify(svid, bundles, new Date(to)).id.toString(), ID);
    throwsSvid(() => verify(svid, bundles, new Date(to + 1000)), 'X509SVID_EXPIRED');
    throwsSvid(() => verify(svid, bundles, new Date(from - 1000)), 'X509SVID_NOT_YET_VALID');
  });

  test('expired intermediate: X509SVID_EXPIRED', async () => {
    const svid = await issue(interExpired, { chain: [interExpired.certificate] });
    throwsSvid(() => verify(svid), 'X509SVID_EXPIRED');
  });

  test('not-yet-valid intermediate: X509SVID_NOT_YET_VALID', async () => {
    const svid = await issue(interNotYetValid, { chain: [interNotYetValid.certificate] });
    throwsSvid(() => verify(svid), 'X509SVID_NOT_YET_VALID');
  });

  test('expired root: X509SVID_EXPIRED', async () => {
    const svid = await issue(rootExpired);
    const set = new X509BundleSet([new X509Bundle('example.org', [rootExpired.certificate])]);
    throwsSvid(() => verify(svid, set), 'X509SVID_EXPIRED');
  });

  test('root pathLenConstraint 0 allows a direct leaf but no intermediate: X509SVID_PATH_LEN_EXCEEDED', async () => {
    const direct = await issue(rootPathLen0);
    assert.deepEqual(fps(verify(direct).verifiedChain), fps([direct.leaf, rootPathLen0.certificate]));
    const via = await issue(interUnderPathLen0, { chain: [interUnderPathLen0.certificate] });
    throwsSvid(() => verify(via), 'X509SVID_PATH_LEN_EXCEEDED');
  });

  test('intermediate pathLenConstraint 0 allows a leaf but no intermediate below it: X509SVID_PATH_LEN_EXCEEDED', async () => {
    const direct = await issue(interPathLen0, { chain: [interPathLen0.certificate] });
    assert.equal(verify(direct).verifiedChain.length, 3);
    const below = await issue(interBelowPathLen0, {
      chain: [interBelowPathLen0.certificate, interPathLen0.certificate],
    });
    throwsSvid(() => verify(below), 'X509SVID_PATH_LEN_EXCEEDED');
  });

  test('intermediate without keyCertSign: X509SVID_SIGNING_CERT_KEY_USAGE', async () => {
    const svid = await issue(interNoKeyCertSign, { chain: [interNoKeyCertSign.certificate] });
    // The issuer is found by name and signature; the signing-certificate rule it breaks is the reason.
    throwsSvid(() => verify(svid), 'X509SVID_SIGNING_CERT_KEY_USAGE');
  });

  test('intermediate without a key usage extension: X509SVID_SIGNING_CERT_KEY_USAGE', async () => {
    const svid = await issue(interNoKeyUsage, { chain: [interNoKeyUsage.certificate] });
    throwsSvid(() => verify(svid), 'X509SVID_SIGNING_CERT_KEY_USAGE');
  });

  test('intermediate that is not a CA: X509SVID_SIGNING_CERT_NOT_CA', async () => {
    const svid = await issue(interNotCa, { chain: [interNotCa.certificate] });
    throwsSvid(() => verify(svid), 'X509SVID_SIGNING_CERT_NOT_CA');
  });

  test('leaf rules apply to peers too', async () => {
    const [ca, noDs, certSign, noUri, twoUris] = await Promise.all([
      issue(rootA, { isCa: true, keyUsage: KeyUsage.digitalSignature }),
      issue(rootA, { keyUsage: KeyUsage.keyEncipherment }),
      issue(rootA, { keyUsage: KeyUsage.digitalSignature | KeyUsage.keyCertSign }),
      issue(rootA, { uris: [] }),
      issue(rootA, { uris: [ID, ID] }),
    ]);
    throwsSvid(() => verify(ca), 'X509SVID_LEAF_IS_CA');
    throwsSvid(() => verify(noDs), 'X509SVID_LEAF_KEY_USAGE');
    throwsSvid(() => verify(certSign), 'X509SVID_LEAF_KEY_USAGE');
    throwsSvid(() => verify(noUri), 'X509SVID_NO_URI_SAN');
    throwsSvid(() => verify(twoUris), 'X509SVID_MULTIPLE_URI_SANS');
  });

  test('a CA certificate presented as the leaf is refused', () => {
    throwsSvid(() => verifyX509Svid([interA.certificate], bundles), 'X509SVID_LEAF_IS_CA');
  });

  test('chains with garbage bytes give a typed error, not a crash', async () => {
    const svid = await issue(interA, { chain: [interA.certificate] });
    const der = Buffer.concat(svid.certificates.map((c) => c.raw));
    const cases: Array<[string, unknown]> = [
      ['trailing garbage', Buffer.concat([der, Buffer.from('garbage!')])],
      ['leading garbage', Buffer.concat([Buffer.from([0xde, 0xad, 0xbe, 0xef]), der])],
      ['truncated', der.subarray(0, der.length - 10)],
      ['zeros', Buffer.alloc(64)],
      ['0xff', Buffer.alloc(64, 0xff)],
      ['huge length', Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00])],
      ['empty', Buffer.alloc(0)],
      ['text', 'hello'],
      ['bad PEM body', '-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n'],
      ['empty array', []],
      ['array with garbage', [svid.leaf, Buffer.from('x')]],
      ['undefined', undefined],
      ['a number', 1],
    ];
    for (const [label, input] of cases) {
      throwsSvid(() => verifyX509Svid(input as Buffer, bundles), 'X509SVID_INVALID', label);
    }
  });

  test('malformed extensions in the leaf or an intermediate give X509SvidError, not CertificateError', async () => {
    const svid = await issue(interA, { chain: [interA.certificate] });
    throwsSvid(() => verifyX509Svid([withBrokenSan(svid.leaf, ID), interA.certificate], bundles), 'X509SVID_INVALID');
    // OpenSSL's checkIssued refuses an issuer whose extensions do not decode; it did sign the leaf, so the
    // error names the malformed intermediate.
    const brokenInter = withBrokenSan(interA.certificate, 'spiffe://example.org');
    throwsSvid(() => verifyX509Svid([svid.leaf, brokenInter], bundles), 'X509SVID_INVALID');
  });

  test('DER the ASN.1 decoder throws on, in the leaf or the intermediate: X509SVID_INVALID', async () => {
    const svid = await issue(interA, { chain: [interA.certificate] });
    throwsSvid(
      () => verifyX509Svid(Buffer.concat([withBadNameTag(svid.leaf), interA.certificate.raw]), bundles),
      'X509SVID_INVALID',
    );
    throwsSvid(() => verifyX509Svid([svid.leaf.raw, withBadNameTag(interA.certificate)], bundles), 'X509SVID_INVALID');
  });

  test('leaf whose public key cannot be decoded: X509SVID_UNTRUSTED', async () => {
    const svid = await issue(rootA);
    throwsSvid(() => verifyX509Svid([withBadPublicKey(svid.leaf)], bundles), 'X509SVID_UNTRUSTED');
  });

  test('the same malformed certificate object is refused on every check, not only the first', async () => {
    // One ASN.1 parse per certificate object serves its facts and its names, and the outcome is kept: a kept
    // failure must refuse again, with the same code, whatever is asked first (names on the path, or facts).
    const svid = await issue(interA, { chain: [interA.certificate] });
    const brokenLeaf = withBrokenSan(svid.leaf, ID);
    const brokenInter = withBrokenSan(interA.certificate, 'spiffe://example.org');
    for (let i = 0; i < 3; i++) {
      throwsSvid(() => verifyX509Svid([brokenLeaf, interA.certificate], bundles), 'X509SVID_INVALID', `leaf ${i}`);
      throwsSvid(() => verifyX509Svid([svid.leaf, brokenInter], bundles), 'X509SVID_INVALID', `intermediate ${i}`);
      throwsSvid(() => idFromCertificate(brokenLeaf), 'X509SVID_INVALID', `id ${i}`);
      assert.equal(tryIdFromCertificate(brokenInter), undefined);
    }
    // and a good chain sharing the intermediate object still verifies (its own kept outcome is a success)
    assert.equal(String(verifyX509Svid([svid.leaf, interA.certificate], bundles).id), ID);
  });

  test('random corruption of a valid chain never escapes as a non-X509SvidError (seeded)', async () => {
    const svid = await issue(interA, { chain: [interA.certificate] });
    const der = Buffer.concat(svid.certificates.map((c) => c.raw));
    let seed = 0x1234567;
    const next = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed;
    };
    let accepted = 0;
    for (let i = 0; i < 300; i++) {
      const bytes = Buffer.from(der);
      const flips = 1 + (next() % 3);
      for (let f = 0; f < flips; f++) bytes[next() % bytes.length] = next() & 0xff;
      try {
        const { id } = verifyX509Svid(bytes, bundles);
        // A flip in a byte nobody reads may leave the chain valid; the identity must not change.
        assert.equal(id.toString(), ID);
        accepted++;
      } catch (err) {
        assert.ok(err instanceof X509SvidError, `iteration ${i}: ${String(err)}`);
      }
    }
    assert.ok(accepted < 300, 'corruption was detected at least once');
  });

  test('the trust domain the bundle is looked up for is the leaf’s', async () => {
    const seen: string[] = [];
    const source = {
      getX509BundleForTrustDomain(td: TrustDomain) {
        seen.push(td.name);
        return bundles.getX509BundleForTrustDomain(td);
      },
    };
    const svid = await issue(rootB, {}, OTHER_ID);
    verify(svid, source as unknown as X509BundleSet);
    assert.deepEqual(seen, ['other.org']);
  });
});

// Issue #21: verdicts where the checks above were too lax (critical extensions, weak signatures, leaf IDs
// without a path) or too strict (key identifiers).
describe('issue #21 verdicts', () => {
  const UNKNOWN_OID = '1.3.6.1.4.1.55555.1.1';
  const critical = [{ oid: UNKNOWN_OID, critical: true, value: new Uint8Array([0x05, 0x00]) }];
  const nonCritical = [{ oid: UNKNOWN_OID, critical: false, value: new Uint8Array([0x05, 0x00]) }];

  test('leaf with an unknown critical extension: X509SVID_UNSUPPORTED_CRITICAL_EXTENSION (parse and verify)', async () => {
    const [bad, fine] = await Promise.all([
      issue(rootA, { extraExtensions: critical }),
      issue(rootA, { extraExtensions: nonCritical }),
    ]);
    throwsSvid(() => parseSvid(bad), 'X509SVID_UNSUPPORTED_CRITICAL_EXTENSION', 'parse');
    throwsSvid(() => verify(bad), 'X509SVID_UNSUPPORTED_CRITICAL_EXTENSION', 'verify');
    // The same extension, not critical, is ignored.
    assert.equal(parseSvid(fine).id.toString(), ID);
    assert.equal(verify(fine).id.toString(), ID);
  });

  test('intermediate with an unknown critical extension: X509SVID_UNSUPPORTED_CRITICAL_EXTENSION', async () => {
    const inter = await createAuthority({ parent: rootA, extraExtensions: critical });
    const svid = await issue(inter, { chain: [inter.certificate] });
    throwsSvid(() => parseSvid(svid), 'X509SVID_UNSUPPORTED_CRITICAL_EXTENSION', 'parse');
    throwsSvid(() => verify(svid), 'X509SVID_UNSUPPORTED_CRITICAL_EXTENSION', 'verify');
  });

  test('SHA-1 signature on the leaf or an intermediate: X509SVID_WEAK_SIGNATURE; a SHA-1 self-signed root is fine', async () => {
    const [sha1Inter, sha1Root] = await Promise.all([
      createAuthority({ parent: rootA, signatureHash: 'SHA-1' }),
      createAuthority({ signatureHash: 'SHA-1' }),
    ]);
    const [leafSha1, underSha1Inter, underSha1Root] = await Promise.all([
      issue(rootA, { signatureHash: 'SHA-1' }),
      issue(sha1Inter, { chain: [sha1Inter.certificate] }),
      issue(sha1Root),
    ]);
    throwsSvid(() => verify(leafSha1), 'X509SVID_WEAK_SIGNATURE', 'leaf');
    throwsSvid(() => verify(underSha1Inter), 'X509SVID_WEAK_SIGNATURE', 'intermediate');
    // The trust anchor's own signature is not part of path validation.
    const anchored = new X509BundleSet([new X509Bundle('example.org', [sha1Root.certificate])]);
    assert.equal(verify(underSha1Root, anchored).id.toString(), ID);
  });

  test('RSASSA-PSS over SHA-1 (explicit, or by absent parameters) is weak; RSASSA-PSS over SHA-256 verifies', async () => {
    // A root with an RSA-PSS key signs an EC leaf; the PSS digest comes from the signing parameters.
    async function pssChain(hash: 'SHA-1' | 'SHA-256') {
      const alg = { name: 'RSA-PSS', hash, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) };
      const rootKeys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
      const signingAlgorithm = { name: 'RSA-PSS', hash, saltLength: hash === 'SHA-1' ? 20 : 32 };
      const notBefore = new Date(Date.now() - HOUR);
      const notAfter = new Date(Date.now() + HOUR);
      const root = await px509.X509CertificateGenerator.createSelfSigned({
        serialNumber: '01',
        name: 'CN=pss root',
        notBefore,
        notAfter,
        keys: rootKeys,
        signingAlgorithm,
        extensions: [
          new px509.BasicConstraintsExtension(true, undefined, true),
          new px509.KeyUsagesExtension(px509.KeyUsageFlags.keyCertSign, true),
          new px509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://example.org' }]),
        ],
      });
      const leafKeys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
        'sign',
        'verify',
      ])) as webcrypto.CryptoKeyPair;
      const leaf = await px509.X509CertificateGenerator.create({
        serialNumber: '02',
        subject: 'CN=pss leaf',
        issuer: root.subject,
        notBefore,
        notAfter,
        publicKey: leafKeys.publicKey,
        signingKey: rootKeys.privateKey,
        signingAlgorithm,
        extensions: [
          new px509.KeyUsagesExtension(px509.KeyUsageFlags.digitalSignature, true),
          new px509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }]),
        ],
      });
      const anchor = new X509BundleSet([
        new X509Bundle('example.org', [new X509Certificate(Buffer.from(root.rawData))]),
      ]);
      return { leaf: new X509Certificate(Buffer.from(leaf.rawData)), anchor };
    }
    const weak = await pssChain('SHA-1');
    throwsSvid(() => verifyX509Svid([weak.leaf], weak.anchor), 'X509SVID_WEAK_SIGNATURE', 'PSS SHA-1');
    // The same signature with its parameters removed means SHA-1 by RFC 4055's defaults.
    const defaulted = new X509Certificate(withoutPssParameters(Buffer.from(weak.leaf.raw)));
    throwsSvid(() => verifyX509Svid([defaulted], weak.anchor), 'X509SVID_WEAK_SIGNATURE', 'PSS defaults');
    const strong = await pssChain('SHA-256');
    assert.equal(verifyX509Svid([strong.leaf], strong.anchor).id.toString(), ID);
  });

  test('leaf whose SPIFFE ID has no path: X509SVID_LEAF_NO_PATH (parse and verify)', async () => {
    const svid = await issue(rootA, {}, 'spiffe://example.org');
    throwsSvid(() => parseSvid(svid), 'X509SVID_LEAF_NO_PATH', 'parse');
    throwsSvid(() => verify(svid), 'X509SVID_LEAF_NO_PATH', 'verify');
  });

  test('authority key identifier not matching the issuer’s subject key identifier (or absent) is accepted', async () => {
    const wrongKeyId = 'ab'.repeat(20);
    const inter = await createAuthority({ parent: rootA, authorityKeyId: wrongKeyId });
    const [direct, noAkid, via] = await Promise.all([
      issue(rootA, { authorityKeyId: wrongKeyId }),
      issue(rootA, { authorityKeyId: null }),
      issue(inter, { authorityKeyId: wrongKeyId, chain: [inter.certificate] }),
    ]);
    assert.deepEqual(fps(verify(direct).verifiedChain), fps([direct.leaf, rootA.certificate]));
    assert.deepEqual(fps(verify(noAkid).verifiedChain), fps([noAkid.leaf, rootA.certificate]));
    assert.deepEqual(fps(verify(via).verifiedChain), fps([via.leaf, inter.certificate, rootA.certificate]));
    // Names and signatures still decide: the same key identifier trick does not make a stranger's leaf trusted.
    const foreign = await issue(stranger, { authorityKeyId: wrongKeyId });
    throwsSvid(() => verify(foreign), 'X509SVID_UNTRUSTED');
  });
});

describe('issue #21: URI name constraints', () => {
  /** A critical nameConstraints extension with the given URI subtrees (and optionally a DNS one). */
  function nameConstraints(permitted: string[], excluded: string[], dns?: string) {
    const subtrees = (uris: string[]) =>
      uris.length === 0
        ? undefined
        : new GeneralSubtrees(
            uris.map((u) => new GeneralSubtree({ base: new GeneralName({ uniformResourceIdentifier: u }) })),
          );
    const nc = new NameConstraints({ permittedSubtrees: subtrees(permitted), excludedSubtrees: subtrees(excluded) });
    if (dns) {
      nc.permittedSubtrees ??= new GeneralSubtrees();
      nc.permittedSubtrees.push(new GeneralSubtree({ base: new GeneralName({ dNSName: dns }) }));
    }
    return [{ oid: id_ce_nameConstraints, critical: true, value: new Uint8Array(AsnConvert.serialize(nc)) }];
  }

  test('a root excluding the trust domain cannot issue for it: X509SVID_NAME_NOT_PERMITTED', async () => {
    const root = await createAuthority({ extraExtensions: nameConstraints([], ['example.org']) });
    const svid = await issue(root);
    const set = new X509BundleSet([new X509Bundle('example.org', [root.certificate])]);
    throwsSvid(() => verify(svid, set), 'X509SVID_NAME_NOT_PERMITTED');
  });

  test('an intermediate permitted only another trust domain cannot issue for this one', async () => {
    const [otherOnly, thisOnly, subdomainsOnly] = await Promise.all([
      createAuthority({ parent: rootA, extraExtensions: nameConstraints(['other.org'], []) }),
      createAuthority({ parent: rootA, extraExtensions: nameConstraints(['example.org'], []) }),
      createAuthority({ parent: rootA, extraExtensions: nameConstraints([], ['.example.org']) }),
    ]);
    const [a, b, c] = await Promise.all([
      issue(otherOnly, { chain: [otherOnly.certificate] }),
      issue(thisOnly, { chain: [thisOnly.certificate] }),
      issue(subdomainsOnly, { chain: [subdomainsOnly.certificate] }),
    ]);
    throwsSvid(() => verify(a), 'X509SVID_NAME_NOT_PERMITTED');
    assert.equal(verify(b).id.toString(), ID);
    // ".example.org" names subdomains only (RFC 5280 §4.2.1.10), not example.org itself.
    assert.equal(verify(c).id.toString(), ID);
  });

  test('critical name constraints on other name forms are refused (not supported)', async () => {
    const inter = await createAuthority({
      parent: rootA,
      extraExtensions: nameConstraints(['example.org'], [], 'example.org'),
    });
    const svid = await issue(inter, { chain: [inter.certificate] });
    throwsSvid(() => verify(svid), 'X509SVID_UNSUPPORTED_CRITICAL_EXTENSION');
  });
});
