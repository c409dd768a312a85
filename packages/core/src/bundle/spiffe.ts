import { X509Certificate } from 'node:crypto';
import { BundleError } from '../errors.js';
import { TrustDomain, toTrustDomain } from '../spiffeid/id.js';
import { type JwtAuthority, JwtBundle, jwtAuthorityFromJwk, parseJsonObject } from './jwt.js';
import { type JwtBundleSource, type X509BundleSource } from './source.js';
import { notFound, X509Bundle } from './x509.js';

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
