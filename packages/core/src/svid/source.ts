import { X509BundleSet } from '../bundle/set.js';
import { type JwtBundleSource, type X509BundleSource } from '../bundle/source.js';
import { SpiffeId } from '../spiffeid/id.js';
import { JwtSvid } from './jwt.js';
import { X509Svid } from './x509.js';

/** Anything that can hand out the current X.509-SVID. */
export interface X509SvidSource {
  /** Throws SourceError when there is no usable SVID (not ready, expired, closed). */
  getX509Svid(): X509Svid;
}

/** Anything that can hand out JWT-SVIDs for an audience. */
export interface JwtSvidSource {
  /**
   * A JWT-SVID for the audience (and, when the workload has several identities, the given subject). Rejects
   * with a SpiffeError when none can be had.
   */
  fetchJwtSvid(params: { audience: string | readonly string[]; subject?: SpiffeId | string }): Promise<JwtSvid>;
}

/** A source whose material can change: listeners run after every change. */
export interface UpdatableSource {
  /** Registers a listener; returns a function that removes it. */
  onUpdate(listener: () => void): () => void;
}

/**
 * What mTLS needs: our SVID, every bundle we trust (the TLS stack needs the full list of authorities),
 * lookup by trust domain for peer verification, and (optionally) change notifications for live rotation.
 * X509Source, StaticX509Source and FileX509Source all fit.
 */
export type X509MaterialSource = X509SvidSource &
  X509BundleSource & { readonly bundles: X509BundleSet } & Partial<UpdatableSource>;

export type { JwtBundleSource, X509BundleSource };
