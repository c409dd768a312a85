// SPIFFE bundle documents (spiffebundle.Parse / SpiffeBundle.parse): valid documents, and each top-level and
// per-key member malformed in turn (keys, use, x5c, kid, kty, key members, spiffe_sequence,
// spiffe_refresh_hint, JSON syntax).
import { generateKeyPairSync, type KeyObject, type X509Certificate } from 'node:crypto';
import { createAuthority } from '@spiffe-ts/dev-server';
import { type Case, Rng } from './types.js';

const TD = 'example.org';

type Json = Record<string, unknown>;

function publicJwk(key: KeyObject): Json {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = key.export({ format: 'jwk' }) as Json;
  return pub;
}

function x509Entry(cert: X509Certificate): Json {
  return { ...publicJwk(cert.publicKey), use: 'x509-svid', x5c: [cert.raw.toString('base64')] };
}

export async function bundleCases(seed: number): Promise<Case[]> {
  const rng = new Rng(seed ^ 0xb0d1);
  const notBefore = new Date('2026-01-01T00:00:00Z');
  const notAfter = new Date('2027-01-01T00:00:00Z');
  const ca1 = (await createAuthority({ notBefore, notAfter })).certificate;
  const ca2 = (await createAuthority({ notBefore, notAfter, keyType: 'ec-p384' })).certificate;
  const ec256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const ec384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ed = generateKeyPairSync('ed25519').privateKey;
  const jwt = (key: KeyObject, kid: string, extra: Json = {}): Json => ({
    ...publicJwk(key),
    use: 'jwt-svid',
    kid,
    ...extra,
  });
  const x1 = x509Entry(ca1);
  const x2 = x509Entry(ca2);
  const j1 = jwt(ec256, 'k1');
  const j2 = jwt(rsa, 'k2');
  const j3 = jwt(ec384, 'k3');
  const j4 = jwt(ed, 'k4');

  const cases: Case[] = [];
  const add = (cls: string, doc: string | Json) =>
    cases.push({
      id: `bundle/${cls}/${cases.length}`,
      kind: 'bundle',
      class: `bundle/${cls}`,
      td: TD,
      doc: typeof doc === 'string' ? doc : JSON.stringify(doc),
    });
  const withKey = (entry: Json, more: Json = {}) => ({ keys: [x1, entry], spiffe_sequence: 1, ...more });

  // Valid documents.
  add('valid', { keys: [x1, j1] });
  add('valid', { keys: [x1, x2, j1, j2, j3, j4], spiffe_sequence: 42, spiffe_refresh_hint: 300 });
  add('valid-x509-only', { keys: [x1] });
  add('valid-jwt-only', { keys: [j1, j2] });
  add('valid-empty-keys', { keys: [] });
  add('valid-empty-keys', { keys: [], spiffe_sequence: 0, spiffe_refresh_hint: 0 });
  add('valid-extra-members', { keys: [x1], issuer: 'x', spiffe_other: true, trust_domains: {} });
  add('valid-whitespace', `  \n{ "keys" : [ ${JSON.stringify(x1)} ] }\n\t`);
  add('valid-pretty', JSON.stringify({ keys: [x1, j1], spiffe_sequence: 3 }, null, 2));
  add('valid-duplicate-kid-same-key', { keys: [j1, { ...j1 }] });
  add('valid-same-cert-twice', { keys: [x1, x1] });
  add('valid-jwt-entry-extra-members', { keys: [{ ...j1, alg: 'ES256', key_ops: ['verify'] }] });
  add('jwt-entry-bad-x5t', { keys: [{ ...j1, x5t: 'abc' }] });
  add('jwt-entry-x5c-other-key', { keys: [{ ...j1, x5c: [ca1.raw.toString('base64')] }] });
  add('jwt-entry-x5c-garbage', { keys: [{ ...j1, x5c: ['not base64!'] }] });
  add('valid-unicode-member', '{"keys":[],"ünïcode":"✓"}');
  // keys missing or not an array.
  for (const [cls, doc] of [
    ['keys-missing', { spiffe_sequence: 1, spiffe_refresh_hint: 60 }],
    ['keys-null', { keys: null }],
    ['keys-object', { keys: { a: x1 } }],
    ['keys-string', { keys: 'x' }],
    ['keys-number', { keys: 1 }],
    ['keys-entry-null', { keys: [null] }],
    ['keys-entry-string', { keys: ['x'] }],
    ['keys-entry-number', { keys: [x1, 1] }],
    ['keys-entry-array', { keys: [[x1]] }],
    ['keys-nested', { keys: [{ keys: [x1] }] }],
    ['keys-empty-object-entry', { keys: [{}] }],
    ['keys-upper', { KEYS: [x1] }],
  ] as Array<[string, Json]>) {
    add(cls, doc);
  }
  // use.
  for (const use of [
    undefined,
    'sig',
    'enc',
    'X509-SVID',
    'JWT-SVID',
    'x509-SVID',
    'x509_svid',
    'wit-svid',
    '',
    5,
    null,
    ['x509-svid'],
  ]) {
    add('use-other', { keys: [x1, { ...j2, use }] });
    add('use-other-on-cert', { keys: [j1, { ...x2, use }] });
  }
  // x5c.
  const der = ca2.raw;
  for (const [cls, x5c] of [
    ['x5c-missing', undefined],
    ['x5c-empty', []],
    ['x5c-two-certs', [der.toString('base64'), ca1.raw.toString('base64')]],
    ['x5c-garbage', ['not base64!']],
    ['x5c-base64url', [der.toString('base64url')]],
    ['x5c-no-padding', [der.toString('base64').replace(/=+$/, '')]],
    ['x5c-whitespace', [der.toString('base64').replace(/(.{64})/g, '$1\n')]],
    ['x5c-not-a-cert', [Buffer.from('hello world').toString('base64')]],
    ['x5c-trailing-bytes', [Buffer.concat([der, Buffer.from([0, 0])]).toString('base64')]],
    ['x5c-truncated', [der.subarray(0, der.length - 10).toString('base64')]],
    ['x5c-not-array', der.toString('base64')],
    ['x5c-number', [5]],
    ['x5c-null-member', [null]],
    ['x5c-empty-string', ['']],
    ['x5c-pem', [ca2.toString()]],
  ] as Array<[string, unknown]>) {
    add(cls, withKey({ ...x2, x5c }));
  }
  // X509-SVID §6.2 says what a consumer does with these: ignore the entry, or use the first certificate.
  for (const c of cases.filter((c) => /^bundle\/x5c-(missing|empty|two-certs)$/.test(c.class))) {
    c.spec = {
      verdict: 'accept',
      clause:
        'X509-SVID §6.2: an x509-svid entry without x5c or with an empty x5c MUST be ignored; of several x5c values all but the first MUST be ignored',
    };
  }
  // The JWK's key members against the certificate.
  const { kty: _kty, x: _x, y: _y, crv: _crv, ...bare } = x2;
  add('x5c-without-key-members', withKey(bare));
  add('x5c-key-members-of-other-key', withKey({ ...publicJwk(ec384), use: 'x509-svid', x5c: x2.x5c }));
  add('x5c-key-members-rsa-for-ec-cert', withKey({ ...publicJwk(rsa), use: 'x509-svid', x5c: x2.x5c }));
  add('x5c-kty-mismatch', withKey({ ...x2, kty: 'RSA' }));
  add('x5c-crv-mismatch', withKey({ ...x2, crv: 'P-256' }));
  add('x5c-with-kid', withKey({ ...x2, kid: 'should-not-be-here' }));
  add('x5c-with-private-d', withKey({ ...x2, d: (ec384.export({ format: 'jwk' }) as Json).d }));
  // kid.
  add('jwt-kid-missing', withKey({ ...j2, kid: undefined }));
  add('jwt-kid-empty', withKey({ ...j2, kid: '' }));
  add('jwt-kid-number', withKey({ ...j2, kid: 7 }));
  add('jwt-duplicate-kid-different-keys', { keys: [j1, { ...j3, kid: 'k1' }] });
  add('jwt-duplicate-kid-across-types', { keys: [j1, { ...j2, kid: 'k1' }] });
  // kty and key members.
  for (const [cls, entry] of [
    ['jwt-kty-oct', { kty: 'oct', k: 'c2VjcmV0', use: 'jwt-svid', kid: 'k9' }],
    ['jwt-kty-unknown', { kty: 'XYZ', use: 'jwt-svid', kid: 'k9' }],
    ['jwt-kty-missing', { ...j3, kty: undefined }],
    ['jwt-kty-lowercase', { ...j3, kty: 'ec' }],
    ['jwt-kty-number', { ...j3, kty: 1 }],
    ['jwt-ec-bad-point', { ...j1, x: j3.x, y: j3.y }],
    ['jwt-ec-missing-y', { ...j1, y: undefined }],
    ['jwt-ec-crv-unknown', { ...j1, crv: 'P-192' }],
    ['jwt-ec-crv-secp256k1', { ...j1, crv: 'secp256k1' }],
    ['jwt-ec-x-not-base64url', { ...j1, x: '***' }],
    ['jwt-rsa-missing-e', { ...j2, e: undefined }],
    ['jwt-rsa-n-garbage', { ...j2, n: 'AQAB' }],
    ['jwt-rsa-private', { ...(rsa.export({ format: 'jwk' }) as Json), use: 'jwt-svid', kid: 'k9' }],
    ['jwt-ec-private', { ...(ec256.export({ format: 'jwk' }) as Json), use: 'jwt-svid', kid: 'k9' }],
    ['jwt-okp-x25519', { ...publicJwk(generateKeyPairSync('x25519').privateKey), use: 'jwt-svid', kid: 'k9' }],
    ['jwt-okp-ed448', { ...publicJwk(generateKeyPairSync('ed448').privateKey), use: 'jwt-svid', kid: 'k9' }],
    ['jwt-with-alg-none', { ...j1, alg: 'none' }],
    ['jwt-with-use-sig-too', { ...j1, key_ops: ['sign'] }],
  ] as Array<[string, Json]>) {
    add(cls, withKey(entry));
  }
  // spiffe_sequence.
  for (const [cls, raw] of [
    ['seq-zero', '0'],
    ['seq-max-safe', '9007199254740991'],
    ['seq-above-2-53', '9007199254740993'],
    ['seq-max-u64', '18446744073709551615'],
    ['seq-over-u64', '18446744073709551616'],
    ['seq-negative', '-1'],
    ['seq-float', '1.5'],
    ['seq-float-integral', '1.0'],
    ['seq-exponent', '1e3'],
    ['seq-string', '"5"'],
    ['seq-null', 'null'],
    ['seq-true', 'true'],
    ['seq-object', '{}'],
    ['seq-huge', '1'.repeat(40)],
    ['seq-negative-zero', '-0'],
    ['seq-leading-zero', '01'],
  ] as const) {
    add(cls, `{"keys":[${JSON.stringify(x1)}],"spiffe_sequence":${raw}}`);
  }
  // spiffe_refresh_hint.
  for (const [cls, raw] of [
    ['hint-zero', '0'],
    ['hint-minute', '60'],
    ['hint-negative', '-1'],
    ['hint-float', '1.5'],
    ['hint-float-integral', '60.0'],
    ['hint-exponent', '6e1'],
    ['hint-string', '"60"'],
    ['hint-null', 'null'],
    ['hint-max-safe', '9007199254740991'],
    ['hint-max-i64', '9223372036854775807'],
    ['hint-over-i64', '9223372036854775808'],
    ['hint-year', '31536000'],
    ['hint-bool', 'false'],
  ] as const) {
    add(cls, `{"keys":[${JSON.stringify(x1)}],"spiffe_refresh_hint":${raw}}`);
  }
  // JSON syntax and top level.
  for (const [cls, doc] of [
    ['not-json', 'hello'],
    ['empty-text', ''],
    ['top-array', `[${JSON.stringify({ keys: [] })}]`],
    ['top-string', '"keys"'],
    ['top-number', '1'],
    ['top-null', 'null'],
    ['trailing-garbage', `{"keys":[]} x`],
    ['trailing-comma', '{"keys":[],}'],
    ['two-documents', '{"keys":[]}{"keys":[]}'],
    ['bom', `\ufeff{"keys":[]}`],
    ['single-quotes', "{'keys':[]}"],
    ['comment', '{"keys":[] /* c */}'],
    ['duplicate-keys-member', `{"keys":[],"keys":[${JSON.stringify(x1)}]}`],
    ['duplicate-sequence-member', `{"keys":[],"spiffe_sequence":1,"spiffe_sequence":2}`],
    [
      'duplicate-member-in-key',
      `{"keys":[{"use":"jwt-svid","use":"x509-svid","kid":"a","kty":"EC","crv":"P-256","x":"${j1.x}","y":"${j1.y}"}]}`,
    ],
    ['invalid-utf8-escape', '{"keys":[],"x":"\\ud800"}'],
    ['deep-nesting', `{"keys":[],"x":${'['.repeat(200)}${']'.repeat(200)}}`],
    ['nan', '{"keys":[],"spiffe_sequence":NaN}'],
  ] as const) {
    add(cls, doc);
  }
  // Random valid and mutated documents for volume.
  const pool = [x1, x2, j1, j2, j3, j4];
  for (let i = 0; i < 30; i++) {
    const keys = Array.from({ length: rng.int(0, 4) }, () => rng.pick(pool));
    const doc: Json = { keys };
    if (rng.next() < 0.5) doc.spiffe_sequence = rng.int(0, 1_000_000);
    if (rng.next() < 0.5) doc.spiffe_refresh_hint = rng.int(0, 86400);
    add('random', doc);
  }
  return cases;
}
