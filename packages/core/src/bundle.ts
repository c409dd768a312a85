import { createPublicKey, type JsonWebKey, type KeyObject, X509Certificate } from 'node:crypto';
import { BundleError, SpiffeError } from './errors.js';
import { type TrustDomain, toTrustDomain } from './spiffeid.js';
import { type CertificatesInput, certificatesToPem, parseCertificates } from './x509util.js';

/** Anything that can hand out the X.509 bundle of a trust domain (a bundle, a set, a live source). */
export interface X509BundleSource {
  /** Throws BundleError(BUNDLE_NOT_FOUND) when the trust domain is unknown. */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle;
}

/** Anything that can hand out the JWT bundle of a trust domain. */
export interface JwtBundleSource {
  /** Throws BundleError(BUNDLE_NOT_FOUND) when the trust domain is unknown. */
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle;
}

/** A Map that refuses changes once built, so bundles documented as immutable really are. */
class FrozenMap<K, V> extends Map<K, V> {
  #frozen = false;
  constructor(entries: Iterable<readonly [K, V]>) {
    super();
    for (const [k, v] of entries) super.set(k, v);
    this.#frozen = true;
  }
  override set(key: K, value: V): this {
    if (this.#frozen) throw new TypeError('bundle authorities are immutable');
    return super.set(key, value);
  }
  override delete(_key: K): boolean {
    throw new TypeError('bundle authorities are immutable');
  }
  override clear(): void {
    throw new TypeError('bundle authorities are immutable');
  }
}

function notFound(kind: string, td: TrustDomain): BundleError {
  return new BundleError('BUNDLE_NOT_FOUND', `no ${kind} bundle for trust domain "${td.name}"`);
}

/** The X.509 authorities (root CAs) of one trust domain. Immutable. */
export class X509Bundle implements X509BundleSource {
  readonly trustDomain: TrustDomain;
  readonly authorities: readonly X509Certificate[];

  constructor(trustDomain: TrustDomain | string, authorities: readonly X509Certificate[]) {
    this.trustDomain = toTrustDomain(trustDomain);
    // Deduplicate by DER so re-adding the same CA is harmless.
    const seen = new Set<string>();
    this.authorities = Object.freeze(
      authorities.filter((c) => {
        const k = c.fingerprint256;
        if (seen.has(k)) return false;
        seen.add(k);
        return true;
      }),
    );
    Object.freeze(this);
  }

  /** Parses PEM text or DER bytes (concatenated DER allowed, as the Workload API sends). */
  static parse(trustDomain: TrustDomain | string, input: CertificatesInput): X509Bundle {
    try {
      return new X509Bundle(trustDomain, parseCertificates(input));
    } catch (err) {
      if (err instanceof SpiffeError && !(err instanceof BundleError)) {
        throw new BundleError('BUNDLE_INVALID', `invalid X.509 bundle: ${err.message}`, { cause: err });
      }
      throw err;
    }
  }

  /** An empty bundle: trusts nothing. */
  static empty(trustDomain: TrustDomain | string): X509Bundle {
    return new X509Bundle(trustDomain, []);
  }

  hasAuthority(cert: X509Certificate): boolean {
    return this.authorities.some((a) => a.fingerprint256 === cert.fingerprint256);
  }

  withAuthority(cert: X509Certificate): X509Bundle {
    return new X509Bundle(this.trustDomain, [...this.authorities, cert]);
  }

  withoutAuthority(cert: X509Certificate): X509Bundle {
    return new X509Bundle(
      this.trustDomain,
      this.authorities.filter((a) => a.fingerprint256 !== cert.fingerprint256),
    );
  }

  equals(other: X509Bundle): boolean {
    return (
      this.trustDomain.equals(other.trustDomain) &&
      this.authorities.length === other.authorities.length &&
      this.authorities.every((a, i) => a.fingerprint256 === other.authorities[i]?.fingerprint256)
    );
  }

