import { X509BundleSet } from '../bundle/set.js';
import { X509Bundle } from '../bundle/x509.js';
import { checkNotExpired } from '../internal/expiry.js';
import { UpdateListeners } from '../internal/listeners.js';
import { TrustDomain } from '../spiffeid/id.js';
import { type UpdatableSource } from '../svid/source.js';
import { X509Svid } from '../svid/x509.js';

/**
 * Fixed SVID and bundles (tests, or material managed elsewhere). Still refuses an expired SVID, but takes
 * the material as given: it does not check that the SVID verifies against the bundles.
 */
export class StaticX509Source implements UpdatableSource {
  #svid: X509Svid;
  #bundles: X509BundleSet;
  readonly #listeners = new UpdateListeners();

  /** Serves this SVID and these bundles (one bundle, a list or a set). */
  constructor(svid: X509Svid, bundles: X509BundleSet | X509Bundle | readonly X509Bundle[]) {
    this.#svid = svid;
    this.#bundles = toSet(bundles);
  }

  /** The SVID given. Throws a SourceError (`SOURCE_SVID_EXPIRED`) once it has expired. */
  getX509Svid(): X509Svid {
    return checkNotExpired(this.#svid);
  }

  /** The bundles given, as a set. */
  get bundles(): X509BundleSet {
    return this.#bundles;
  }

  /** The bundle of this trust domain. Throws a BundleError (`BUNDLE_NOT_FOUND`) when none was given for it. */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    return this.#bundles.getX509BundleForTrustDomain(trustDomain);
  }

  /** Swaps the material and notifies listeners (handy in tests that rotate by hand). */
  update(svid: X509Svid, bundles?: X509BundleSet | X509Bundle | readonly X509Bundle[]): void {
    this.#svid = svid;
    if (bundles) this.#bundles = toSet(bundles);
    this.#listeners.emit();
  }

  /** Registers a listener called after each update(); returns a function that removes it. */
  onUpdate(listener: () => void): () => void {
    return this.#listeners.add(listener);
  }
}

function toSet(b: X509BundleSet | X509Bundle | readonly X509Bundle[]): X509BundleSet {
  if (b instanceof X509BundleSet) return b;
  return new X509BundleSet(Array.isArray(b) ? b : [b as X509Bundle]);
}
