import { debuglog } from 'node:util';
import { type JwtBundle } from '../bundle/jwt.js';
import { JwtBundleSet, SpiffeBundleSet, X509BundleSet } from '../bundle/set.js';
import { type JwtBundleSource, type X509BundleSource } from '../bundle/source.js';
import { notFound, type X509Bundle } from '../bundle/x509.js';
import { UpdateListeners } from '../internal/listeners.js';
import { type TrustDomain } from '../spiffeid/id.js';
import { type UpdatableSource, type X509SvidSource } from '../svid/source.js';
import { type X509Svid } from '../svid/x509.js';

const debug = debuglog('spiffe');

/**
 * A source whose bundles can be listed: a bundle set, or a live source with `bundles` (X509Source,
 * JwtSource, StaticX509Source, FileX509Source) or `x509Bundles` / `jwtBundles` (BundleSource,
 * FederatedBundleSource, another combination). Reading them may throw (a source that is not ready yet).
 */
export type BundleSetSource =
  | X509BundleSet
  | JwtBundleSet
  | SpiffeBundleSet
  | (Partial<UpdatableSource> & { readonly bundles: X509BundleSet | JwtBundleSet | SpiffeBundleSet })
  | (Partial<UpdatableSource> & { readonly x509Bundles: X509BundleSet; readonly jwtBundles?: JwtBundleSet })
  | (Partial<UpdatableSource> & { readonly jwtBundles: JwtBundleSet; readonly x509Bundles?: X509BundleSet });

interface Sets {
  x509: X509BundleSet | undefined;
  jwt: JwtBundleSet | undefined;
}

function fromSpiffe(set: SpiffeBundleSet): Sets {
  const bundles = set.bundles();
  return {
    x509: new X509BundleSet(bundles.map((b) => b.x509Bundle())),
    jwt: new JwtBundleSet(bundles.map((b) => b.jwtBundle())),
  };
}

// Converted SpiffeBundleSets, kept per set object so that the X509Bundle objects stay the same between reads.
const converted = new WeakMap<SpiffeBundleSet, Sets>();

function setsOf(source: BundleSetSource): Sets {
  if (source instanceof X509BundleSet) return { x509: source, jwt: undefined };
  if (source instanceof JwtBundleSet) return { x509: undefined, jwt: source };
  let spiffe: SpiffeBundleSet | undefined;
  if (source instanceof SpiffeBundleSet) spiffe = source;
  else if ('x509Bundles' in source || 'jwtBundles' in source) {
    const s = source as { x509Bundles?: X509BundleSet; jwtBundles?: JwtBundleSet };
    return { x509: s.x509Bundles, jwt: s.jwtBundles };
  } else {
    const b = source.bundles;
    if (b instanceof X509BundleSet) return { x509: b, jwt: undefined };
    if (b instanceof JwtBundleSet) return { x509: undefined, jwt: b };
    spiffe = b;
  }
  let sets = converted.get(spiffe);
  if (!sets) {
    sets = fromSpiffe(spiffe);
    converted.set(spiffe, sets);
  }
  return sets;
}

/** Union of bundle sets where the first set holding a trust domain wins; memoised on the inputs' identity. */
class Union<S extends X509BundleSet | JwtBundleSet> {
  #inputs: (S | undefined)[] = [];
  #result: S | undefined;
  readonly #make: (bundles: Iterable<X509Bundle | JwtBundle>) => S;

  constructor(make: (bundles: Iterable<X509Bundle | JwtBundle>) => S) {
    this.#make = make;
  }

  of(inputs: (S | undefined)[]): S {
    if (this.#result && inputs.length === this.#inputs.length && inputs.every((s, i) => s === this.#inputs[i])) {
      return this.#result;
    }
    const seen = new Set<string>();
    const out: (X509Bundle | JwtBundle)[] = [];
    for (const set of inputs) {
      for (const b of set?.bundles() ?? []) {
        if (seen.has(b.trustDomain.name)) continue;
        seen.add(b.trustDomain.name);
        out.push(b);
      }
    }
    this.#inputs = inputs;
    this.#result = this.#make(out);
    return this.#result;
  }
}

