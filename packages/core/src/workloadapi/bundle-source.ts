import { JwtBundle } from '../bundle/jwt.js';
import { JwtBundleSet, X509BundleSet } from '../bundle/set.js';
import { X509Bundle } from '../bundle/x509.js';
import { TrustDomain } from '../spiffeid/id.js';
import { bundleOrThrow, type ReadyOptions, type SourceOptions, WorkloadApiSource } from './source.js';

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

  protected override get awaited(): string {
    return 'X.509 and JWT bundles';
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
