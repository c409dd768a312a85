import { debuglog } from 'node:util';
import { type JwtBundle } from '../bundle/jwt.js';
import { JwtBundleSet, SpiffeBundleSet, X509BundleSet } from '../bundle/set.js';
import { type JwtBundleSource, type X509BundleSource } from '../bundle/source.js';
import { type SpiffeBundle } from '../bundle/spiffe.js';
import { notFound, type X509Bundle } from '../bundle/x509.js';
import { FederationError, SourceError } from '../errors.js';
import { UpdateListeners } from '../internal/listeners.js';
import { type HealthReporter, type SourceHealth } from '../observability/health.js';
import { type TrustDomain, toSpiffeId, toTrustDomain } from '../spiffeid/id.js';
import { type UpdatableSource } from '../svid/source.js';
import { Backoff, type BackoffOptions } from '../workloadapi/backoff.js';
import { type ReadyOptions } from '../workloadapi/source.js';
import {
  type BundleEndpointProfile,
  type FederationRelationship,
  type FetchLimits,
  fetchBundle,
  parseEndpointUrl,
} from './client.js';

const debug = debuglog('spiffe');

/** Refresh interval when a bundle has no `spiffe_refresh_hint` (SPIFFE Federation: about 5 minutes). */
export const DEFAULT_REFRESH_MS = 5 * 60_000;
/** Default floor on the refresh interval: a hint below it (even 0) does not make us poll faster. */
export const DEFAULT_MIN_REFRESH_MS = 10_000;
/** Default ceiling on the refresh interval: a huge hint does not keep a stale bundle around for days. */
export const DEFAULT_MAX_REFRESH_MS = 60 * 60_000;

/**
 * Waits `ms` without keeping the process alive (like an idle Workload API client: a forgotten source must not
 * hold a process open); false when the signal aborted first.
 */