/**
 * Bundles from several sources as one X509BundleSource / JwtBundleSource: typically the Workload API's
 * (local trust domain and the agent's federated bundles) first, then a FederatedBundleSource. For each trust
 * domain **the first source that has it wins**, so a later source can add trust domains but never replace an
 * earlier source's bundle (bundles of different trust domains are never merged). Listeners run when any
 * source changes.
 */
export class CombinedBundleSource implements X509BundleSource, JwtBundleSource, UpdatableSource {
  readonly #sources: readonly BundleSetSource[];
  readonly #listeners = new UpdateListeners((err) => debug('update listener threw: %o', err));
  readonly #x509 = new Union<X509BundleSet>((b) => new X509BundleSet(b as Iterable<X509Bundle>));
  readonly #jwt = new Union<JwtBundleSet>((b) => new JwtBundleSet(b as Iterable<JwtBundle>));

  constructor(sources: readonly BundleSetSource[]) {
    this.#sources = [...sources];
    for (const s of this.#sources) {
      if (!(s instanceof X509BundleSet || s instanceof JwtBundleSet || s instanceof SpiffeBundleSet)) {
        s.onUpdate?.(() => this.#listeners.emit());
      }
    }
  }

  /** Every trust domain's X.509 bundle (what node:tls needs as its `ca` list); the same object until a change. */
  get x509Bundles(): X509BundleSet {
    return this.#x509.of(this.#sources.map((s) => setsOf(s).x509));
  }

  /** Alias of `x509Bundles`, so a combination fits where an X509MaterialSource's `bundles` is read. */
  get bundles(): X509BundleSet {
    return this.x509Bundles;
  }

  /** Every trust domain's JWT bundle. */
  get jwtBundles(): JwtBundleSet {
    return this.#jwt.of(this.#sources.map((s) => setsOf(s).jwt));
  }

  /** The bundle of the first source that has this trust domain; BUNDLE_NOT_FOUND when none has it. */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    const b = this.x509Bundles.get(trustDomain);
    if (!b) throw notFound('X.509', trustDomain);
    return b;
  }

  /** The JWT bundle of the first source that has this trust domain; BUNDLE_NOT_FOUND when none has it. */
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle {
    const b = this.jwtBundles.get(trustDomain);
    if (!b) throw notFound('JWT', trustDomain);
    return b;
  }

  /** Runs `listener` after any source changed; returns the unsubscribe. */
  onUpdate(listener: () => void): () => void {
    return this.#listeners.add(listener);
  }
}

/** Combines bundle sources; for each trust domain the first source that has a bundle wins. */
export function combineBundleSources(...sources: BundleSetSource[]): CombinedBundleSource {
  return new CombinedBundleSource(sources);
}

/** An X.509-SVID source whose trust bundles come from a combination of sources (see `withFederatedBundles`). */
export class X509SourceWithBundles extends CombinedBundleSource implements X509SvidSource {
  readonly #svids: X509SvidSource;

  constructor(svids: X509SvidSource & BundleSetSource, more: readonly BundleSetSource[]) {
    super([svids, ...more]);
    this.#svids = svids;
  }

  /** The wrapped source's current SVID. */
  getX509Svid(): X509Svid {
    return this.#svids.getX509Svid();
  }
}

/**
 * The SVID of `source` with its bundles plus federated ones: fits everywhere an X509MaterialSource goes
 * (`spiffeServerTls`, `createSpiffeHttpsAgent`, `createSpiffeDispatcher`, every adapter), and is a
 * JwtBundleSource too. The source's own bundles win for every trust domain they hold; `federated` (e.g. a
 * FederatedBundleSource) adds the others. TLS material and peer verification follow changes of both.
 *
 * @example
 * ```ts
 * const federated = await FederatedBundleSource.create({ relationships: [{ trustDomain: 'partner.test', url, profile }] });
 * const tls = spiffeServerTls(withFederatedBundles(x509Source, federated));
 * ```
 */
export function withFederatedBundles(
  source: X509SvidSource & BundleSetSource,
  ...federated: BundleSetSource[]
): X509SourceWithBundles {
  return new X509SourceWithBundles(source, federated);
}