  toPem(): string {
    return certificatesToPem(this.authorities);
  }

  toDer(): Buffer {
    return Buffer.concat(this.authorities.map((a) => a.raw));
  }

  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    if (!this.trustDomain.equals(trustDomain)) throw notFound('X.509', trustDomain);
    return this;
  }
}

/** A JWT authority: its key ID, the public key, and the JWK it came from. */
export interface JwtAuthority {
  readonly keyId: string;
  readonly publicKey: KeyObject;
  readonly jwk: JsonWebKey;
}

function importJwk(jwk: JsonWebKey, where: string): KeyObject {
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

function publicJwk(key: KeyObject, keyId: string): JsonWebKey {
  return { ...key.export({ format: 'jwk' }), kid: keyId };
}

/** The JWT authorities (signing keys by key ID) of one trust domain. Immutable. */
export class JwtBundle implements JwtBundleSource {
  readonly trustDomain: TrustDomain;
  readonly authorities: ReadonlyMap<string, JwtAuthority>;

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
    return new JwtBundle(
      trustDomain,
      keys.map((k: unknown, i) => jwtAuthorityFromJwk(k, `JWKS key ${i}`)),
    );
  }

  static fromKeys(trustDomain: TrustDomain | string, keys: Record<string, KeyObject>): JwtBundle {
    return new JwtBundle(
      trustDomain,
      Object.entries(keys).map(([keyId, publicKey]) => ({ keyId, publicKey, jwk: publicJwk(publicKey, keyId) })),
    );
  }

  findAuthority(keyId: string): JwtAuthority | undefined {
    return this.authorities.get(keyId);
  }

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

  marshal(): string {
    return JSON.stringify(this.toJwks());
  }

  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle {
    if (!this.trustDomain.equals(trustDomain)) throw notFound('JWT', trustDomain);
    return this;
  }
}

function jwtAuthorityFromJwk(k: unknown, where: string): JwtAuthority {
  if (!k || typeof k !== 'object' || Array.isArray(k))
    throw new BundleError('BUNDLE_INVALID', `${where}: not an object`);
  const jwk = k as JsonWebKey & { kid?: unknown };
  if (typeof jwk.kid !== 'string' || jwk.kid === '') {
    throw new BundleError('BUNDLE_INVALID', `${where}: missing key ID ("kid")`);
  }
  const publicKey = importJwk(jwk, where);
  return { keyId: jwk.kid, publicKey, jwk: publicJwk(publicKey, jwk.kid) };
}

