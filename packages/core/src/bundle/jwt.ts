import { createHash, createPublicKey, type JsonWebKey, type KeyObject, X509Certificate } from 'node:crypto';
import { BundleError } from '../errors.js';
import { FrozenMap } from '../internal/frozen-map.js';
import { TrustDomain, toTrustDomain } from '../spiffeid/id.js';
import { type JwtBundleSource } from './source.js';
import { notFound } from './x509.js';

/** A JWT authority: its key ID, the public key, and the JWK it came from. */
export interface JwtAuthority {
  /** The key ID (`kid`) JWT-SVIDs name in their header. */
  readonly keyId: string;
  /** The public key that verifies their signatures. */
  readonly publicKey: KeyObject;
  /** The key as a public JWK. */
  readonly jwk: JsonWebKey;
}

export function importJwk(jwk: JsonWebKey, where: string): KeyObject {
  if (jwk.kty !== 'RSA' && jwk.kty !== 'EC' && jwk.kty !== 'OKP') {
    throw new BundleError('BUNDLE_INVALID', `${where}: unsupported key type "${String(jwk.kty)}"`);
  }
  if ('d' in jwk && jwk.d !== undefined) {
    throw new BundleError('BUNDLE_INVALID', `${where}: private key material in a bundle`);
  }
  try {
    return createPublicKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    throw new BundleError('BUNDLE_INVALID', `${where}: invalid JWK: ${(err as Error).message}`, { cause: err });
  }
}

export function publicJwk(key: KeyObject, keyId: string): JsonWebKey {
  return { ...key.export({ format: 'jwk' }), kid: keyId };
}

/** The JWT authorities (signing keys by key ID) of one trust domain. Immutable. */
export class JwtBundle implements JwtBundleSource {
  /** The trust domain whose JWT-SVIDs these keys verify. */
  readonly trustDomain: TrustDomain;
  /** The authorities by key ID. */
  readonly authorities: ReadonlyMap<string, JwtAuthority>;

  /** A bundle of these authorities. Throws a BundleError (`BUNDLE_INVALID`) on an empty key ID. */
  constructor(trustDomain: TrustDomain | string, authorities: Iterable<JwtAuthority> = []) {
    this.trustDomain = toTrustDomain(trustDomain);
    const map = new Map<string, JwtAuthority>();
    for (const a of authorities) {
      if (typeof a.keyId !== 'string' || a.keyId === '') {
        throw new BundleError('BUNDLE_INVALID', 'JWT authority key ID cannot be empty');
      }
      map.set(a.keyId, Object.freeze({ ...a }));
    }
    this.authorities = new FrozenMap(map);
    Object.freeze(this);
  }

  /** Parses a JWKS document (as FetchJWTBundles returns). Every key needs a `kid`. */
  static parse(trustDomain: TrustDomain | string, jwks: string | Uint8Array | object): JwtBundle {
    const doc = parseJsonObject(jwks, 'JWT bundle');
    const keys = (doc as { keys?: unknown }).keys;
    if (keys === undefined) return new JwtBundle(trustDomain, []);
    if (!Array.isArray(keys)) throw new BundleError('BUNDLE_INVALID', 'JWKS "keys" must be an array');
    const authorities: JwtAuthority[] = [];
    keys.forEach((k: unknown, i) => {
      const a = jwtAuthorityFromJwk(k, `JWKS key ${i}`);
      if (a) authorities.push(a);
    });
    return new JwtBundle(trustDomain, authorities);
  }

  /** Builds a bundle from public keys by key ID. Throws a BundleError (`BUNDLE_INVALID`) on an empty key ID. */
  static fromKeys(trustDomain: TrustDomain | string, keys: Record<string, KeyObject>): JwtBundle {
    return new JwtBundle(
      trustDomain,
      Object.entries(keys).map(([keyId, publicKey]) => ({ keyId, publicKey, jwk: publicJwk(publicKey, keyId) })),
    );
  }

  /** The authority with this key ID, or undefined. */
  findAuthority(keyId: string): JwtAuthority | undefined {
    return this.authorities.get(keyId);
  }

  /** A new bundle with this key added (replacing any key with the same ID); this bundle is unchanged. */
  withAuthority(keyId: string, publicKey: KeyObject): JwtBundle {
    return new JwtBundle(this.trustDomain, [
      ...this.authorities.values(),
      { keyId, publicKey, jwk: publicJwk(publicKey, keyId) },
    ]);
  }

  /** JWKS JSON object. */
  toJwks(): { keys: JsonWebKey[] } {
    return { keys: [...this.authorities.values()].map((a) => ({ ...a.jwk, kid: a.keyId })) };
  }