function idle(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    timer.unref();
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Options of `FederatedBundleSource`. */
export interface FederatedBundleSourceOptions extends FetchLimits {
  /** The federation relationships to watch (one per trust domain). */
  relationships?: readonly FederationRelationship[];
  /** Floor on the refresh interval in ms (default DEFAULT_MIN_REFRESH_MS). */
  minRefreshMs?: number;
  /** Ceiling on the refresh interval in ms (default DEFAULT_MAX_REFRESH_MS). */
  maxRefreshMs?: number;
  /** Interval when the bundle has no refresh hint, in ms (default DEFAULT_REFRESH_MS). */
  defaultRefreshMs?: number;
  /**
   * Retry delays after a failed fetch (default: from 1 s, doubling, with jitter); a retry never comes later
   * than the regular refresh interval.
   */
  backoff?: BackoffOptions;
  /** Called with every failed fetch (the last good bundle is kept). */
  onError?: (error: FederationError, trustDomain: TrustDomain) => void;
}

/** What the source knows about one relationship. */
export interface FederationStatus {
  /** The relationship's trust domain. */
  readonly trustDomain: TrustDomain;
  /** The configured bundle endpoint URL. */
  readonly url: string;
  /** The last good bundle, if any fetch succeeded. */
  readonly bundle: SpiffeBundle | undefined;
  /** The error of the last fetch, undefined when it succeeded. */
  readonly lastError: FederationError | undefined;
  /** When the last fetch succeeded. */
  readonly lastSuccess: Date | undefined;
  /** When the next fetch is due. */
  readonly nextRefresh: Date | undefined;
}

interface State {
  trustDomain: TrustDomain;
  url: URL;
  profile: BundleEndpointProfile;
  selfServing: boolean;
  bundle: SpiffeBundle | undefined;
  x509: X509Bundle | undefined;
  jwt: JwtBundle | undefined;
  lastError: FederationError | undefined;
  lastErrorAt: Date | undefined;
  lastSuccess: Date | undefined;
  nextRefresh: Date | undefined;
  stop: AbortController;
  done: Promise<void>;
}

/**
 * Watches the bundle endpoints of federated trust domains (SPIFFE Federation) and serves their latest good
 * bundles: each is fetched at once, then again every `spiffe_refresh_hint` seconds (clamped to
 * [minRefreshMs, maxRefreshMs]; DEFAULT_REFRESH_MS without a hint). A failed fetch keeps the last good bundle,
 * is reported through `onError`, and is retried with backoff. A bundle whose `spiffe_sequence` is lower than
 * the one held is refused (FEDERATION_BUNDLE_STALE). A self-serving `https_spiffe` endpoint is authenticated
 * with the operator's bootstrap bundle until the first fetch, then with the latest fetched bundle.
 *
 * Implements X509BundleSource and JwtBundleSource: combine it with a Workload API source through
 * `withFederatedBundles(source, federated)` (mTLS) or `combineBundleSources(jwtSource, federated)` (JWT).
 */
export class FederatedBundleSource implements X509BundleSource, JwtBundleSource, UpdatableSource, HealthReporter {
  readonly #states = new Map<string, State>();
  readonly #listeners = new UpdateListeners((err) => debug('update listener threw: %o', err));
  readonly #options: FederatedBundleSourceOptions;
  readonly #readyWaiters = new Set<() => void>();
  #x509Set = new X509BundleSet();
  #jwtSet = new JwtBundleSet();
  #spiffeSet = new SpiffeBundleSet();
  #closed = false;

  constructor(options: FederatedBundleSourceOptions = {}) {
    this.#options = options;
    const minMs = options.minRefreshMs ?? DEFAULT_MIN_REFRESH_MS;
    const maxMs = options.maxRefreshMs ?? DEFAULT_MAX_REFRESH_MS;
    if (!(minMs >= 0 && maxMs >= minMs)) {
      throw new FederationError('FEDERATION_BAD_CONFIG', 'need 0 <= minRefreshMs <= maxRefreshMs');
    }
    const states = (options.relationships ?? []).map((r) => this.#newState(r));
    for (const s of states) this.#start(s);
  }

  /** Creates a source and waits until every relationship has a bundle (closes it if that fails). */
  static async create(options: FederatedBundleSourceOptions & ReadyOptions = {}): Promise<FederatedBundleSource> {
    const source = new FederatedBundleSource(options);
    try {
      return await source.ready(options);
    } catch (err) {
      await source.close();
      throw err;
    }
  }

  #newState(r: FederationRelationship): State {
    const trustDomain = (() => {
      try {
        return toTrustDomain(r.trustDomain);
      } catch (err) {
        throw new FederationError('FEDERATION_BAD_CONFIG', `invalid trust domain: ${(err as Error).message}`, {
          cause: err,
        });
      }
    })();
    if (this.#states.has(trustDomain.name)) {
      throw new FederationError('FEDERATION_BAD_CONFIG', `trust domain "${trustDomain.name}" is configured twice`);
    }
    const url = parseEndpointUrl(r.url);
    let selfServing = false;
    if (r.profile?.type === 'https_spiffe') {
      try {
        selfServing = toSpiffeId(r.profile.endpointSpiffeId).trustDomain.equals(trustDomain);
      } catch (err) {
        throw new FederationError('FEDERATION_BAD_CONFIG', `invalid endpoint SPIFFE ID: ${(err as Error).message}`, {
          cause: err,
        });
      }
    } else if (r.profile?.type !== 'https_web') {
      throw new FederationError('FEDERATION_BAD_CONFIG', 'profile must be https_web or https_spiffe');
    }
    const state: State = {
      trustDomain,
      url,
      profile: r.profile,
      selfServing,
      bundle: undefined,
      x509: undefined,
      jwt: undefined,
      lastError: undefined,
      lastErrorAt: undefined,
      lastSuccess: undefined,
      nextRefresh: undefined,
      stop: new AbortController(),
      done: Promise.resolve(),
    };
    this.#states.set(trustDomain.name, state);
    return state;
  }

  #start(state: State): void {
    state.done = this.#run(state).catch((err) => debug('federation watcher ended: %o', err));
  }

  /** Starts watching another relationship. */
  addRelationship(relationship: FederationRelationship): void {
    this.#assertOpen();
    this.#start(this.#newState(relationship));
  }

  /**
   * Ends a relationship: stops polling and forgets its bundle at once (validators stop trusting the trust
   * domain), as SPIFFE Federation asks when a relationship ends.
   */
  async removeRelationship(trustDomain: TrustDomain | string): Promise<void> {
    const name = toTrustDomain(trustDomain).name;
    const state = this.#states.get(name);
    if (!state) return;
    this.#states.delete(name);
    state.stop.abort();
    if (state.bundle) this.#rebuild();
    await state.done;
  }

  async #run(state: State): Promise<void> {
    const o = this.#options;
    const minMs = o.minRefreshMs ?? DEFAULT_MIN_REFRESH_MS;
    const maxMs = o.maxRefreshMs ?? DEFAULT_MAX_REFRESH_MS;
    const backoff = new Backoff({ initialMs: 1000, maxMs: maxMs, ...o.backoff });
    const signal = state.stop.signal;
    while (!signal.aborted) {
      let profile = state.profile;
      // Self-serving https_spiffe: after bootstrap, the endpoint is trusted through its own latest bundle.
      if (profile.type === 'https_spiffe' && state.selfServing && state.bundle) {
        profile = { ...profile, bundle: state.bundle };
      }
      let ok = false;
      try {
        const bundle = await fetchBundle({
          trustDomain: state.trustDomain,
          url: state.url,
          profile,
          timeoutMs: o.timeoutMs,
          maxBundleBytes: o.maxBundleBytes,
          maxRedirects: o.maxRedirects,
          signal,
        });
        if (signal.aborted) return;
        this.#adopt(state, bundle);
        ok = true;
      } catch (err) {
        if (signal.aborted) return;
        this.#fail(state, err);
      }
      const hint = state.bundle?.refreshHintSeconds;
      const interval = Math.min(
        maxMs,
        Math.max(minMs, hint === undefined ? (o.defaultRefreshMs ?? DEFAULT_REFRESH_MS) : hint * 1000),
      );
      let delay = interval;
      if (ok) backoff.reset();
      else delay = Math.min(interval, backoff.next());
      state.nextRefresh = new Date(Date.now() + delay);
      if (!(await idle(delay, signal))) return;
    }
  }

  #adopt(state: State, bundle: SpiffeBundle): void {
    const held = state.bundle;
    if (
      held?.sequenceNumber !== undefined &&
      bundle.sequenceNumber !== undefined &&
      bundle.sequenceNumber < held.sequenceNumber
    ) {
      throw new FederationError(
        'FEDERATION_BUNDLE_STALE',
        `bundle for "${state.trustDomain.name}" has sequence ${bundle.sequenceNumber}, older than the ${held.sequenceNumber} held; keeping it`,
        { url: state.url.href },
      );
    }
    state.lastError = undefined;
    state.lastSuccess = new Date();
    if (held && held.marshal() === bundle.marshal()) return; // unchanged: keep objects (and caches keyed on them)
    state.bundle = bundle;
    state.x509 = bundle.x509Bundle();
    state.jwt = bundle.jwtBundle();
    this.#rebuild();
    for (const wake of [...this.#readyWaiters]) wake();
  }

  #fail(state: State, err: unknown): void {
    const error =
      err instanceof FederationError
        ? err
        : new FederationError('FEDERATION_UNAVAILABLE', (err as Error)?.message ?? String(err), { cause: err });
    state.lastError = error;
    state.lastErrorAt = new Date();
    debug('federation: %s: %s', state.trustDomain.name, error.message);
    try {
      this.#options.onError?.(error, state.trustDomain);
    } catch {
      // a throwing callback must not stop the watcher
    }
  }

  #rebuild(): void {
    const held = [...this.#states.values()].filter((s) => s.bundle);
    this.#x509Set = new X509BundleSet(held.map((s) => s.x509 as X509Bundle));
    this.#jwtSet = new JwtBundleSet(held.map((s) => s.jwt as JwtBundle));
    this.#spiffeSet = new SpiffeBundleSet(held.map((s) => s.bundle as SpiffeBundle));
    this.#listeners.emit();
  }

  #assertOpen(): void {
    if (this.#closed) throw new SourceError('SOURCE_CLOSED', 'FederatedBundleSource is closed');
  }

  /** Whether every relationship has a bundle. */
  get isReady(): boolean {
    return [...this.#states.values()].every((s) => s.bundle !== undefined);
  }

  /** Resolves once every relationship has a bundle; rejects with SOURCE_TIMEOUT (last error as cause), abort, SOURCE_CLOSED. */
  async ready(options: ReadyOptions = {}): Promise<this> {
    this.#assertOpen();
    if (this.isReady) return this;
    const { signal, timeoutMs } = options;
    await new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#readyWaiters.delete(check);
      };
      const onAbort = () => {
        cleanup();
        reject(signal?.reason);
      };
      const check = () => {
        if (this.#closed) {
          cleanup();
          reject(new SourceError('SOURCE_CLOSED', 'FederatedBundleSource is closed'));
        } else if (this.isReady) {
          cleanup();
          resolve();
        }
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#readyWaiters.add(check);
      if (timeoutMs !== undefined && timeoutMs > 0) {
        timer = setTimeout(() => {
          cleanup();
          const missing = [...this.#states.values()].filter((s) => !s.bundle);
          const last = missing.find((s) => s.lastError)?.lastError;
          reject(
            new SourceError(
              'SOURCE_TIMEOUT',
              `FederatedBundleSource not ready after ${timeoutMs} ms: no bundle yet for ${missing
                .map((s) => s.trustDomain.name)
                .join(', ')}${last ? ` (${last.message})` : ''}`,
              { cause: last },
            ),
          );
        }, timeoutMs);
      }
    });
    return this;
  }

  /** The federated trust domains' X.509 bundles (those fetched at least once). */
  get x509Bundles(): X509BundleSet {
    this.#assertOpen();
    return this.#x509Set;
  }

  /** The federated trust domains' JWT bundles (those fetched at least once). */
  get jwtBundles(): JwtBundleSet {
    this.#assertOpen();
    return this.#jwtSet;
  }

  /** The federated trust domains' SPIFFE bundles (those fetched at least once). */
  get bundles(): SpiffeBundleSet {
    this.#assertOpen();
    return this.#spiffeSet;
  }

  /** The latest good bundle of a trust domain, if any. */
  getBundle(trustDomain: TrustDomain | string): SpiffeBundle | undefined {
    this.#assertOpen();
    return this.#states.get(toTrustDomain(trustDomain).name)?.bundle;
  }

  /** The latest good X.509 bundle of a federated trust domain; BUNDLE_NOT_FOUND before its first fetch. */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    this.#assertOpen();
    const b = this.#states.get(trustDomain.name)?.x509;
    if (!b) throw notFound('X.509', trustDomain);
    return b;
  }

  /** The latest good JWT bundle of a federated trust domain; BUNDLE_NOT_FOUND before its first fetch. */
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle {
    this.#assertOpen();
    const b = this.#states.get(trustDomain.name)?.jwt;
    if (!b) throw notFound('JWT', trustDomain);
    return b;
  }

  /** What is known about each relationship (bundle, last error, timings). */
  status(): FederationStatus[] {
    return [...this.#states.values()].map((s) => ({
      trustDomain: s.trustDomain,
      url: s.url.href,
      bundle: s.bundle,
      lastError: s.lastError,
      lastSuccess: s.lastSuccess,
      nextRefresh: s.nextRefresh,
    }));
  }

  /**
   * For readiness probes (`checkReadiness`, `healthHandler`): ready while open with a bundle for every
   * relationship (a failing endpoint whose last good bundle is kept stays ready, with the failure as
   * `lastError`); `lastUpdate` is the latest successful fetch.
   */
  health(): SourceHealth {
    const states = [...this.#states.values()];
    const latest = (dates: (Date | undefined)[]) =>
      dates.reduce<Date | undefined>((a, d) => (d && (!a || d > a) ? d : a), undefined);
    const lastUpdate = latest(states.map((s) => s.lastSuccess));
    const failing = states.filter((s) => s.lastError && s.lastErrorAt);
    const lastErrorAt = latest(failing.map((s) => s.lastErrorAt));
    const err = failing.find((s) => s.lastErrorAt === lastErrorAt)?.lastError;
    return {
      source: 'FederatedBundleSource',
      ready: !this.#closed && this.isReady,
      ...(lastUpdate ? { lastUpdate } : {}),
      ...(err && lastErrorAt ? { lastError: { code: err.code, message: err.message, at: lastErrorAt } } : {}),
    };
  }

  /** Runs `listener` after a federated bundle changed (or a relationship was removed); returns the unsubscribe. */
  onUpdate(listener: () => void): () => void {
    return this.#listeners.add(listener);
  }

  /** Stops every watcher. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const states = [...this.#states.values()];
    for (const s of states) s.stop.abort();
    for (const wake of [...this.#readyWaiters]) wake();
    await Promise.all(states.map((s) => s.done));
    this.#listeners.clear();
  }

  /** `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
