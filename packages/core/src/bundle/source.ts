import { TrustDomain } from '../spiffeid/id.js';
import { JwtBundle } from './jwt.js';
import { X509Bundle } from './x509.js';

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
