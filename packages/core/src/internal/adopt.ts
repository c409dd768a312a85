import { type X509BundleSource } from '../bundle/source.js';
import { SourceError } from '../errors.js';
import { TrustDomain } from '../spiffeid/id.js';
import { verifyX509Svid, X509Svid } from '../svid/x509.js';

/**
 * What a source checks before it adopts new X.509 material (from the Workload API or from files): every
 * SVID verifies against the bundle of its own trust domain **in the same update**, and the SVID in use
 * stays in the trust domain it had unless the user allowed a change. Throws SOURCE_UPDATE_UNVERIFIED (the
 * verification error as `cause`) or SOURCE_TRUST_DOMAIN_CHANGED; the caller then keeps its last good
 * material. Material that does not verify would make a server present it, and trust a bundle that does not
 * even sign our own identity.
 */
export function checkX509Update(
  svids: readonly X509Svid[],
  bundles: X509BundleSource,
  current: { previous: TrustDomain | undefined; next: TrustDomain; allowTrustDomainChange: boolean },
): void {
  for (const svid of svids) {
    try {
      verifyX509Svid(svid.certificates, bundles);
    } catch (err) {
      throw new SourceError(
        'SOURCE_UPDATE_UNVERIFIED',
        `refusing an X.509 update: the SVID for ${svid.id} does not verify against the bundle of its own ` +
          `trust domain in the same update (${(err as Error).message}); keeping the previous material`,
        { cause: err },
      );
    }
  }
  const { previous, next } = current;
  if (previous && !previous.equals(next) && !current.allowTrustDomainChange) {
    throw new SourceError(
      'SOURCE_TRUST_DOMAIN_CHANGED',
      `refusing an X.509 update: the SVID moved from trust domain "${previous.name}" to "${next.name}" ` +
        '(set allowTrustDomainChange to accept this); keeping the previous material',
    );
  }
}
