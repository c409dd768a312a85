// JWT-SVID standard: validation against JWT bundles, and the insecure (display-only) parser.
import assert from 'node:assert/strict';
import { constants, createHmac, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { before, describe, test } from 'node:test';
import {
  insecureParseJwtSvid,
  JwtBundle,
  JwtBundleSet,
  JwtSvid,
  JwtSvidError,
  parseAndValidateJwtSvid,
  SpiffeBundle,
  type SpiffeErrorCode,
} from '@spiffe-ts/core';
import { DevCa } from '@spiffe-ts/dev-server';

const ID = 'spiffe://example.org/workload';
const AUD = 'spiffe://example.org/api';

let caA: DevCa; // example.org
let caB: DevCa; // other.org
let keyA: { kid: string; privateKey: KeyObject; publicKey: KeyObject };
let keyB: { kid: string; privateKey: KeyObject; publicKey: KeyObject };
let rsa: { privateKey: KeyObject; publicKey: KeyObject };
let ec384: { privateKey: KeyObject; publicKey: KeyObject };
let attacker: { privateKey: KeyObject; publicKey: KeyObject };
let ed: { privateKey: KeyObject; publicKey: KeyObject };
let bundles: JwtBundleSet;

before(async () => {
  [caA, caB] = await Promise.all([
    DevCa.create({ trustDomain: 'example.org' }),
    DevCa.create({ trustDomain: 'other.org' }),
  ]);
  keyA = caA.jwtSigningKey;
  keyB = caB.jwtSigningKey;
  rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  ec384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  ed = generateKeyPairSync('ed25519');
  bundles = new JwtBundleSet([
    caA
      .jwtBundle()
      .withAuthority('rsa', rsa.publicKey)
      .withAuthority('ec384', ec384.publicKey)
      .withAuthority('ed', ed.publicKey),
    caB.jwtBundle(),
  ]);
});

const nowSec = () => Math.floor(Date.now() / 1000);
const b64u = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** Signs a compact JWS by hand, so tests control every header and claim (and can sign with anything). */
function signJwt(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  key?: KeyObject | Buffer | string,
): string {
  const input = `${b64u(header)}.${b64u(payload)}`;
  const data = Buffer.from(input);
  const alg = String(header.alg);
  let sig: Buffer;
  if (alg.startsWith('HS'))
    sig = createHmac(`sha${alg.slice(2)}`, key as Buffer | string)
      .update(data)
      .digest();
  else if (alg.startsWith('ES'))
    sig = sign(`sha${alg.slice(2)}`, data, { key: key as KeyObject, dsaEncoding: 'ieee-p1363' });
  else if (alg.startsWith('RS')) sig = sign(`sha${alg.slice(2)}`, data, key as KeyObject);
  else if (alg.startsWith('PS')) {
    const bits = Number(alg.slice(2));
    sig = sign(`sha${bits}`, data, {
      key: key as KeyObject,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: bits / 8,
    });
  } else if (alg === 'EdDSA') sig = sign(null, data, key as KeyObject);
  else sig = Buffer.alloc(0);
  return `${input}.${sig.toString('base64url')}`;
}

function claims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = nowSec();
  return { sub: ID, aud: [AUD], iat: now, exp: now + 300, ...extra };
}

/** A token signed with example.org's current JWT key (ES256). */
function tokenA(extraClaims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): string {
  return signJwt({ alg: 'ES256', kid: keyA.kid, typ: 'JWT', ...header }, claims(extraClaims), keyA.privateKey);
}