function parseJsonObject(input: string | Uint8Array | object, what: string): Record<string, unknown> {
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

/**
 * A SPIFFE bundle (SPIFFE Trust Domain and Bundle standard): a JWKS whose keys carry `use` "x509-svid"
 * (one certificate in `x5c`) or "jwt-svid" (with `kid`), plus `spiffe_sequence` and `spiffe_refresh_hint`.
 * Keys with another `use` are ignored, as the standard asks.
 */
export class SpiffeBundle implements X509BundleSource, JwtBundleSource {
  readonly trustDomain: TrustDomain;
  readonly x509Authorities: readonly X509Certificate[];
  readonly jwtAuthorities: ReadonlyMap<string, JwtAuthority>;
  /** `spiffe_sequence`, when set. */
  readonly sequenceNumber: bigint | undefined;
  /** `spiffe_refresh_hint` in seconds, when set. */
  readonly refreshHintSeconds: number | undefined;

  constructor(init: {
    trustDomain: TrustDomain | string;
    x509Authorities?: readonly X509Certificate[];
    jwtAuthorities?: Iterable<JwtAuthority>;
    sequenceNumber?: bigint | number | undefined;
    refreshHintSeconds?: number | undefined;
  }) {
    this.trustDomain = toTrustDomain(init.trustDomain);
    this.x509Authorities = new X509Bundle(this.trustDomain, init.x509Authorities ?? []).authorities;
    this.jwtAuthorities = new JwtBundle(this.trustDomain, init.jwtAuthorities ?? []).authorities;
    this.sequenceNumber = init.sequenceNumber === undefined ? undefined : BigInt(init.sequenceNumber);
    this.refreshHintSeconds = init.refreshHintSeconds;
    Object.freeze(this);
  }

  static parse(trustDomain: TrustDomain | string, input: string | Uint8Array | object): SpiffeBundle {
    const doc = parseJsonObject(input, 'SPIFFE bundle');
    const { keys, spiffe_sequence: seq, spiffe_refresh_hint: hint } = doc;
    if (keys === undefined || keys === null) {
      throw new BundleError('BUNDLE_INVALID', 'SPIFFE bundle: "keys" must be present');
    }
    if (!Array.isArray(keys)) throw new BundleError('BUNDLE_INVALID', 'SPIFFE bundle: "keys" must be an array');
    if (seq !== undefined && !(Number.isSafeInteger(seq) && (seq as number) >= 0)) {
      throw new BundleError('BUNDLE_INVALID', 'SPIFFE bundle: "spiffe_sequence" must be a non-negative integer');
    }
    if (hint !== undefined && !(Number.isSafeInteger(hint) && (hint as number) >= 0)) {
      throw new BundleError('BUNDLE_INVALID', 'SPIFFE bundle: "spiffe_refresh_hint" must be a non-negative integer');
    }
    const x509: X509Certificate[] = [];
    const jwt: JwtAuthority[] = [];
    keys.forEach((k: unknown, i) => {
      if (!k || typeof k !== 'object' || Array.isArray(k)) {
        throw new BundleError('BUNDLE_INVALID', `SPIFFE bundle: key ${i} is not an object`);
      }
      const key = k as { use?: unknown; x5c?: unknown };
      if (key.use === 'x509-svid') {
        if (!Array.isArray(key.x5c) || key.x5c.length !== 1 || typeof key.x5c[0] !== 'string') {
          throw new BundleError(
            'BUNDLE_INVALID',
            `SPIFFE bundle: expected a single certificate in x509-svid entry ${i}`,
          );
        }
        let cert: X509Certificate;
        try {
          cert = new X509Certificate(Buffer.from(key.x5c[0], 'base64'));
        } catch (err) {
          throw new BundleError('BUNDLE_INVALID', `SPIFFE bundle: invalid certificate in entry ${i}`, { cause: err });
        }
        x509.push(cert);
      } else if (key.use === 'jwt-svid') {
        jwt.push(jwtAuthorityFromJwk(k, `SPIFFE bundle entry ${i}`));
      }
    });
    return new SpiffeBundle({
      trustDomain,
      x509Authorities: x509,
      jwtAuthorities: jwt,
      sequenceNumber: seq as number | undefined,
      refreshHintSeconds: hint as number | undefined,
    });
  }

  static fromBundles(x509?: X509Bundle, jwt?: JwtBundle): SpiffeBundle {
    const td = x509?.trustDomain ?? jwt?.trustDomain;
    if (!td) throw new BundleError('BUNDLE_INVALID', 'need at least one bundle');
    if (x509 && jwt && !x509.trustDomain.equals(jwt.trustDomain)) {
      throw new BundleError('BUNDLE_TRUST_DOMAIN_MISMATCH', 'X.509 and JWT bundles are for different trust domains');
    }
    return new SpiffeBundle({
      trustDomain: td,
      x509Authorities: x509?.authorities ?? [],
      jwtAuthorities: jwt?.authorities.values() ?? [],
    });
  }

  x509Bundle(): X509Bundle {
    return new X509Bundle(this.trustDomain, this.x509Authorities);
  }

  jwtBundle(): JwtBundle {
    return new JwtBundle(this.trustDomain, this.jwtAuthorities.values());
  }

  toJSON(): Record<string, unknown> {
    const keys: object[] = [
      ...this.x509Authorities.map((c) => ({
        ...c.publicKey.export({ format: 'jwk' }),
        use: 'x509-svid',
        x5c: [c.raw.toString('base64')],
      })),
      ...[...this.jwtAuthorities.values()].map((a) => ({ ...a.jwk, kid: a.keyId, use: 'jwt-svid' })),
    ];
    const doc: Record<string, unknown> = { keys };
    if (this.sequenceNumber !== undefined) doc.spiffe_sequence = Number(this.sequenceNumber);
    if (this.refreshHintSeconds !== undefined) doc.spiffe_refresh_hint = this.refreshHintSeconds;
    return doc;
  }

  marshal(): string {
    return JSON.stringify(this.toJSON());
  }

  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    if (!this.trustDomain.equals(trustDomain)) throw notFound('X.509', trustDomain);
    return this.x509Bundle();
  }

  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle {
    if (!this.trustDomain.equals(trustDomain)) throw notFound('JWT', trustDomain);
    return this.jwtBundle();
  }
}

