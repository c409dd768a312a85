import { X509Certificate } from 'node:crypto';
import { TrustDomain, toTrustDomain } from '../spiffeid/id.js';
import { JwtBundle } from './jwt.js';
import { type JwtBundleSource, type X509BundleSource } from './source.js';
import { SpiffeBundle } from './spiffe.js';
import { notFound, X509Bundle } from './x509.js';

/** Bundles keyed by trust domain (the local one plus federated ones). Immutable. */
export class BundleSet<B extends { readonly trustDomain: TrustDomain }> {
  readonly #byName: ReadonlyMap<string, B>;

  /** A set of these bundles; a later bundle for the same trust domain replaces an earlier one. */
  constructor(bundles: Iterable<B> = []) {
    const map = new Map<string, B>();
    for (const b of bundles) map.set(b.trustDomain.name, b);
    this.#byName = map;
  }

  /**
   * The bundle of this trust domain, or undefined. A string is parsed as a trust domain (throws a SpiffeIdError
   * if invalid).
   */
  get(trustDomain: TrustDomain | string): B | undefined {
    return this.#byName.get(typeof trustDomain === 'string' ? toTrustDomain(trustDomain).name : trustDomain.name);
  }

  /** True when the set holds a bundle for this trust domain (a string is parsed as in {@link BundleSet.get}). */
  has(trustDomain: TrustDomain | string): boolean {
    return this.get(trustDomain) !== undefined;
  }

  /** A new set with this bundle added, replacing the one of the same trust domain; this set is unchanged. */
  with(bundle: B): this {
    const Ctor = this.constructor as new (b: Iterable<B>) => this;
    return new Ctor([...this.#byName.values(), bundle]);
  }

  /** A new set without this trust domain's bundle; this set is unchanged. */
  without(trustDomain: TrustDomain | string): this {
    const name = typeof trustDomain === 'string' ? toTrustDomain(trustDomain).name : trustDomain.name;
    const Ctor = this.constructor as new (b: Iterable<B>) => this;
    return new Ctor([...this.#byName.values()].filter((b) => b.trustDomain.name !== name));
  }

  /** Every bundle, sorted by trust domain name. */
  bundles(): B[] {
    return [...this.#byName.values()].sort((a, b) => a.trustDomain.name.localeCompare(b.trustDomain.name));
  }

  /** Every trust domain of the set, sorted by name. */
  trustDomains(): TrustDomain[] {
    return this.bundles().map((b) => b.trustDomain);
  }

  /** Number of trust domains in the set. */
  get size(): number {
    return this.#byName.size;
  }
}

/** X.509 bundles by trust domain: an X509BundleSource for verifying peers of several trust domains. */
export class X509BundleSet extends BundleSet<X509Bundle> implements X509BundleSource {
  /** The trust domain's X.509 bundle; throws a BundleError (`BUNDLE_NOT_FOUND`) when the set has none. */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    const b = this.get(trustDomain);
    if (!b) throw notFound('X.509', trustDomain);
    return b;
  }

  /** Every authority of every trust domain (what a TLS stack needs as its `ca` list). */
  allAuthorities(): X509Certificate[] {
    return this.bundles().flatMap((b) => [...b.authorities]);
  }

  /** True when both sets hold the same trust domains with the same authorities (see {@link X509Bundle.equals}). */
  equals(other: X509BundleSet): boolean {
    const a = this.bundles();
    const b = other.bundles();
    return a.length === b.length && a.every((x, i) => b[i] !== undefined && x.equals(b[i]));
  }
}

/** JWT bundles by trust domain: a JwtBundleSource for validating JWT-SVIDs of several trust domains. */
export class JwtBundleSet extends BundleSet<JwtBundle> implements JwtBundleSource {
  /** The trust domain's JWT bundle; throws a BundleError (`BUNDLE_NOT_FOUND`) when the set has none. */
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle {
    const b = this.get(trustDomain);
    if (!b) throw notFound('JWT', trustDomain);
    return b;
  }
}

/** SPIFFE bundles by trust domain: serves both their X.509 and JWT bundles. */
export class SpiffeBundleSet extends BundleSet<SpiffeBundle> implements X509BundleSource, JwtBundleSource {
  /** The trust domain's X.509 bundle; throws a BundleError (`BUNDLE_NOT_FOUND`) when the set has none. */
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle {
    const b = this.get(trustDomain);
    if (!b) throw notFound('X.509', trustDomain);
    return b.x509Bundle();
  }

  /** The trust domain's JWT bundle; throws a BundleError (`BUNDLE_NOT_FOUND`) when the set has none. */
  getJwtBundleForTrustDomain(trustDomain: TrustDomain): JwtBundle {
    const b = this.get(trustDomain);
    if (!b) throw notFound('JWT', trustDomain);
    return b.jwtBundle();
  }
}