async function rejects(
  token: string,
  code: SpiffeErrorCode,
  options: { audience?: string | string[]; now?: Date; clockTolerance?: number; source?: JwtBundleSet } = {},
): Promise<void> {
  const { audience = AUD, source = bundles, ...rest } = options;
  await assert.rejects(parseAndValidateJwtSvid(token, source, audience, rest), (err: unknown) => {
    assert.ok(err instanceof JwtSvidError, `expected JwtSvidError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

function insecureThrows(token: unknown, code: SpiffeErrorCode): void {
  assert.throws(
    () => insecureParseJwtSvid(token as string),
    (err: unknown) => err instanceof JwtSvidError && err.code === code,
    `${String(token).slice(0, 40)}: ${code}`,
  );
}

function tamper(part: string): string {
  // Change a character in the middle (the last character may only carry padding bits).
  const i = Math.floor(part.length / 2);
  return part.slice(0, i) + (part[i] === 'A' ? 'B' : 'A') + part.slice(i + 1);
}

describe('parseAndValidateJwtSvid: valid tokens', () => {
  test('a token from the dev CA', async () => {
    const issued = await caA.issueJwtSvid(ID, AUD);
    const svid = await parseAndValidateJwtSvid(issued.token, bundles, AUD);
    assert.ok(svid instanceof JwtSvid);
    assert.equal(svid.id.toString(), ID);
    assert.deepEqual(svid.audience, [AUD]);
    assert.equal(svid.claims.sub, ID);
    assert.equal(svid.token, issued.token);
    assert.equal(String(svid), issued.token);
    assert.equal(svid.expiresAt.getTime(), (svid.claims.exp as number) * 1000);
    assert.ok(svid.expiresAt.getTime() > Date.now());
    assert.ok(Object.isFrozen(svid));
    assert.ok(Object.isFrozen(svid.claims));
    assert.ok(Object.isFrozen(svid.audience));
  });

  test('a JwtSvid built by hand copies its input: the caller’s objects stay the caller’s', async () => {
    const issued = await caA.issueJwtSvid(ID, AUD);
    const claims = { ...issued.claims };
    const audience = [AUD];
    const svid = new JwtSvid({ id: issued.id, audience, expiresAt: issued.expiresAt, claims, token: issued.token });
    assert.ok(!Object.isFrozen(claims) && !Object.isFrozen(audience));
    claims.sub = 'spiffe://example.org/changed';
    audience.push('other');
    assert.equal(svid.claims.sub, ID);
    assert.deepEqual(svid.audience, [AUD]);
  });

  test('a token of another trust domain, validated with that domain’s bundle', async () => {
    const issued = await caB.issueJwtSvid('spiffe://other.org/x', AUD);
    assert.equal((await parseAndValidateJwtSvid(issued.token, bundles, AUD)).id.toString(), 'spiffe://other.org/x');
  });

  test('every supported algorithm: ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512', async () => {
    const cases: Array<[string, string, KeyObject]> = [
      ['ES256', keyA.kid, keyA.privateKey],
      ['ES384', 'ec384', ec384.privateKey],
      ['RS256', 'rsa', rsa.privateKey],
      ['RS384', 'rsa', rsa.privateKey],
      ['RS512', 'rsa', rsa.privateKey],
      ['PS256', 'rsa', rsa.privateKey],
      ['PS384', 'rsa', rsa.privateKey],
      ['PS512', 'rsa', rsa.privateKey],
    ];
    for (const [alg, kid, key] of cases) {
      const token = signJwt({ alg, kid, typ: 'JWT' }, claims({ alg }), key);
      const svid = await parseAndValidateJwtSvid(token, bundles, AUD);
      assert.equal(svid.claims.alg, alg);
    }
  });

  test('typ may be absent or JOSE', async () => {
    const noTyp = signJwt({ alg: 'ES256', kid: keyA.kid }, claims(), keyA.privateKey);
    assert.equal((await parseAndValidateJwtSvid(noTyp, bundles, AUD)).id.toString(), ID);
    assert.equal((await parseAndValidateJwtSvid(tokenA({}, { typ: 'JOSE' }), bundles, AUD)).id.toString(), ID);
  });

  test('aud as a string claim', async () => {
    const svid = await parseAndValidateJwtSvid(tokenA({ aud: AUD }), bundles, AUD);
    assert.deepEqual(svid.audience, [AUD]);
  });

  test('one of several expected audiences matches one of several token audiences', async () => {
    const token = tokenA({ aud: ['first', AUD, 'third'] });
    const svid = await parseAndValidateJwtSvid(token, bundles, ['unrelated', AUD]);
    assert.deepEqual(svid.audience, ['first', AUD, 'third']);
    assert.equal((await parseAndValidateJwtSvid(token, bundles, 'third')).id.toString(), ID);
    await rejects(token, 'JWTSVID_AUDIENCE_MISMATCH', { audience: ['unrelated', 'other'] });
  });

  test('works with a SpiffeBundle as the source', async () => {
    const source = new SpiffeBundle({
      trustDomain: 'example.org',
      jwtAuthorities: caA.jwtBundle().authorities.values(),
    });
    assert.equal((await parseAndValidateJwtSvid(tokenA(), source, AUD)).id.toString(), ID);
  });
});

describe('parseAndValidateJwtSvid: time', () => {
  test('expired: JWTSVID_EXPIRED', async () => {
    await rejects(tokenA({ exp: nowSec() - 600 }), 'JWTSVID_EXPIRED');
    const issued = await caA.issueJwtSvid(ID, AUD, { expiresAt: new Date(Date.now() - 600_000) });
    await rejects(issued.token, 'JWTSVID_EXPIRED');
  });

  test('the `now` option moves the validation time', async () => {
    const token = tokenA();
    await rejects(token, 'JWTSVID_EXPIRED', { now: new Date(Date.now() + 3600_000) });
    const svid = await parseAndValidateJwtSvid(token, bundles, AUD, { now: new Date(Date.now() + 60_000) });
    assert.equal(svid.id.toString(), ID);
  });

  test('clock tolerance for exp: 30 s by default, configurable', async () => {
    const recent = tokenA({ exp: nowSec() - 10 });
    assert.equal((await parseAndValidateJwtSvid(recent, bundles, AUD)).id.toString(), ID);
    await rejects(recent, 'JWTSVID_EXPIRED', { clockTolerance: 0 });
    const older = tokenA({ exp: nowSec() - 120 });
    await rejects(older, 'JWTSVID_EXPIRED');
    assert.equal((await parseAndValidateJwtSvid(older, bundles, AUD, { clockTolerance: 300 })).id.toString(), ID);
  });

  test('nbf in the future: JWTSVID_NOT_YET_VALID, with the same tolerance', async () => {
    await rejects(tokenA({ nbf: nowSec() + 600 }), 'JWTSVID_NOT_YET_VALID');
    const soon = tokenA({ nbf: nowSec() + 10 });
    assert.equal((await parseAndValidateJwtSvid(soon, bundles, AUD)).id.toString(), ID);
    await rejects(soon, 'JWTSVID_NOT_YET_VALID', { clockTolerance: 0 });
    assert.equal((await parseAndValidateJwtSvid(tokenA({ nbf: nowSec() - 10 }), bundles, AUD)).id.toString(), ID);
  });

  test('missing exp: JWTSVID_MISSING_EXP', async () => {
    const issued = await caA.issueJwtSvid(ID, AUD, { expiresAt: null });
    await rejects(issued.token, 'JWTSVID_MISSING_EXP');
    await rejects(tokenA({ exp: undefined }), 'JWTSVID_MISSING_EXP');
  });

  test('exp that is not a number: JWTSVID_MALFORMED', async () => {
    await rejects(tokenA({ exp: String(nowSec() + 300) }), 'JWTSVID_MALFORMED');
    await rejects(tokenA({ exp: null }), 'JWTSVID_MALFORMED');
  });
});

describe('parseAndValidateJwtSvid: audience', () => {
  test('wrong aud: JWTSVID_AUDIENCE_MISMATCH', async () => {
    await rejects(tokenA({ aud: ['someone-else'] }), 'JWTSVID_AUDIENCE_MISMATCH');
    await rejects(tokenA({ aud: 'someone-else' }), 'JWTSVID_AUDIENCE_MISMATCH');
    const issued = await caA.issueJwtSvid(ID, 'someone-else');
    await rejects(issued.token, 'JWTSVID_AUDIENCE_MISMATCH');
  });

  test('no aud or an empty aud: JWTSVID_AUDIENCE_MISMATCH', async () => {
    await rejects(tokenA({ aud: undefined }), 'JWTSVID_AUDIENCE_MISMATCH');
    await rejects(tokenA({ aud: [] }), 'JWTSVID_AUDIENCE_MISMATCH');
  });

  test('audience matching is exact', async () => {
    await rejects(tokenA({ aud: [`${AUD}/sub`] }), 'JWTSVID_AUDIENCE_MISMATCH');
    await rejects(tokenA({ aud: [AUD.toUpperCase()] }), 'JWTSVID_AUDIENCE_MISMATCH');
  });

  test('an expected audience is required', async () => {
    await rejects(tokenA(), 'JWTSVID_AUDIENCE_MISMATCH', { audience: [] });
    await rejects(tokenA(), 'JWTSVID_AUDIENCE_MISMATCH', { audience: '' });
    await rejects(tokenA({ aud: [''] }), 'JWTSVID_AUDIENCE_MISMATCH', { audience: [''] });
  });
});

describe('parseAndValidateJwtSvid: keys and trust domains', () => {
  test('unknown kid: JWTSVID_UNKNOWN_KID', async () => {
    await rejects(tokenA({}, { kid: 'no-such-key' }), 'JWTSVID_UNKNOWN_KID');
  });

  test('kid of another trust domain: JWTSVID_UNKNOWN_KID', async () => {
    // other.org signs a token claiming an example.org subject, with its own (valid, trusted) key.
    const forged = await caB.issueJwtSvid(ID, AUD);
    await rejects(forged.token, 'JWTSVID_UNKNOWN_KID');
    await rejects(signJwt({ alg: 'ES256', kid: keyB.kid }, claims(), keyB.privateKey), 'JWTSVID_UNKNOWN_KID');
  });

  test('example.org’s kid with other.org’s key: JWTSVID_BAD_SIGNATURE', async () => {
    await rejects(signJwt({ alg: 'ES256', kid: keyA.kid }, claims(), keyB.privateKey), 'JWTSVID_BAD_SIGNATURE');
  });

  test('another trust domain publishing the same kid does not make its key valid for example.org', async () => {
    const colliding = new JwtBundleSet([
      caA.jwtBundle(),
      JwtBundle.fromKeys('other.org', { [keyA.kid]: keyB.publicKey }),
    ]);
    const forged = signJwt({ alg: 'ES256', kid: keyA.kid }, claims(), keyB.privateKey);
    await rejects(forged, 'JWTSVID_BAD_SIGNATURE', { source: colliding });
    // ...while the same token is fine for other.org's subject.
    const legit = signJwt({ alg: 'ES256', kid: keyA.kid }, claims({ sub: 'spiffe://other.org/x' }), keyB.privateKey);
    assert.equal((await parseAndValidateJwtSvid(legit, colliding, AUD)).id.toString(), 'spiffe://other.org/x');
  });

  test('no bundle for the subject’s trust domain: JWTSVID_UNKNOWN_KID', async () => {
    await rejects(tokenA({ sub: 'spiffe://third.org/x' }), 'JWTSVID_UNKNOWN_KID');
    await rejects(tokenA(), 'JWTSVID_UNKNOWN_KID', { source: new JwtBundleSet([caB.jwtBundle()]) });
    await rejects(tokenA(), 'JWTSVID_UNKNOWN_KID', { source: new JwtBundleSet() });
  });

  test('missing kid: JWTSVID_MISSING_KID', async () => {
    await rejects(tokenA({}, { kid: undefined }), 'JWTSVID_MISSING_KID');
    await rejects(tokenA({}, { kid: '' }), 'JWTSVID_MISSING_KID');
    await rejects(tokenA({}, { kid: 42 }), 'JWTSVID_MISSING_KID');
  });

  test('a key embedded in the header (jwk) is refused (JWT-SVID header profile): JWTSVID_MALFORMED', async () => {
    const jwk = attacker.publicKey.export({ format: 'jwk' });
    // Signed by the bundle key: still refused, the header is outside the profile.
    await rejects(tokenA({}, { jwk }), 'JWTSVID_MALFORMED');
    // Signed by the embedded key: refused.
    const forged = signJwt({ alg: 'ES256', kid: keyA.kid, jwk }, claims(), attacker.privateKey);
    await rejects(forged, 'JWTSVID_MALFORMED');
  });
});

describe('parseAndValidateJwtSvid: algorithms', () => {
  test('alg none (hand-crafted): JWTSVID_UNSUPPORTED_ALG', async () => {
    const body = `${b64u({ alg: 'none', typ: 'JWT', kid: keyA.kid })}.${b64u(claims())}`;
    await rejects(`${body}.`, 'JWTSVID_UNSUPPORTED_ALG');
    // ...even with a signature part attached, and in other spellings.
    await rejects(`${body}.${tokenA().split('.')[2]}`, 'JWTSVID_UNSUPPORTED_ALG');
    for (const alg of ['None', 'NONE', 'nOnE', '', 'es256', 42, null]) {
      await rejects(`${b64u({ alg, kid: keyA.kid })}.${b64u(claims())}.`, 'JWTSVID_UNSUPPORTED_ALG');
    }
    await rejects(`${b64u({ kid: keyA.kid })}.${b64u(claims())}.`, 'JWTSVID_UNSUPPORTED_ALG');
  });

  test('HS256 signed with the bundle’s public key as the HMAC secret: JWTSVID_UNSUPPORTED_ALG', async () => {
    const secrets: Array<[string, Buffer | string]> = [
      ['SPKI PEM', keyA.publicKey.export({ format: 'pem', type: 'spki' }).toString()],
      ['SPKI DER', keyA.publicKey.export({ format: 'der', type: 'spki' })],
      ['JWK JSON', JSON.stringify(caA.jwtBundle().findAuthority(keyA.kid)?.jwk)],
      ['JWK JSON (as exported)', JSON.stringify(keyA.publicKey.export({ format: 'jwk' }))],
      ['RSA SPKI PEM', rsa.publicKey.export({ format: 'pem', type: 'spki' }).toString()],
      ['RSA PKCS#1 PEM', rsa.publicKey.export({ format: 'pem', type: 'pkcs1' }).toString()],
    ];
    for (const [label, secret] of secrets) {
      for (const alg of ['HS256', 'HS384', 'HS512']) {
        const kid = label.startsWith('RSA') ? 'rsa' : keyA.kid;
        const token = signJwt({ alg, kid, typ: 'JWT' }, claims(), secret);
        await rejects(token, 'JWTSVID_UNSUPPORTED_ALG');
      }
    }
  });

  test('algorithms outside the JWT-SVID list: JWTSVID_UNSUPPORTED_ALG', async () => {
    await rejects(signJwt({ alg: 'EdDSA', kid: 'ed' }, claims(), ed.privateKey), 'JWTSVID_UNSUPPORTED_ALG');
    for (const alg of ['ES256K', 'RSA-OAEP', 'dir', 'A128KW']) {
      await rejects(`${b64u({ alg, kid: keyA.kid })}.${b64u(claims())}.c2ln`, 'JWTSVID_UNSUPPORTED_ALG');
    }
  });

  test('header alg that does not fit the key type: JWTSVID_BAD_SIGNATURE', async () => {
    // RS256 claimed for an EC key, signed with some RSA key.
    await rejects(signJwt({ alg: 'RS256', kid: keyA.kid }, claims(), rsa.privateKey), 'JWTSVID_BAD_SIGNATURE');
    // ES384 claimed for a P-256 key.
    await rejects(signJwt({ alg: 'ES384', kid: keyA.kid }, claims(), ec384.privateKey), 'JWTSVID_BAD_SIGNATURE');
    // ES256 claimed for the RSA key.
    await rejects(signJwt({ alg: 'ES256', kid: 'rsa' }, claims(), keyA.privateKey), 'JWTSVID_BAD_SIGNATURE');
    // A failed import does not poison the key for its right algorithm.
    assert.equal((await parseAndValidateJwtSvid(tokenA(), bundles, AUD)).id.toString(), ID);
  });
});

describe('parseAndValidateJwtSvid: integrity and shape', () => {
  test('tampered signature: JWTSVID_BAD_SIGNATURE', async () => {
    const [h, p, s] = tokenA().split('.') as [string, string, string];
    await rejects(`${h}.${p}.${tamper(s)}`, 'JWTSVID_BAD_SIGNATURE');
    // A valid signature of another token.
    const other = tokenA({ jti: 'other' }).split('.')[2];
    await rejects(`${h}.${p}.${other}`, 'JWTSVID_BAD_SIGNATURE');
    // Truncated or empty signature.
    await rejects(`${h}.${p}.${s.slice(0, 20)}`, 'JWTSVID_BAD_SIGNATURE');
    await rejects(`${h}.${p}.`, 'JWTSVID_BAD_SIGNATURE');
  });

  test('tampered payload: JWTSVID_BAD_SIGNATURE', async () => {
    const [h, p, s] = tokenA().split('.') as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
    for (const change of [
      { sub: 'spiffe://example.org/admin' },
      { aud: [AUD, 'extra'] },
      { exp: payload.exp + 3600 },
      { admin: true },
    ]) {
      await rejects(`${h}.${b64u({ ...payload, ...change })}.${s}`, 'JWTSVID_BAD_SIGNATURE');
    }
  });

  test('tampered header: JWTSVID_BAD_SIGNATURE', async () => {
    const [h, p, s] = tokenA().split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString());
    await rejects(`${b64u({ ...header, typ: 'JOSE' })}.${p}.${s}`, 'JWTSVID_BAD_SIGNATURE');
  });

  test('bad typ: JWTSVID_BAD_TYP', async () => {
    for (const typ of ['at+jwt', 'jwt', 'JWS', '', 1]) {
      await rejects(tokenA({}, { typ }), 'JWTSVID_BAD_TYP');
    }
  });

  test('sub that is not a SPIFFE ID: JWTSVID_BAD_SUBJECT', async () => {
    for (const sub of [
      'https://example.org/workload',
      'spiffe://example.org/',
      'spiffe://EXAMPLE.org/x',
      'workload',
      '',
      7,
    ]) {
      await rejects(tokenA({ sub }), 'JWTSVID_BAD_SUBJECT');
    }
    await rejects(tokenA({ sub: undefined }), 'JWTSVID_BAD_SUBJECT');
  });

  test('malformed tokens: JWTSVID_MALFORMED', async () => {
    const good = tokenA();
    const [h, p, s] = good.split('.') as [string, string, string];
    const cases: unknown[] = [
      '',
      'garbage',
      'a.b',
      `${h}.${p}`,
      'a.b.c',
      `${h}.${p}.${s}.extra`,
      `${h}.${p}.${s}.x.y`,
      '..',
      '...',
      `${b64u('not json')}.${p}.${s}`,
      `${h}.${b64u('not json')}.${s}`,
      `${h}.${b64u([1, 2])}.${s}`,
      `${h}.${b64u('"a string"')}.${s}`,
      `${b64u([])}.${p}.${s}`,
      `${h}.!!!.${s}`,
      `${h}A.${p}.${s}`, // a base64url length no encoder produces (Buffer would drop the extra character)
      `${h}.${p}A.${s}`,
      `${h}=.${p}.${s}`,
      `${h}.${p}.${s}!!`,
      undefined,
      null,
      42,
      {},
    ];
    for (const token of cases) {
      await rejects(token as string, 'JWTSVID_MALFORMED');
    }
  });

  test('errors are JwtSvidError with a name', async () => {
    await assert.rejects(parseAndValidateJwtSvid('garbage', bundles, AUD), {
      name: 'JwtSvidError',
      code: 'JWTSVID_MALFORMED',
    });
  });
});

describe('insecureParseJwtSvid', () => {
  test('returns the claims without checking signature, audience, expiry or issuer', () => {
    const exp = nowSec() - 3600;
    const [h, p, s] = tokenA({ exp, aud: ['nobody'], extra: 'x' }).split('.') as [string, string, string];
    const tampered = `${h}.${p}.${tamper(s)}`;
    const svid = insecureParseJwtSvid(tampered);
    assert.equal(svid.id.toString(), ID);
    assert.deepEqual(svid.audience, ['nobody']);
    assert.equal(svid.expiresAt.getTime(), exp * 1000);
    assert.equal(svid.claims.extra, 'x');
    assert.equal(svid.token, tampered);
    // Unknown kid and an unknown trust domain, too.
    const stranger = signJwt(
      { alg: 'ES256', kid: 'whatever' },
      claims({ sub: 'spiffe://third.org/x' }),
      attacker.privateKey,
    );
    assert.equal(insecureParseJwtSvid(stranger).id.toString(), 'spiffe://third.org/x');
  });

  test('still rejects garbage and tokens that are not JWT-SVIDs', () => {
    insecureThrows('garbage', 'JWTSVID_MALFORMED');
    insecureThrows('a.b', 'JWTSVID_MALFORMED');
    const [h, p, s] = tokenA().split('.') as [string, string, string];
    insecureThrows(`${h}A.${p}.${s}`, 'JWTSVID_MALFORMED'); // no base64url length (one character over)
    insecureThrows(`${h}.${p}A.${s}`, 'JWTSVID_MALFORMED');
    insecureThrows('', 'JWTSVID_MALFORMED');
    insecureThrows(undefined, 'JWTSVID_MALFORMED');
    insecureThrows(`${b64u({ alg: 'none' })}.${b64u(claims())}.`, 'JWTSVID_UNSUPPORTED_ALG');
    insecureThrows(signJwt({ alg: 'HS256' }, claims(), 'secret'), 'JWTSVID_UNSUPPORTED_ALG');
    insecureThrows(tokenA({ exp: undefined }), 'JWTSVID_MISSING_EXP');
    insecureThrows(tokenA({ sub: 'https://example.org' }), 'JWTSVID_BAD_SUBJECT');
    insecureThrows(tokenA({}, { typ: 'at+jwt' }), 'JWTSVID_BAD_TYP');
  });
});

describe('issue #21: JWT-SVID profile checks', () => {
  test('header parameters outside alg/kid/typ are refused (jwk, x5c, x5u, jku, b64, crit): JWTSVID_MALFORMED', async () => {
    const embedded = { ...(keyA.publicKey.export({ format: 'jwk' }) as Record<string, unknown>) };
    const extras: Array<Record<string, unknown>> = [
      { jwk: embedded },
      { x5c: ['MIIB'] },
      { x5u: 'https://attacker.example/cert.pem' },
      { jku: 'https://attacker.example/jwks.json' },
      { b64: false, crit: ['b64'] },
      { crit: ['exp'] },
      { cty: 'JWT' },
    ];
    for (const extra of extras) {
      const token = tokenA({}, extra);
      await rejects(token, 'JWTSVID_MALFORMED');
      insecureThrows(token, 'JWTSVID_MALFORMED');
    }
    // The three allowed parameters still pass.
    assert.equal((await parseAndValidateJwtSvid(tokenA(), bundles, AUD)).id.toString(), ID);
  });

  test('aud arrays with non-string members are refused: JWTSVID_MALFORMED', async () => {
    await rejects(tokenA({ aud: [AUD, 42] }), 'JWTSVID_MALFORMED');
    await rejects(tokenA({ aud: [AUD, null] }), 'JWTSVID_MALFORMED');
    await rejects(tokenA({ aud: [AUD, { a: 1 }] }), 'JWTSVID_MALFORMED');
    insecureThrows(tokenA({ aud: [AUD, 42] }), 'JWTSVID_MALFORMED');
  });

  test('an exp too large for a Date is a typed error, never an Invalid Date', async () => {
    for (const exp of [1e20, 8.64e12 + 1, Number.MAX_SAFE_INTEGER]) {
      await rejects(tokenA({ exp }), 'JWTSVID_MALFORMED');
      insecureThrows(tokenA({ exp }), 'JWTSVID_MALFORMED');
    }
    // The largest representable expiry still gives a valid Date.
    const svid = insecureParseJwtSvid(tokenA({ exp: 8.64e12 }));
    assert.equal(svid.expiresAt.getTime(), 8.64e15);
  });

  test('an iat in the future beyond the clock tolerance is refused: JWTSVID_NOT_YET_VALID', async () => {
    await rejects(tokenA({ iat: nowSec() + 3600, exp: nowSec() + 7200 }), 'JWTSVID_NOT_YET_VALID');
    await rejects(tokenA({ iat: nowSec() + 60, exp: nowSec() + 7200 }), 'JWTSVID_NOT_YET_VALID', {
      clockTolerance: 30,
    });
    // Within the tolerance: accepted.
    const ok = await parseAndValidateJwtSvid(tokenA({ iat: nowSec() + 10 }), bundles, AUD);
    assert.equal(ok.id.toString(), ID);
  });
});
