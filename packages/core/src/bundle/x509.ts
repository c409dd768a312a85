import { X509Certificate } from 'node:crypto';
import { BundleError, SpiffeError } from '../errors.js';
import { type CertificatesInput, certificatesToPem, parseCertificates } from '../internal/x509util.js';
import { TrustDomain, toTrustDomain } from '../spiffeid/id.js';
import { type X509BundleSource } from './source.js';

export function notFound(kind: string, td: TrustDomain): BundleError {
  return new BundleError('BUNDLE_NOT_FOUND', `no ${kind} bundle for trust domain "${td.name}"`);
}

/** The X.509 authorities (root CAs) of one trust domain. Immutable. */
export class X509Bundle implements X509BundleSource {
  /** The trust domain whose X.509-SVIDs these authorities verify. */
  readonly trustDomain: TrustDomain;
  /** The root certificates, without duplicates, in the order given. */
  readonly authorities: readonly X509Certificate[];

  /** A bundle of these certificates (a certificate given twice is kept once). */
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
    // No certificates at all (empty bytes, as the Workload API sends for "now empty", or an empty list) is a
    // valid bundle that trusts nothing. Text must still hold PEM certificates.
    if ((input instanceof Uint8Array && input.byteLength === 0) || (Array.isArray(input) && input.length === 0)) {
      return X509Bundle.empty(trustDomain);
    }
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

  /** True when this certificate (same SHA-256 fingerprint) is one of the authorities. */
  hasAuthority(cert: X509Certificate): boolean {
    return this.authorities.some((a) => a.fingerprint256 === cert.fingerprint256);
  }

  /** A new bundle with this certificate added (no duplicate if already present); this bundle is unchanged. */
  withAuthority(cert: X509Certificate): X509Bundle {
    return new X509Bundle(this.trustDomain, [...this.authorities, cert]);
  }

  /** A new bundle without this certificate; this bundle is unchanged. */
  withoutAuthority(cert: X509Certificate): X509Bundle {
    return new X509Bundle(
      this.trustDomain,
      this.authorities.filter((a) => a.fingerprint256 !== cert.fingerprint256),
    );
  }

  /** True when both bundles have the same trust domain and the same authorities in the same order. */
  equals(other: X509Bundle): boolean {
    return (
      this.trustDomain.equals(other.trustDomain) &&
      this.authorities.length === other.authorities.length &&
      this.authorities.every((a, i) => a.fingerprint256 === other.authorities[i]?.fingerprint256)
    );
  }

  /** The authorities as concatenated PEM certificates. */
  toPem(): string {
    return certificatesToPem(this.authorities);
  }

  /** The authorities as concatenated DER certificates (the Workload API's encoding). */
  toDer(): Buffer {
    return Buffer.concat(this.authorities.map((a) => a.raw));
  }

  /** This bundle, if it is the trust domain's; else throws a BundleError (`BUNDLE_NOT_FOUND`). */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    if (!this.trustDomain.equals(trustDomain)) throw notFound('X.509', trustDomain);
    return this;
  }
}
