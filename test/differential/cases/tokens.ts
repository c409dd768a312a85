// JWT-SVID cases: compact tokens with every allowed and forbidden algorithm, key ID, type and extra header
// variant, and every claim variant (aud, exp, iat, nbf, sub), validated against JWT bundles with
// jwtsvid.ParseAndValidate / parseAndValidateJwtSvid. Both sides validate at the real current time (go-spiffe
// takes no time option), so time claims stay at least ten minutes away from either side's leeway.
import { constants, createHmac, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { type Case, Rng } from './types.js';

const TD = 'example.org';
const TD2 = 'other.test';
const SUB = `spiffe://${TD}/workload`;
const AUD = 'spiffe://example.org/api';

type KeyName = 'ec256' | 'ec384' | 'ec521' | 'rsa' | 'rsa1024' | 'ed' | 'stranger256' | 'strangerRsa';

function keys(): Record<KeyName, KeyObject> {
  const ec = (namedCurve: string) => generateKeyPairSync('ec', { namedCurve }).privateKey;
  const rsa = (modulusLength: number) => generateKeyPairSync('rsa', { modulusLength }).privateKey;
  return {
    ec256: ec('P-256'),
    ec384: ec('P-384'),
    ec521: ec('P-521'),
    rsa: rsa(2048),
    rsa1024: rsa(1024),
    ed: generateKeyPairSync('ed25519').privateKey,
    stranger256: ec('P-256'),
    strangerRsa: rsa(2048),
  };
}

function jwk(key: KeyObject, kid: string): Record<string, unknown> {
  return {
    ...key.export({ format: 'jwk' }),
    kid,
    d: undefined,
    p: undefined,
    q: undefined,
    dp: undefined,
    dq: undefined,
    qi: undefined,
  };
}

const b64u = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

const HASH: Record<string, string> = { '256': 'sha256', '384': 'sha384', '512': 'sha512' };

/** A compact JWS over header and payload, signed with `key` as `alg` says (any alg name; unknown ones unsigned). */
function jws(header: unknown, payload: unknown, key: KeyObject | undefined, signAs?: string): string {
  const input = `${b64u(header)}.${b64u(payload)}`;
  const alg = signAs ?? (header as { alg?: string }).alg ?? '';
  const bits = alg.slice(2);
  let sig = Buffer.alloc(0);
  if (key && /^ES(256|384|512)$/.test(alg))
    sig = sign(HASH[bits] as string, Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  else if (key && /^RS(256|384|512)$/.test(alg)) sig = sign(HASH[bits] as string, Buffer.from(input), key);
  else if (key && /^PS(256|384|512)$/.test(alg)) {
    sig = sign(HASH[bits] as string, Buffer.from(input), {
      key,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: Number(bits) / 8,
    });
  } else if (key && alg === 'EdDSA') sig = sign(null, Buffer.from(input), key);
  else if (alg.startsWith('HS'))
    sig = createHmac(HASH[bits] ?? 'sha256', 'shared-secret')
      .update(input)
      .digest();
  else if (alg === 'ES256-DER' && key) sig = sign('sha256', Buffer.from(input), key);
  return `${input}.${sig.toString('base64url')}`;
}

const ALG_KEY: Record<string, KeyName> = {
  RS256: 'rsa',
  RS384: 'rsa',
  RS512: 'rsa',
  PS256: 'rsa',
  PS384: 'rsa',
  PS512: 'rsa',
  ES256: 'ec256',
  ES384: 'ec384',
  ES512: 'ec521',
};

export function tokenCases(seed: number): Case[] {
  const rng = new Rng(seed ^ 0x70c3);
  const k = keys();
  const now = Math.floor(Date.now() / 1000);
  const jwks = {
    [TD]: JSON.stringify({
      keys: (['ec256', 'ec384', 'ec521', 'rsa', 'rsa1024', 'ed'] as const).map((n) => jwk(k[n], n)),
    }),
    [TD2]: JSON.stringify({ keys: [jwk(k.stranger256, 'ec256')] }),
  };
  const cases: Case[] = [];
  const add = (cls: string, token: string, audience: string[] = [AUD]) =>
    cases.push({ id: `token/${cls}/${cases.length}`, kind: 'token', class: `token/${cls}`, token, jwks, audience });
  const claims = (extra: Record<string, unknown> = {}) => ({
    sub: SUB,
    aud: [AUD],
    exp: now + 3600,
    iat: now - 60,
    ...extra,
  });
  const hdr = (alg: string, extra: Record<string, unknown> = {}) => ({
    alg,
    kid: ALG_KEY[alg] ?? 'ec256',
    typ: 'JWT',
    ...extra,
  });
  const keyOf = (alg: string) => k[ALG_KEY[alg] ?? 'ec256'];
  const ALGS = Object.keys(ALG_KEY);

  // Every allowed algorithm with each audience and type form.
  for (const alg of ALGS) {
    add('valid', jws(hdr(alg), claims(), keyOf(alg)));
    add('valid-aud-string', jws(hdr(alg), claims({ aud: AUD }), keyOf(alg)));
    add('valid-aud-several', jws(hdr(alg), claims({ aud: ['other', AUD, 'third'] }), keyOf(alg)));
    add('valid-typ-jose', jws(hdr(alg, { typ: 'JOSE' }), claims(), keyOf(alg)));
    add('valid-no-typ', jws(hdr(alg, { typ: undefined }), claims(), keyOf(alg)));
    add(
      'valid-extra-claims',
      jws(hdr(alg), claims({ iss: 'https://issuer', jti: `j${alg}`, custom: { a: [1, 2] } }), keyOf(alg)),
    );
    add(
      'bad-signature',
      (() => {
        const t = jws(hdr(alg), claims(), keyOf(alg));
        const [h, p, s] = t.split('.');
        const sig = Buffer.from(s as string, 'base64url');
        const at = rng.int(0, sig.length - 1);
        sig[at] = (sig[at] as number) ^ 0x01;
        return `${h}.${p}.${sig.toString('base64url')}`;
      })(),
    );
    add(
      'signed-by-other-key',
      jws(hdr(alg), claims(), alg.startsWith('E') ? k.stranger256 : k.strangerRsa, alg.startsWith('E') ? 'ES256' : alg),
    );
    add('empty-signature', `${jws(hdr(alg), claims(), keyOf(alg)).split('.').slice(0, 2).join('.')}.`);
    add('expired', jws(hdr(alg), claims({ exp: now - 3600 }), keyOf(alg)));
  }
  // Algorithms a JWT-SVID may not use, and algorithm/key mismatches.
  for (const [alg, key, kid] of [
    ['none', undefined, 'ec256'],
    ['None', undefined, 'ec256'],
    ['HS256', undefined, 'ec256'],
    ['HS384', undefined, 'rsa'],
    ['HS512', undefined, 'rsa'],
    ['EdDSA', k.ed, 'ed'],
    ['ES256K', k.ec256, 'ec256'],
    ['RS1', k.rsa, 'rsa'],
    ['', k.ec256, 'ec256'],
    ['es256', k.ec256, 'ec256'],
    ['RSA-OAEP', k.rsa, 'rsa'],
    ['A128KW', k.rsa, 'rsa'],
  ] as const) {
    add('forbidden-alg', jws({ alg, kid, typ: 'JWT' }, claims(), key));
  }
  add('missing-alg', jws({ kid: 'ec256', typ: 'JWT' }, claims(), k.ec256, 'ES256'));
  add('alg-not-string', jws({ alg: 256, kid: 'ec256' }, claims(), k.ec256, 'ES256'));
  add('alg-key-mismatch', jws(hdr('ES256', { kid: 'ec384' }), claims(), k.ec256));
  add('alg-key-mismatch', jws(hdr('ES384', { kid: 'ec256' }), claims(), k.ec384));
  add('alg-key-mismatch', jws(hdr('RS256', { kid: 'ec256' }), claims(), k.rsa));
  add('alg-key-mismatch', jws(hdr('ES256', { kid: 'rsa' }), claims(), k.ec256));
  add('alg-key-mismatch', jws(hdr('PS256', { kid: 'rsa' }), claims(), k.rsa, 'RS256'));
  add('ecdsa-der-signature', jws(hdr('ES256'), claims(), k.ec256, 'ES256-DER'));
  add('rsa-1024-key', jws(hdr('RS256', { kid: 'rsa1024' }), claims(), k.rsa1024));
  add('rsa-1024-key', jws(hdr('PS256', { kid: 'rsa1024' }), claims(), k.rsa1024));
  // Key IDs.
  add('kid-missing', jws(hdr('ES256', { kid: undefined }), claims(), k.ec256));
  add('kid-empty', jws(hdr('ES256', { kid: '' }), claims(), k.ec256));
  add('kid-unknown', jws(hdr('ES256', { kid: 'nope' }), claims(), k.ec256));
  add('kid-not-string', jws(hdr('ES256', { kid: 7 }), claims(), k.ec256));
  add('kid-case', jws(hdr('ES256', { kid: 'EC256' }), claims(), k.ec256));
  // Types.
  for (const typ of ['jwt', 'jose', 'at+jwt', 'JWS', '', ' JWT', 'application/jwt', 'wit+jwt']) {
    add('typ-other', jws(hdr('ES256', { typ }), claims(), k.ec256));
  }
  add('typ-not-string', jws(hdr('ES256', { typ: 1 }), claims(), k.ec256));
  add('typ-null', jws(hdr('ES256', { typ: null }), claims(), k.ec256));
  // Extra header parameters.
  const pub = k.ec256.export({ format: 'jwk' });
  delete (pub as { d?: string }).d;
  const extraHeaders: Array<[string, Record<string, unknown>]> = [
    ['header-jwk', { jwk: pub }],
    ['header-jku', { jku: 'https://example.org/jwks' }],
    ['header-x5u', { x5u: 'https://example.org/cert' }],
    ['header-x5c', { x5c: ['MIIBsjCCAVmgAwIBAgIUYWJj'] }],
    ['header-x5t', { x5t: 'dGh1bWI' }],
    ['header-cty', { cty: 'JWT' }],
    ['header-b64-true', { b64: true, crit: ['b64'] }],
    ['header-crit-unknown', { crit: ['exp'], exp: now + 3600 }],
    ['header-crit-empty', { crit: [] }],
    ['header-zip', { zip: 'DEF' }],
    ['header-private', { 'x-custom': 'v' }],
    ['header-enc', { enc: 'A128GCM' }],
  ];
  for (const [cls, extra] of extraHeaders) add(cls, jws(hdr('ES256', extra), claims(), k.ec256));
  add(
    'header-b64-false',
    (() => {
      const h = hdr('ES256', { b64: false, crit: ['b64'] });
      const payload = JSON.stringify(claims());
      const input = `${b64u(h)}.${payload}`;
      const sig = sign('sha256', Buffer.from(input), { key: k.ec256, dsaEncoding: 'ieee-p1363' });
      return `${b64u(h)}..${sig.toString('base64url')}`;
    })(),
  );
  // Audience variants.
  add('aud-mismatch', jws(hdr('ES256'), claims({ aud: ['other'] }), k.ec256));
  add('aud-missing', jws(hdr('ES256'), claims({ aud: undefined }), k.ec256));
  add('aud-empty-array', jws(hdr('ES256'), claims({ aud: [] }), k.ec256));
  add('aud-empty-string', jws(hdr('ES256'), claims({ aud: '' }), k.ec256));
  add('aud-non-string-member', jws(hdr('ES256'), claims({ aud: [AUD, 5] }), k.ec256));
  add('aud-null-member', jws(hdr('ES256'), claims({ aud: [AUD, null] }), k.ec256));
  add('aud-number', jws(hdr('ES256'), claims({ aud: 5 }), k.ec256));
  add('aud-object', jws(hdr('ES256'), claims({ aud: { a: AUD } }), k.ec256));
  add('aud-case', jws(hdr('ES256'), claims({ aud: [AUD.toUpperCase()] }), k.ec256));
  add('valid-expect-several', jws(hdr('ES256'), claims(), k.ec256), ['x', AUD]);
  add('aud-expect-other', jws(hdr('ES256'), claims(), k.ec256), ['x', 'y']);
  // Expiry, issued-at and not-before.
  for (const [cls, extra] of [
    ['exp-missing', { exp: undefined }],
    ['exp-null', { exp: null }],
    ['exp-string', { exp: String(now + 3600) }],
    ['exp-past-day', { exp: now - 86400 }],
    ['exp-zero', { exp: 0 }],
    ['exp-negative', { exp: -1 }],
    ['valid-exp-float', { exp: now + 3600.75 }],
    ['valid-exp-far', { exp: now + 10 * 365 * 86400 }],
    ['exp-huge', { exp: 1e17 }],
    ['exp-beyond-date', { exp: 9e15 }],
    ['exp-bool', { exp: true }],
    ['valid-exp-max-int64ish', { exp: 253402300799 }],
    ['iat-future', { iat: now + 3600 }],
    ['valid-iat-past', { iat: now - 86400 }],
    ['valid-iat-missing', { iat: undefined }],
    ['iat-string', { iat: String(now) }],
    ['iat-far-future', { iat: now + 365 * 86400 }],
    ['nbf-future', { nbf: now + 3600 }],
    ['valid-nbf-past', { nbf: now - 3600 }],
    ['nbf-string', { nbf: String(now) }],
    ['valid-nbf-float', { nbf: now - 3600.5 }],
  ] as Array<[string, Record<string, unknown>]>) {
    add(cls, jws(hdr('ES256'), claims(extra), k.ec256));
  }
  // Subjects.
  for (const sub of [
    undefined,
    '',
    'workload',
    'spiffe://',
    `spiffe://${TD}`,
    `spiffe://${TD}/`,
    `SPIFFE://${TD}/w`,
    `spiffe://${TD.toUpperCase()}/w`,
    `spiffe://${TD}/a//b`,
    `spiffe://${TD}/./a`,
    `spiffe://${TD}/a?b`,
    `spiffe://${TD}:80/a`,
    `https://${TD}/a`,
    5,
    null,
    [SUB],
    `spiffe://nobundle.test/w`,
    `spiffe://${TD}/w%20x`,
    ` ${SUB}`,
  ]) {
    add(sub === `spiffe://${TD}` ? 'valid-sub-no-path' : 'sub-malformed', jws(hdr('ES256'), claims({ sub }), k.ec256));
  }
  add('sub-too-long', jws(hdr('ES256'), claims({ sub: `spiffe://${TD}/${'a'.repeat(2100)}` }), k.ec256));
  add('sub-other-trust-domain', jws(hdr('ES256'), claims({ sub: `spiffe://${TD2}/w` }), k.ec256));
  add('valid-sub-other-trust-domain', jws(hdr('ES256'), claims({ sub: `spiffe://${TD2}/w` }), k.stranger256));
  // Serialization.
  const good = jws(hdr('ES256'), claims(), k.ec256);
  const [gh, gp, gs] = good.split('.') as [string, string, string];
  for (const [cls, token] of [
    ['two-parts', `${gh}.${gp}`],
    ['four-parts', `${good}.x`],
    ['five-parts', `${good}.x.y`],
    ['empty', ''],
    ['garbage', 'invalid token'],
    ['padding', `${gh}=.${gp}.${gs}`],
    ['whitespace', ` ${good}`],
    ['trailing-newline', `${good}\n`],
    ['standard-base64', good.replace(/-/g, '+').replace(/_/g, '/')],
    ['header-not-json', `${b64u('not json')}.${gp}.${gs}`],
    ['payload-not-json', `${gh}.${b64u('nope')}.${gs}`],
    ['payload-array', jws(hdr('ES256'), [claims()], k.ec256)],
    ['header-array', `${b64u([hdr('ES256')])}.${gp}.${gs}`],
    ['json-serialization', JSON.stringify({ payload: gp, protected: gh, signature: gs })],
    ['signature-not-base64url', `${gh}.${gp}.${gs.slice(0, -2)}*!`],
  ] as const) {
    add(cls, token);
  }
  // Duplicate member names: JSON.parse and Go's decoder both keep the last one.
  const dupPayload = `{"sub":"spiffe://${TD}/first","aud":["${AUD}"],"exp":${now + 3600},"sub":"spiffe://${TD}/second"}`;
  const dupInput = `${b64u(hdr('ES256'))}.${Buffer.from(dupPayload).toString('base64url')}`;
  add(
    'duplicate-claim',
    `${dupInput}.${sign('sha256', Buffer.from(dupInput), { key: k.ec256, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`,
  );
  // Random claim sets over the allowed algorithms (valid and not), for volume.
  for (let i = 0; i < 40; i++) {
    const alg = rng.pick(ALGS);
    const extra: Record<string, unknown> = {};
    if (rng.next() < 0.3) extra.aud = rng.pick([AUD, ['a', AUD], ['a'], []]);
    if (rng.next() < 0.3) extra.exp = now + rng.pick([-7200, -3600, 3600, 7200]);
    if (rng.next() < 0.2) extra.nbf = now + rng.pick([-7200, 7200]);
    if (rng.next() < 0.2) extra.iat = now + rng.pick([-7200, 7200]);
    add('random', jws(hdr(alg), claims(extra), keyOf(alg)));
  }
  return cases;
}
