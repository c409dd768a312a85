import { JwtBundle } from '../bundle/jwt.js';
import { JwtBundleSet } from '../bundle/set.js';
import { TrustDomain, toSpiffeId } from '../spiffeid/id.js';
import { JwtSvid, unverifiedKeyId } from '../svid/jwt.js';
import { type CallOptions, type JwtSvidParams } from './client.js';
import { bundleOrThrow, type ReadyOptions, type SourceOptions, WorkloadApiSource } from './source.js';

/** Options of {@link JwtSource}. */
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

/**
 * A live JWT source: fetches JWT-SVIDs from the Workload API (cached per audience and subject) and keeps the
 * JWT bundles current, for validating tokens of peers.
 */
export class JwtSource extends WorkloadApiSource {
  #bundles: JwtBundleSet | undefined;
  readonly #cache = new Map<string, { svid: JwtSvid; refreshAt: number }>();
  readonly #inflight = new Map<string, Promise<JwtSvid>>();
  readonly #refreshFraction: number;

  /** Starts watching the JWT bundles; use {@link JwtSource.create} to also wait until ready. */
  constructor(options: JwtSourceOptions = {}) {
    super(options);
    this.#refreshFraction = options.refreshFraction ?? 0.5;
    this.watches.push(
      this.client.watchJwtBundles({
        onUpdate: (set) => {
          this.#bundles = set;
          this.markReadyIf(true);
          this.emitUpdate();
        },
        onError: this.reportError,
      }),
    );
  }

  /** Creates a source and waits until it has the JWT bundles (at most `timeoutMs`, default 30 s). */
  static async create(options: JwtSourceOptions & ReadyOptions = {}): Promise<JwtSource> {
    return WorkloadApiSource.readyOrClose(new JwtSource(options), options);
  }

  /** A JWT-SVID for the audience, from cache while it has more than `refreshFraction` of its life left. */
  async fetchJwtSvid(params: JwtSvidParams, options: CallOptions = {}): Promise<JwtSvid> {
    this.assertOpen();
    // One entry per question, however it is written: audiences as a sorted set, the subject as its ID.
    const aud = [...new Set(typeof params.audience === 'string' ? [params.audience] : params.audience)].sort();
    const subject = params.subject === undefined ? '' : toSpiffeId(params.subject).toString();
    const key = JSON.stringify([aud, subject, params.hint ?? null]);
    const now = Date.now();
    const hit = this.#cache.get(key);
    if (hit && now < hit.refreshAt && hit.svid.expiresAt.getTime() > now && this.#stillSigned(hit.svid)) {
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

  /**
   * Whether the key that signed a cached token is still in its trust domain's JWT bundle. When the agent's
   * authority is rotated (tainted, revoked), the bundle drops the key before the token's half-life, every
   * validator then refuses the token, and the agent already issues tokens from the new key: fetch one.
   */
  #stillSigned(svid: JwtSvid): boolean {
    if (!this.#bundles) return true; // no bundle seen yet: nothing to compare with
    let kid: unknown;
    try {
      kid = unverifiedKeyId(svid.token);
    } catch {
      return false;
    }
    const bundle = this.#bundles.get(svid.id.trustDomain);
    return typeof kid === 'string' && bundle?.findAuthority(kid) !== undefined;
  }

  /** What the source waits for at start-up, for messages. */
  protected override get awaited(): string {
    return 'JWT bundles';
  }

  /** The JWT bundles of the last update. Throws a SourceError (`SOURCE_NOT_READY`, `SOURCE_CLOSED`). */
  get bundles(): JwtBundleSet {
    this.assertReady();
    return this.#bundles as JwtBundleSet;
  }

  /**
   * The JWT bundle of this trust domain. Throws a SourceError (`SOURCE_NOT_READY`, `SOURCE_CLOSED`), or a
   * BundleError (`BUNDLE_NOT_FOUND`) for a trust domain the Workload API sent no bundle for.
   */
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle {
    this.assertReady();
    return bundleOrThrow(this.#bundles, trustDomain, 'JWT');
  }
}
