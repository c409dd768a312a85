import { JwtBundle } from '../bundle/jwt.js';
import { JwtBundleSet, X509BundleSet } from '../bundle/set.js';
import { X509Bundle } from '../bundle/x509.js';
import { TrustDomain } from '../spiffeid/id.js';
import { bundleOrThrow, type ReadyOptions, type SourceOptions, WorkloadApiSource } from './source.js';

/** A live source of both X.509 and JWT bundles (for workloads that only verify peers). */
export class BundleSource extends WorkloadApiSource {
  #x509: X509BundleSet | undefined;
  #jwt: JwtBundleSet | undefined;

  /** Starts watching the X.509 and JWT bundles; use {@link BundleSource.create} to also wait until ready. */
  constructor(options: SourceOptions = {}) {
    super(options);
    this.watches.push(
      this.client.watchX509Bundles({
        onUpdate: (set) => {
          this.#x509 = set;
          this.markReadyIf(this.#jwt !== undefined);
          this.emitUpdate();
        },
        onError: this.reportError,
      }),
      this.client.watchJwtBundles({
        onUpdate: (set) => {
          this.#jwt = set;
          this.markReadyIf(this.#x509 !== undefined);
          this.emitUpdate();
        },
        onError: this.reportError,
      }),
    );
  }

  /** Creates a source and waits until it has both bundle sets (at most `timeoutMs`, default 30 s). */
  static async create(options: SourceOptions & ReadyOptions = {}): Promise<BundleSource> {
    return WorkloadApiSource.readyOrClose(new BundleSource(options), options);
  }

  /** What the source waits for at start-up, for messages. */
  protected override get awaited(): string {
    return 'X.509 and JWT bundles';
  }

  /** The X.509 bundles of the last update. Throws a SourceError (`SOURCE_NOT_READY`, `SOURCE_CLOSED`). */
  get x509Bundles(): X509BundleSet {
    this.assertReady();
    return this.#x509 as X509BundleSet;
  }

  /** The JWT bundles of the last update. Throws a SourceError (`SOURCE_NOT_READY`, `SOURCE_CLOSED`). */
  get jwtBundles(): JwtBundleSet {
    this.assertReady();
    return this.#jwt as JwtBundleSet;
  }

  /**
   * The X.509 bundle of this trust domain. Throws a SourceError (`SOURCE_NOT_READY`, `SOURCE_CLOSED`), or a
   * BundleError (`BUNDLE_NOT_FOUND`) for a trust domain the Workload API sent no bundle for.
   */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    this.assertReady();
    return bundleOrThrow(this.#x509, trustDomain, 'X.509');
  }

  /**
   * The JWT bundle of this trust domain. Throws a SourceError (`SOURCE_NOT_READY`, `SOURCE_CLOSED`), or a
   * BundleError (`BUNDLE_NOT_FOUND`) for a trust domain the Workload API sent no bundle for.
   */
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle {
    this.assertReady();
    return bundleOrThrow(this.#jwt, trustDomain, 'JWT');
  }
}