  /** The JWKS document as a JSON string (see {@link JwtBundle.toJwks}). */
  marshal(): string {
    return JSON.stringify(this.toJwks());
  }

  /** This bundle, if it is the trust domain's; else throws a BundleError (`BUNDLE_NOT_FOUND`). */
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle {
    if (!this.trustDomain.equals(trustDomain)) throw notFound('JWT', trustDomain);
    return this;
  }
}

/**
 * The authority of one JWK, or `undefined` for a key this library cannot use for JWT-SVIDs (`kty` missing,
 * `oct` or unknown): such an entry is ignored, so one unusable key does not make the whole bundle fail
 * (SPIFFE bundle standard: ignore bad entries; go-spiffe refuses the document instead), and so is a key whose
 * `x5c` / `x5t` members are malformed or describe another key. Malformed keys of a supported type, private key
 * material and a missing `kid` are still errors.
 */
export function jwtAuthorityFromJwk(k: unknown, where: string): JwtAuthority | undefined {
  if (!k || typeof k !== 'object' || Array.isArray(k))
    throw new BundleError('BUNDLE_INVALID', `${where}: not an object`);
  const jwk = k as JsonWebKey & { kid?: unknown };
  if (typeof jwk.kid !== 'string' || jwk.kid === '') {
    throw new BundleError('BUNDLE_INVALID', `${where}: missing key ID ("kid")`);
  }
  if (jwk.kty !== 'RSA' && jwk.kty !== 'EC' && jwk.kty !== 'OKP') {
    if ('d' in jwk && jwk.d !== undefined) {
      throw new BundleError('BUNDLE_INVALID', `${where}: private key material in a bundle`);
    }
    return undefined;
  }
  const publicKey = importJwk(jwk, where);
  if (!certificateMembersMatch(k as Record<string, unknown>, publicKey)) return undefined;
  return { keyId: jwk.kid, publicKey, jwk: publicJwk(publicKey, jwk.kid) };
}

/** Standard base64 (RFC 4648 §4) with padding and nothing else, decoded; undefined when not canonical. */
export function strictBase64(value: string): Buffer | undefined {
  if (value.length === 0 || value.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) return undefined;
  const bytes = Buffer.from(value, 'base64');
  return bytes.toString('base64') === value ? bytes : undefined;
}

/** One DER certificate from an `x5c` value (strict base64, nothing after the certificate), or undefined. */
export function x5cCertificate(value: unknown): X509Certificate | undefined {
  const der = typeof value === 'string' ? strictBase64(value) : undefined;
  if (!der) return undefined;
  try {
    const cert = new X509Certificate(der);
    return cert.raw.length === der.length ? cert : undefined;
  } catch {
    return undefined;
  }
}

/**
 * RFC 7517 §4.7-4.9: when a JWK carries `x5c`, its first certificate's key MUST be the JWK's key, and `x5t` /
 * `x5t#S256` are that certificate's SHA-1 / SHA-256 thumbprints (base64url). A key whose certificate members
 * are malformed or contradict it is not used (ignored like any bad entry).
 */
function certificateMembersMatch(jwk: Record<string, unknown>, key: KeyObject): boolean {
  let first: X509Certificate | undefined;
  if (jwk.x5c !== undefined) {
    if (!Array.isArray(jwk.x5c) || jwk.x5c.length === 0) return false;
    const certs = jwk.x5c.map(x5cCertificate);
    first = certs[0];
    if (!first || certs.some((c) => c === undefined) || !first.publicKey.equals(key)) return false;
  }
  for (const [member, hash, length] of [
    ['x5t', 'sha1', 20],
    ['x5t#S256', 'sha256', 32],
  ] as const) {
    const value = jwk[member];
    if (value === undefined) continue;
    if (typeof value !== 'string' || !/^[A-Za-z0-9_-]+$/.test(value)) return false;
    const thumbprint = Buffer.from(value, 'base64url');
    if (thumbprint.length !== length || thumbprint.toString('base64url') !== value) return false;
    if (first && !createHash(hash).update(first.raw).digest().equals(thumbprint)) return false;
  }
  return true;
}

export function parseJsonObject(input: string | Uint8Array | object, what: string): Record<string, unknown> {
  let doc: unknown = input;
  if (typeof input === 'string' || input instanceof Uint8Array) {
    try {
      doc = JSON.parse(typeof input === 'string' ? input : Buffer.from(input).toString('utf8'));
    } catch (err) {
      throw new BundleError('BUNDLE_INVALID', `${what}: not valid JSON: ${(err as Error).message}`, { cause: err });
    }
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new BundleError('BUNDLE_INVALID', `${what}: must be a JSON object`);
  }
  return doc as Record<string, unknown>;
}
