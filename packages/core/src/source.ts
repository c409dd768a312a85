import type { JwtBundleSource, X509BundleSet, X509BundleSource } from './bundle.js';
import type { JwtSvid } from './jwtsvid.js';
import type { SpiffeId } from './spiffeid.js';
import type { X509Svid } from './x509svid.js';

/** Anything that can hand out the current X.509-SVID. */
export interface X509SvidSource {
  /** Throws SourceError when there is no usable SVID (not ready, expired, closed). */
  getX509Svid(): X509Svid;
}

/** Anything that can hand out JWT-SVIDs for an audience. */
export interface JwtSvidSource {
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

/** Listener registry shared by the sources. */
export class UpdateListeners {
  readonly #listeners = new Set<() => void>();
  #onError: ((err: unknown) => void) | undefined;

  constructor(onError?: (err: unknown) => void) {
    this.#onError = onError;
  }

  add(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  emit(): void {
    for (const l of [...this.#listeners]) {
      try {
        l();
      } catch (err) {
        this.#onError?.(err);
      }
    }
  }

  clear(): void {
    this.#listeners.clear();
    this.#onError = undefined;
  }
}
