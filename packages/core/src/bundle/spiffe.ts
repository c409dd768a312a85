import { X509Certificate } from 'node:crypto';
import { isLosslessNumber, parse as parseLossless } from 'lossless-json';
import { BundleError } from '../errors.js';
import { TrustDomain, toTrustDomain } from '../spiffeid/id.js';
import { type JwtAuthority, JwtBundle, jwtAuthorityFromJwk, parseJsonObject, x5cCertificate } from './jwt.js';
import { type JwtBundleSource, type X509BundleSource } from './source.js';
import { notFound, X509Bundle } from './x509.js';

/**
 * A SPIFFE bundle (SPIFFE Trust Domain and Bundle standard): a JWKS whose keys carry `use` "x509-svid"
 * (one certificate in `x5c`) or "jwt-svid" (with `kid`), plus `spiffe_sequence` and `spiffe_refresh_hint`.
 * Keys with another `use` are ignored, as the standard asks.
 */
export class SpiffeBundle implements X509BundleSource, JwtBundleSource {
  /** The trust domain the bundle is for. */
  readonly trustDomain: TrustDomain;
  /** The X.509 authorities (root certificates). */
  readonly x509Authorities: readonly X509Certificate[];
  /** The JWT authorities by key ID. */
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
    this.sequenceNumber = init.sequenceNumber === undefined ? undefined : checkedSequence(init.sequenceNumber);
    this.refreshHintSeconds = init.refreshHintSeconds;
    Object.freeze(this);
  }

  /**
   * Parses a SPIFFE bundle document (JSON text, bytes or an already-parsed object) for this trust domain.
   * Throws a BundleError (`BUNDLE_INVALID`) when the document is malformed; unusable entries are ignored.
   */
  static parse(trustDomain: TrustDomain | string, input: string | Uint8Array | object): SpiffeBundle {
    const doc = parseJsonObject(input, 'SPIFFE bundle');
    const { keys, spiffe_refresh_hint: hint } = doc;
    const text =
      typeof input === 'string' ? input : input instanceof Uint8Array ? Buffer.from(input).toString('utf8') : undefined;
    // Text is read a second time, losslessly: the sequence's exact digits, and no repeated member names.
    const seq = sequenceFrom(
      doc.spiffe_sequence,
      text === undefined ? undefined : rawTopLevelNumber(text, 'spiffe_sequence'),
    );
    if (keys === undefined || keys === null) {
      throw new BundleError('BUNDLE_INVALID', 'SPIFFE bundle: "keys" must be present');
    }
    if (!Array.isArray(keys)) throw new BundleError('BUNDLE_INVALID', 'SPIFFE bundle: "keys" must be an array');
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
        // X509-SVID §6.2: an entry without certificates is ignored, and of several only the first is used.
        if (key.x5c === undefined || (Array.isArray(key.x5c) && key.x5c.length === 0)) return;
        if (!Array.isArray(key.x5c)) {
          throw new BundleError('BUNDLE_INVALID', `SPIFFE bundle: x5c of x509-svid entry ${i} is not an array`);
        }
        // RFC 7517 §4.7: standard base64 (not base64url, no whitespace, canonical) of exactly one DER
        // certificate. A bad encoding refuses the whole bundle (as in go-spiffe): the certificate *is* the
        // authority, so a corrupted one means a corrupted document, not an entry we may skip.
        const cert = x5cCertificate(key.x5c[0]);
        if (!cert) {
          throw new BundleError(
            'BUNDLE_INVALID',
            `SPIFFE bundle: x5c of entry ${i} is not the standard base64 of exactly one DER certificate`,
          );
        }
        // The JWK's own key members must describe the certificate's key; an entry where they differ is not
        // used (ignored, as the standard asks for bad entries; go-spiffe refuses the whole bundle).
        if (jwkMatchesKey(k as Record<string, unknown>, cert)) x509.push(cert);
      } else if (key.use === 'jwt-svid') {
        const authority = jwtAuthorityFromJwk(k, `SPIFFE bundle entry ${i}`);
        if (authority) jwt.push(authority);
      }
    });
    return new SpiffeBundle({
      trustDomain,
      x509Authorities: x509,
      jwtAuthorities: jwt,
      sequenceNumber: seq,
      refreshHintSeconds: hint as number | undefined,
    });
  }

  /**
   * Combines an X.509 and a JWT bundle (either may be omitted) into one SPIFFE bundle. Throws a BundleError:
   * `BUNDLE_INVALID` when both are missing, `BUNDLE_TRUST_DOMAIN_MISMATCH` when their trust domains differ.
   */
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

  /** The X.509 authorities as an X509Bundle. */
  x509Bundle(): X509Bundle {
    return new X509Bundle(this.trustDomain, this.x509Authorities);
  }

  /** The JWT authorities as a JwtBundle. */
  jwtBundle(): JwtBundle {
    return new JwtBundle(this.trustDomain, this.jwtAuthorities.values());
  }

  /**
   * The bundle as a JSON object. A `spiffe_sequence` above 2^53 - 1 stays a bigint, so `JSON.stringify` throws
   * on it: use {@link SpiffeBundle.marshal} for text.
   */
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
    const seq = this.sequenceNumber;
    if (seq !== undefined) {
      // A number when exact; above 2^53 - 1 a JSON number cannot hold it, so the bigint itself is kept
      // (a plain JSON.stringify then throws instead of writing wrong digits): marshal() writes it exactly.
      doc.spiffe_sequence = seq <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(seq) : seq;
    }
    if (this.refreshHintSeconds !== undefined) doc.spiffe_refresh_hint = this.refreshHintSeconds;
    return doc;
  }

  /** The bundle as JSON text; `spiffe_sequence` is written with all its digits (unsigned 64-bit). */
  marshal(): string {
    const members = Object.entries(this.toJSON()).map(
      ([name, value]) =>
        `${JSON.stringify(name)}:${typeof value === 'bigint' ? value.toString() : JSON.stringify(value)}`,
    );
    return `{${members.join(',')}}`;
  }

  /** The X.509 part of this bundle, if it is the trust domain's; else throws a BundleError (`BUNDLE_NOT_FOUND`). */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    if (!this.trustDomain.equals(trustDomain)) throw notFound('X.509', trustDomain);
    return this.x509Bundle();
  }

  /** The JWT part of this bundle, if it is the trust domain's; else throws a BundleError (`BUNDLE_NOT_FOUND`). */
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle {
    if (!this.trustDomain.equals(trustDomain)) throw notFound('JWT', trustDomain);
    return this.jwtBundle();
  }
}

