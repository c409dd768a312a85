import { type X509BundleSource } from '../bundle/source.js';
import { type X509Bundle } from '../bundle/x509.js';
import { type SpiffeId } from '../spiffeid/id.js';
import { verifyX509Svid } from '../svid/x509.js';
import { type CertificatesInput } from './x509util.js';

/**
 * A successful X.509-SVID verification that may stand in for a new one: bundles are immutable, so while the
 * source still hands out the very bundle object that verified the chain, and the time is inside the chain's
 * validity window, verifying again would give the same answer. Failures are never kept.
 */
export interface ReusableVerification {
  readonly id: SpiffeId;
  readonly bundle: X509Bundle;
  readonly notBefore: number;
  readonly notAfter: number;
}

/** Whether a kept verification still holds at `now` against the bundles the source hands out now. */
export function stillVerified(kept: ReusableVerification, bundles: X509BundleSource, now: number): boolean {
  if (now < kept.notBefore || now > kept.notAfter) return false;
  try {
    return bundles.getX509BundleForTrustDomain(kept.id.trustDomain) === kept.bundle;
  } catch {
    return false;
  }
}

/**
 * Verifies a chain in full (throws as verifyX509Svid does) and returns its SPIFFE ID with what may be kept: the
 * bundle object the verification actually used (the source may rotate concurrently) and the chain's validity
 * window; `kept` is undefined if no bundle was looked up.
 */
export function verifyForReuse(
  chain: CertificatesInput,
  bundles: X509BundleSource,
  now: number,
): { id: SpiffeId; kept: ReusableVerification | undefined } {
  let used: X509Bundle | undefined;
  const recording: X509BundleSource = {
    getX509BundleForTrustDomain(td) {
      used = bundles.getX509BundleForTrustDomain(td);
      return used;
    },
  };
  const { id, verifiedChain } = verifyX509Svid(chain, recording, { now: new Date(now) });
  const kept = used && {
    id,
    bundle: used,
    notBefore: Math.max(...verifiedChain.map((c) => Date.parse(c.validFrom))),
    notAfter: Math.min(...verifiedChain.map((c) => Date.parse(c.validTo))),
  };
  return { id, kept };
}