/** Bundles keyed by trust domain (the local one plus federated ones). Immutable. */
export class BundleSet<B extends { readonly trustDomain: TrustDomain }> {
  readonly #byName: ReadonlyMap<string, B>;

  constructor(bundles: Iterable<B> = []) {
    const map = new Map<string, B>();
    for (const b of bundles) map.set(b.trustDomain.name, b);
    this.#byName = map;
  }

  get(trustDomain: TrustDomain | string): B | undefined {
    return this.#byName.get(typeof trustDomain === 'string' ? toTrustDomain(trustDomain).name : trustDomain.name);
  }

  has(trustDomain: TrustDomain | string): boolean {
    return this.get(trustDomain) !== undefined;
  }

  with(bundle: B): this {
    const Ctor = this.constructor as new (b: Iterable<B>) => this;
    return new Ctor([...this.#byName.values(), bundle]);
  }

  without(trustDomain: TrustDomain | string): this {
    const name = typeof trustDomain === 'string' ? toTrustDomain(trustDomain).name : trustDomain.name;
    const Ctor = this.constructor as new (b: Iterable<B>) => this;
    return new Ctor([...this.#byName.values()].filter((b) => b.trustDomain.name !== name));
  }

  bundles(): B[] {
    return [...this.#byName.values()].sort((a, b) => a.trustDomain.name.localeCompare(b.trustDomain.name));
  }

  trustDomains(): TrustDomain[] {
    return this.bundles().map((b) => b.trustDomain);
  }

  get size(): number {
    return this.#byName.size;
  }
}

export class X509BundleSet extends BundleSet<X509Bundle> implements X509BundleSource {
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    const b = this.get(trustDomain);
    if (!b) throw notFound('X.509', trustDomain);
    return b;
  }

  /** Every authority of every trust domain (what a TLS stack needs as its `ca` list). */
  allAuthorities(): X509Certificate[] {
    return this.bundles().flatMap((b) => [...b.authorities]);
  }

  equals(other: X509BundleSet): boolean {
    const a = this.bundles();
    const b = other.bundles();
    return a.length === b.length && a.every((x, i) => b[i] !== undefined && x.equals(b[i]));
  }
}

export class JwtBundleSet extends BundleSet<JwtBundle> implements JwtBundleSource {
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle {
    const b = this.get(trustDomain);
    if (!b) throw notFound('JWT', trustDomain);
    return b;
  }
}

export class SpiffeBundleSet extends BundleSet<SpiffeBundle> implements X509BundleSource, JwtBundleSource {
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    const b = this.get(trustDomain);
    if (!b) throw notFound('X.509', trustDomain);
    return b.x509Bundle();
  }

  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle {
    const b = this.get(trustDomain);
    if (!b) throw notFound('JWT', trustDomain);
    return b.jwtBundle();
  }
}
