import { X509BundleSet } from '../bundle/set.js';
import { X509Bundle } from '../bundle/x509.js';
import { SourceError } from '../errors.js';
import { checkX509Update } from '../internal/adopt.js';
import { checkNotExpired } from '../internal/expiry.js';
import { countRotation } from '../observability/metrics.js';
import { SpiffeId, TrustDomain, toSpiffeId } from '../spiffeid/id.js';
import { X509Svid } from '../svid/x509.js';
import { type X509Context } from './parse.js';
import { bundleOrThrow, type ReadyOptions, type SourceOptions, WorkloadApiSource } from './source.js';

/** Options of {@link X509Source}. */
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

  /** Starts watching the X.509 context; use {@link X509Source.create} to also wait until ready. */
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

  /**
   * Creates a source and waits until it has an SVID: at most `timeoutMs` (default 30 s; `Infinity` waits
   * forever), then fails with SOURCE_TIMEOUT naming the address and what is wrong.
   */
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
    const previous = this.#svid;
    this.#context = ctx;
    this.#svid = svid;
    if (previous && !previous.leaf.raw.equals(svid.leaf.raw)) countRotation({ source: 'X509Source' });
    this.markReadyIf(true);
    this.emitUpdate();
  }

  /** What the source waits for at start-up, for messages. */
  protected override get awaited(): string {
    return 'X.509-SVID';
  }

  /** Usable while the current SVID has not expired. */
  protected override get usable(): boolean {
    return this.#svid !== undefined && this.#svid.expiresAt.getTime() > Date.now();
  }

  /** The current SVID's ID and expiry (undefined before the first one). */
  override svidExpiry(): { id: string; expiresAt: Date } | undefined {
    const svid = this.#svid;
    return svid ? { id: svid.id.toString(), expiresAt: svid.expiresAt } : undefined;
  }

  /** The current SVID. Throws SOURCE_NOT_READY, SOURCE_CLOSED, or SOURCE_SVID_EXPIRED. */
  getX509Svid(): X509Svid {
    this.assertReady();
    return checkNotExpired(this.#svid as X509Svid, ' and no rotation arrived');
  }

  /** Every SVID from the last update. */
  getX509Svids(): readonly X509Svid[] {
    this.assertReady();
    return (this.#context as X509Context).svids;
  }

  /** The X.509 bundles of the last update. Throws a SourceError (`SOURCE_NOT_READY`, `SOURCE_CLOSED`). */
  get bundles(): X509BundleSet {
    this.assertReady();
    return (this.#context as X509Context).bundles;
  }

  /**
   * The X.509 bundle of this trust domain. Throws a SourceError (`SOURCE_NOT_READY`, `SOURCE_CLOSED`), or a
   * BundleError (`BUNDLE_NOT_FOUND`) for a trust domain the Workload API sent no bundle for.
   */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    this.assertReady();
    return bundleOrThrow(this.#context?.bundles, trustDomain, 'X.509');
  }
}
