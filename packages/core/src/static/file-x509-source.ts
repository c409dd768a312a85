import { type FSWatcher, readFileSync, statSync, watch } from 'node:fs';
import { dirname } from 'node:path';
import { debuglog } from 'node:util';
import { X509BundleSet } from '../bundle/set.js';
import { X509Bundle } from '../bundle/x509.js';
import { SourceError, SpiffeError } from '../errors.js';
import { checkX509Update } from '../internal/adopt.js';
import { checkNotExpired } from '../internal/expiry.js';
import { UpdateListeners } from '../internal/listeners.js';
import { TrustDomain } from '../spiffeid/id.js';
import { type UpdatableSource } from '../svid/source.js';
import { X509Svid } from '../svid/x509.js';

const debug = debuglog('spiffe');

/** Options of {@link FileX509Source}: where the PEM files are, and how reloads behave. */
export interface FileX509SourceOptions {
  /** PEM chain, leaf first (SPIFFE Helper: svid.pem; `spire-agent api fetch -write`: svid.0.pem). */
  certFile: string;
  /** PEM private key (svid_key.pem / svid.0.key). */
  keyFile: string;
  /** PEM bundle of the SVID's own trust domain (svid_bundle.pem / bundle.0.pem). */
  bundleFile: string;
  /** Federated bundles: trust domain → PEM file. */
  federatedBundleFiles?: Record<string, string>;
  /** Poll interval in ms as a safety net behind fs.watch (default 2000; 0 disables polling). */
  pollIntervalMs?: number;
  /** Called when a reload fails (the previous material stays in use). */
  onError?: (error: SpiffeError) => void;
  /**
   * Accept files whose SVID is in another trust domain than the one loaded first (default false: such a
   * reload is refused with SOURCE_TRUST_DOMAIN_CHANGED).
   */
  allowTrustDomainChange?: boolean;
}

/**
 * X.509 material from PEM files on disk, re-read when the files change (fs.watch on their directories,
 * plus polling). A half-written update is ignored until the files parse again; files whose SVID does not
 * verify against its own bundle, or moves to another trust domain, are refused (the previous material stays).
 */
export class FileX509Source implements UpdatableSource {
  readonly #options: FileX509SourceOptions;
  #svid!: X509Svid;
  #bundles!: X509BundleSet;
  #stamp = '';
  readonly #listeners = new UpdateListeners();
  readonly #watchers: FSWatcher[] = [];
  #poll: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #closed = false;

  /**
   * Loads the files and starts watching them. Throws a SpiffeError when the initial material is unusable
   * (`FILE_SOURCE_ERROR` for an unreadable file, or the parse or verification error's own code).
   */
  constructor(options: FileX509SourceOptions) {
    this.#options = options;
    this.#load(); // throws on bad initial material: fail fast at startup
    for (const dir of new Set(this.#files().map((f) => dirname(f)))) {
      try {
        const w = watch(dir, () => this.#schedule());
        w.on('error', (err) => debug('fs.watch error: %o', err));
        this.#watchers.push(w);
      } catch (err) {
        debug('fs.watch unavailable for %s: %o', dir, err);
      }
    }
    const interval = options.pollIntervalMs ?? 2000;
    if (interval > 0) {
      this.#poll = setInterval(() => this.#reloadIfChanged(), interval);
      this.#poll.unref();
    }
  }

  #files(): string[] {
    return [
      this.#options.certFile,
      this.#options.keyFile,
      this.#options.bundleFile,
      ...Object.values(this.#options.federatedBundleFiles ?? {}),
    ];
  }

  #currentStamp(): string {
    return this.#files()
      .map((f) => {
        try {
          const st = statSync(f);
          return `${st.mtimeMs}:${st.size}:${st.ino}`;
        } catch {
          return 'missing';
        }
      })
      .join('|');
  }

  #schedule(): void {
    if (this.#closed) return;
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => this.#reloadIfChanged(), 50);
    this.#debounce.unref();
  }

  #reloadIfChanged(): void {
    if (this.#closed || this.#currentStamp() === this.#stamp) return;
    try {
      this.#load();
      this.#listeners.emit();
    } catch (err) {
      const e =
        err instanceof SpiffeError
          ? err
          : new SourceError('FILE_SOURCE_ERROR', `reloading SVID files failed: ${(err as Error).message}`, {
              cause: err,
            });
      debug('FileX509Source reload failed: %s', e.message);
      this.#options.onError?.(e);
    }
  }

  #load(): void {
    const stamp = this.#currentStamp();
    const read = (f: string) => {
      try {
        return readFileSync(f, 'utf8');
      } catch (err) {
        throw new SourceError('FILE_SOURCE_ERROR', `cannot read ${f}: ${(err as Error).message}`, { cause: err });
      }
    };
    const svid = X509Svid.parse(read(this.#options.certFile), read(this.#options.keyFile));
    const bundles = [X509Bundle.parse(svid.id.trustDomain, read(this.#options.bundleFile))];
    for (const [td, file] of Object.entries(this.#options.federatedBundleFiles ?? {})) {
      bundles.push(X509Bundle.parse(td, read(file)));
    }
    const set = new X509BundleSet(bundles);
    // The same checks as X509Source: the SVID verifies against its own bundle; its trust domain stays.
    checkX509Update([svid], set, {
      previous: this.#svid?.id.trustDomain,
      next: svid.id.trustDomain,
      allowTrustDomainChange: this.#options.allowTrustDomainChange ?? false,
    });
    this.#svid = svid;
    this.#bundles = set;
    this.#stamp = stamp;
  }

  /**
   * The SVID last loaded. Throws a SourceError: `SOURCE_CLOSED` after close(), `SOURCE_SVID_EXPIRED` once it has
   * expired (the files were not renewed in time).
   */
  getX509Svid(): X509Svid {
    if (this.#closed) throw new SourceError('SOURCE_CLOSED', 'FileX509Source is closed');
    return checkNotExpired(this.#svid);
  }

  /** Every bundle last loaded: the SVID's trust domain and the federated ones. */
  get bundles(): X509BundleSet {
    return this.#bundles;
  }

  /** The bundle of this trust domain. Throws a BundleError (`BUNDLE_NOT_FOUND`) when none was loaded for it. */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    return this.#bundles.getX509BundleForTrustDomain(trustDomain);
  }

  /** Registers a listener called after each successful reload; returns a function that removes it. */
  onUpdate(listener: () => void): () => void {
    return this.#listeners.add(listener);
  }

  /** Stops watching the files and drops the listeners; getX509Svid() then throws `SOURCE_CLOSED`. */
  close(): void {
    this.#closed = true;
    for (const w of this.#watchers) w.close();
    clearInterval(this.#poll);
    clearTimeout(this.#debounce);
    this.#listeners.clear();
  }
}
