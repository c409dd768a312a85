import { debuglog } from 'node:util';
import { checkX509Update } from '../adopt.js';
import type { JwtBundle, JwtBundleSet, X509Bundle, X509BundleSet } from '../bundle.js';
import { BundleError, SourceError, type SpiffeError } from '../errors.js';
import type { JwtSvid } from '../jwtsvid.js';
import { type UpdatableSource, UpdateListeners } from '../source.js';
import { type SpiffeId, type TrustDomain, toSpiffeId } from '../spiffeid.js';
import type { X509Svid } from '../x509svid.js';
import {
  type CallOptions,
  type JwtSvidParams,
  type Watch,
  WorkloadApiClient,
  type WorkloadApiClientOptions,
  type X509Context,
} from './client.js';

const debug = debuglog('spiffe');

export interface SourceOptions extends WorkloadApiClientOptions {
  /** Use this client instead of creating one (the source will not close it). */
  client?: WorkloadApiClient;
  /** Called with every Workload API failure while the source keeps retrying. */
  onError?: (error: SpiffeError) => void;
}

export interface ReadyOptions {
  signal?: AbortSignal;
  /** Give up after this many ms (default: wait until the signal aborts). */
  timeoutMs?: number;
}

/** Common machinery: owns (or borrows) a client, a readiness promise, update listeners and close. */
abstract class WorkloadApiSource implements UpdatableSource {
  protected readonly client: WorkloadApiClient;
  readonly #ownsClient: boolean;
  protected readonly listeners: UpdateListeners;
  protected readonly watches: Watch[] = [];
  protected closed = false;
  #lastError: SpiffeError | undefined;
  readonly #onError: ((e: SpiffeError) => void) | undefined;
  #readyResolve!: () => void;
  readonly #readyPromise: Promise<void>;
  #isReady = false;