const MAX_SEQUENCE = 2n ** 64n - 1n;

function checkedSequence(value: bigint | number): bigint {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new BundleError('BUNDLE_INVALID', 'SPIFFE bundle: sequence number must be an exact integer');
  }
  const seq = BigInt(value);
  if (seq < 0n || seq > MAX_SEQUENCE) {
    throw new BundleError('BUNDLE_INVALID', 'SPIFFE bundle: sequence number must be an unsigned 64-bit integer');
  }
  return seq;
}

const INVALID_SEQUENCE = '"spiffe_sequence" must be an integer from 0 to 2^64 - 1';

/**
 * `spiffe_sequence` without precision loss. JSON.parse turns numbers above 2^53 - 1 into inexact doubles, and
 * Node 20 has no reviver source text, so the member's digits come from a lossless read of the text (`raw`).
 */
function sequenceFrom(parsed: unknown, raw: string | undefined): bigint | undefined {
  if (parsed === undefined) return undefined;
  if (typeof parsed === 'bigint') return checkedSequence(parsed); // caller-built object
  if (typeof parsed !== 'number') throw new BundleError('BUNDLE_INVALID', `SPIFFE bundle: ${INVALID_SEQUENCE}`);
  if (raw === undefined) {
    if (!Number.isSafeInteger(parsed) || parsed < 0) {
      throw new BundleError('BUNDLE_INVALID', `SPIFFE bundle: ${INVALID_SEQUENCE}`);
    }
    return BigInt(parsed);
  }
  // Plain decimal digits only: no sign, fraction or exponent.
  if (!/^(0|[1-9][0-9]*)$/.test(raw) || BigInt(raw) > MAX_SEQUENCE) {
    throw new BundleError('BUNDLE_INVALID', `SPIFFE bundle: ${INVALID_SEQUENCE}`);
  }
  return BigInt(raw);
}

/**
 * The source text of the number value of a top-level member of a JSON object text that JSON.parse already
 * accepted, read with lossless-json (which keeps a number's digits). A document whose member names repeat
 * with different values is refused: JSON parsers disagree on which one counts (RFC 8259 §4).
 */
function rawTopLevelNumber(text: string, member: string): string | undefined {
  let doc: unknown;
  try {
    doc = parseLossless(text);
  } catch (err) {
    throw new BundleError('BUNDLE_INVALID', `SPIFFE bundle: ${(err as Error).message}`, { cause: err });
  }
  const value = doc !== null && typeof doc === 'object' ? (doc as Record<string, unknown>)[member] : undefined;
  return isLosslessNumber(value) ? value.value : undefined;
}

/** Whether the JWK members `kty`, `n`/`e`, `crv`/`x`/`y` of an x509-svid entry equal the certificate's key. */
function jwkMatchesKey(entry: Record<string, unknown>, cert: X509Certificate): boolean {
  let certJwk: Record<string, unknown>;
  try {
    certJwk = cert.publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
  } catch {
    return false;
  }
  const members = ['kty', 'n', 'e', 'crv', 'x', 'y'];
  return members.every((m) => entry[m] === certJwk[m]);
}