  protected constructor(options: SourceOptions) {
    this.#ownsClient = !options.client;
    this.client = options.client ?? new WorkloadApiClient(options);
    this.#onError = options.onError;
    this.listeners = new UpdateListeners((err) => debug('update listener threw: %o', err));
    this.#readyPromise = new Promise((resolve) => {
      this.#readyResolve = resolve;
    });
  }

  protected reportError = (err: SpiffeError): void => {
    this.#lastError = err;
    debug('%s: %s', this.constructor.name, err.message);
    try {
      this.#onError?.(err);
    } catch {
      // ignore
    }
  };

  /** Subclasses call this when every stream they need has delivered once. */
  protected markReadyIf(condition: boolean): void {
    if (condition && !this.#isReady) {
      this.#isReady = true;
      this.#readyResolve();
    }
  }

  get isReady(): boolean {
    return this.#isReady;
  }

  /** The last Workload API error seen (useful when ready() times out). */
  get lastError(): SpiffeError | undefined {
    return this.#lastError;
  }

  /** Resolves once the first update arrived; rejects with SOURCE_TIMEOUT/abort/SOURCE_CLOSED. */
  async ready(options: ReadyOptions = {}): Promise<this> {
    if (this.closed) throw new SourceError('SOURCE_CLOSED', `${this.constructor.name} is closed`);
    if (this.#isReady) return this;
    const { signal, timeoutMs } = options;
    await new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = () => {
        cleanup();
        reject(signal?.reason);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs !== undefined && timeoutMs > 0) {
        timer = setTimeout(() => {
          cleanup();
          const last = this.#lastError;
          reject(
            new SourceError(
              'SOURCE_TIMEOUT',
              `${this.constructor.name} not ready after ${timeoutMs} ms${last ? `: ${last.message}` : ' (no response from the Workload API)'}`,
              { cause: last },
            ),
          );
        }, timeoutMs);
      }
      this.#readyPromise.then(() => {
        cleanup();
        resolve();
      });
    });
    return this;
  }

  onUpdate(listener: () => void): () => void {
    return this.listeners.add(listener);
  }

  /** Waits for a new source to be ready; closes it if that fails (used by every `create`). */
  protected static async readyOrClose<S extends WorkloadApiSource>(source: S, options: ReadyOptions): Promise<S> {
    try {
      return await source.ready(options);
    } catch (err) {
      await source.close();
      throw err;
    }
  }

  protected assertOpen(): void {
    if (this.closed) throw new SourceError('SOURCE_CLOSED', `${this.constructor.name} is closed`);
  }

  protected assertReady(): void {
    this.assertOpen();
    if (!this.#isReady)
      throw new SourceError('SOURCE_NOT_READY', `${this.constructor.name} is not ready yet: await ready()`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches) w.stop();
    await Promise.all(this.watches.map((w) => w.done));
    this.listeners.clear();
    if (this.#ownsClient) await this.client.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function bundleOrThrow<B>(set: { get(td: TrustDomain): B | undefined } | undefined, td: TrustDomain, kind: string): B {
  const b = set?.get(td);
  if (!b) throw new BundleError('BUNDLE_NOT_FOUND', `no ${kind} bundle for trust domain "${td.name}"`);
  return b;
}

export interface X509SourceOptions extends SourceOptions {
  /** Choose among several SVIDs: by SPIFFE ID, by hint, or with a function. Default: the first. */
  pick?: { spiffeId: SpiffeId | string } | { hint: string } | ((svids: readonly X509Svid[]) => X509Svid | undefined);
  /**
   * Accept an update whose SVID is in another trust domain than the one in use (default false: such an
   * update is refused with SOURCE_TRUST_DOMAIN_CHANGED and the previous material is kept).
   */
  allowTrustDomainChange?: boolean;
}

/**
 * A live X.509 source: the current SVID and bundle set from the Workload API, rotated as the agent pushes
 * updates. Implements X509SvidSource and X509BundleSource; never serves an expired SVID.
 */
export class X509Source extends WorkloadApiSource {
  #context: X509Context | undefined;
  #svid: X509Svid | undefined;
  readonly #pick: (svids: readonly X509Svid[]) => X509Svid | undefined;
  readonly #allowTrustDomainChange: boolean;

  constructor(options: X509SourceOptions = {}) {
    super(options);
    this.#allowTrustDomainChange = options.allowTrustDomainChange ?? false;
    const pick = options.pick;
    if (typeof pick === 'function') this.#pick = pick;
    else if (pick && 'spiffeId' in pick) {
      const want = toSpiffeId(pick.spiffeId).toString();
      this.#pick = (svids) => svids.find((s) => s.id.toString() === want);
    } else if (pick && 'hint' in pick) this.#pick = (svids) => svids.find((s) => s.hint === pick.hint);
    else this.#pick = (svids) => svids[0];
    this.watches.push(
      this.client.watchX509Context({
        onUpdate: (ctx) => this.#update(ctx),
        onError: this.reportError,
      }),
    );
  }

  /** Creates a source and waits until it has an SVID. */
  static async create(options: X509SourceOptions & ReadyOptions = {}): Promise<X509Source> {
    return WorkloadApiSource.readyOrClose(new X509Source(options), options);
  }

  #update(ctx: X509Context): void {
    const svid = this.#pick(ctx.svids);
    if (!svid) {
      this.reportError(new SourceError('SOURCE_NO_SVID', 'no SVID matched the picker in the Workload API update'));
      return;
    }
    try {
      checkX509Update(ctx.svids, ctx.bundles, {
        previous: this.#svid?.id.trustDomain,
        next: svid.id.trustDomain,
        allowTrustDomainChange: this.#allowTrustDomainChange,
      });
    } catch (err) {
      this.reportError(err as SourceError);
      return;
    }
    this.#context = ctx;
    this.#svid = svid;
    this.markReadyIf(true);
    this.listeners.emit();
  }

  /** The current SVID. Throws SOURCE_NOT_READY, SOURCE_CLOSED, or SOURCE_SVID_EXPIRED. */
  getX509Svid(): X509Svid {
    this.assertReady();
    const svid = this.#svid as X509Svid;
    if (svid.expiresAt.getTime() <= Date.now()) {
      throw new SourceError(
        'SOURCE_SVID_EXPIRED',
        `the X.509-SVID for ${svid.id} expired at ${svid.expiresAt.toISOString()} and no rotation arrived`,
      );
    }
    return svid;
  }

  /** Every SVID from the last update. */
  getX509Svids(): readonly X509Svid[] {
    this.assertReady();
    return (this.#context as X509Context).svids;
  }

  get bundles(): X509BundleSet {
    this.assertReady();
    return (this.#context as X509Context).bundles;
  }

  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    this.assertReady();
    return bundleOrThrow(this.#context?.bundles, trustDomain, 'X.509');
  }
}

export interface JwtSourceOptions extends SourceOptions {
  /**
   * Refetch a cached JWT-SVID once less than this fraction of its lifetime remains (default 0.5, like the
   * SPIRE agent's own refresh).
   */
  refreshFraction?: number;
}

/**
 * A live JWT source: JWT bundles streamed from the Workload API (for validation) and JWT-SVIDs fetched on
 * demand for an audience, cached until near expiry.
 */
// Distinct (audience set, subject) questions a JwtSource remembers answers to; the least recently used goes.
const JWT_CACHE_MAX = 256;

export class JwtSource extends WorkloadApiSource {
  #bundles: JwtBundleSet | undefined;
  readonly #cache = new Map<string, { svid: JwtSvid; refreshAt: number }>();
  readonly #inflight = new Map<string, Promise<JwtSvid>>();
  readonly #refreshFraction: number;

  constructor(options: JwtSourceOptions = {}) {
    super(options);
    this.#refreshFraction = options.refreshFraction ?? 0.5;
    this.watches.push(
      this.client.watchJwtBundles({
        onUpdate: (set) => {
          this.#bundles = set;
          this.markReadyIf(true);
          this.listeners.emit();
        },
        onError: this.reportError,
      }),
    );
  }

  static async create(options: JwtSourceOptions & ReadyOptions = {}): Promise<JwtSource> {
    return WorkloadApiSource.readyOrClose(new JwtSource(options), options);
  }

  /** A JWT-SVID for the audience, from cache while it has more than `refreshFraction` of its life left. */
  async fetchJwtSvid(params: JwtSvidParams, options: CallOptions = {}): Promise<JwtSvid> {
    this.assertOpen();
    // One entry per question, however it is written: audiences as a sorted set, the subject as its ID.
    const aud = [...new Set(typeof params.audience === 'string' ? [params.audience] : params.audience)].sort();
    const subject = params.subject === undefined ? '' : toSpiffeId(params.subject).toString();
    const key = JSON.stringify([aud, subject]);
    const now = Date.now();
    const hit = this.#cache.get(key);
    if (hit && now < hit.refreshAt && hit.svid.expiresAt.getTime() > now) {
      this.#cache.delete(key); // most recently used last: eviction takes the oldest
      this.#cache.set(key, hit);
      return hit.svid;
    }
    const pending = this.#inflight.get(key);
    if (pending) return pending;
    const p = this.client
      .fetchJwtSvid(params, options)
      .then((svid) => {
        const issuedAt = typeof svid.claims.iat === 'number' ? svid.claims.iat * 1000 : Date.now();
        const life = svid.expiresAt.getTime() - issuedAt;
        this.#cache.delete(key);
        if (this.#cache.size >= JWT_CACHE_MAX) this.#cache.delete(this.#cache.keys().next().value as string);
        this.#cache.set(key, { svid, refreshAt: svid.expiresAt.getTime() - life * this.#refreshFraction });
        return svid;
      })
      .finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }

  get bundles(): JwtBundleSet {
    this.assertReady();
    return this.#bundles as JwtBundleSet;
  }

  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle {
    this.assertReady();
    return bundleOrThrow(this.#bundles, trustDomain, 'JWT');
  }
}

/** A live source of both X.509 and JWT bundles (for workloads that only verify peers). */
export class BundleSource extends WorkloadApiSource {
  #x509: X509BundleSet | undefined;
  #jwt: JwtBundleSet | undefined;

  constructor(options: SourceOptions = {}) {
    super(options);
    this.watches.push(
      this.client.watchX509Bundles({
        onUpdate: (set) => {
          this.#x509 = set;
          this.markReadyIf(this.#jwt !== undefined);
          this.listeners.emit();
        },
        onError: this.reportError,
      }),
      this.client.watchJwtBundles({
        onUpdate: (set) => {
          this.#jwt = set;
          this.markReadyIf(this.#x509 !== undefined);
          this.listeners.emit();
        },
        onError: this.reportError,
      }),
    );
  }

  static async create(options: SourceOptions & ReadyOptions = {}): Promise<BundleSource> {
    return WorkloadApiSource.readyOrClose(new BundleSource(options), options);
  }

  get x509Bundles(): X509BundleSet {
    this.assertReady();
    return this.#x509 as X509BundleSet;
  }

  get jwtBundles(): JwtBundleSet {
    this.assertReady();
    return this.#jwt as JwtBundleSet;
  }

  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    this.assertReady();
    return bundleOrThrow(this.#x509, trustDomain, 'X.509');
  }

  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle {
    this.assertReady();
    return bundleOrThrow(this.#jwt, trustDomain, 'JWT');
  }
}
