import { JwtBundle } from '../bundle/jwt.js';
import { BundleReuse } from '../bundle/reuse.js';
import { JwtBundleSet, X509BundleSet } from '../bundle/set.js';
import { X509Bundle } from '../bundle/x509.js';
import { WorkloadApiError } from '../errors.js';
import { partsKey } from '../internal/x509util.js';
import { TrustDomain } from '../spiffeid/id.js';
import { insecureParseJwtSvid, JwtSvid } from '../svid/jwt.js';
import { X509Svid } from '../svid/x509.js';
// Type only: \`import { type … }\` would still load proto.ts (and protobufjs) under verbatimModuleSyntax.
import type {
  JWTBundlesResponseMessage,
  JWTSVIDResponseMessage,
  X509BundlesResponseMessage,
  X509SVIDResponseMessage,
} from './proto.js';

/** What FetchX509SVID delivers: every SVID of the workload and the bundles it trusts. */
export interface X509Context {
  /** All SVIDs, in the order the Workload API sent them (the first one is the default). */
  readonly svids: readonly X509Svid[];
  /** The workload's trust domain bundle plus federated bundles. */
  readonly bundles: X509BundleSet;
}

// The Workload API resends unchanged SVIDs and bundles (on every fetch, and on every stream update that
// changes anything else). Parsing is deterministic and the results are immutable, so identical bytes reuse
// the previous result: keyed by a SHA-256 of the exact bytes, bounded, least recently used evicted.
export class ParseCache<T> {
  readonly #entries = new Map<string, T>();
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  get(parts: ReadonlyArray<Uint8Array | string>, parse: () => T): T {
    const key = partsKey(parts);
    const hit = this.#entries.get(key);
    if (hit !== undefined) {
      // Most recently used last: an update that resends every bundle keeps them all.
      this.#entries.delete(key);
      this.#entries.set(key, hit);
      return hit;
    }
    const value = parse(); // throws on bad input: nothing is cached
    if (this.#entries.size >= this.#max) this.#entries.delete(this.#entries.keys().next().value as string);
    this.#entries.set(key, value);
    return value;
  }
}

const svidCache = new ParseCache<X509Svid>(64);

// An agent may deliver hundreds or thousands of federated bundles in every update, and parsing certificates is
// the costly part of an update: with fewer entries than trust domains the cache would never hit (bench/README.md).
// Sized for thousands of trust domains; an entry is one bundle's few certificates.
const BUNDLE_CACHE_MAX = 8192;

// Keyed by the trust domain as written, reused only for byte-identical bytes (bundle/reuse.ts).
const bundleCache = new BundleReuse<X509Bundle>(BUNDLE_CACHE_MAX);

const jwtBundleCache = new BundleReuse<JwtBundle>(BUNDLE_CACHE_MAX);

/** Absent bytes fields as empty bytes. */
export const bytes = (b: Uint8Array | null | undefined): Uint8Array => b ?? new Uint8Array(0);

/** The bundle of trust domain `td` (as the message names it) read from `der`, reused while `der` is unchanged. */
export function cachedBundle(td: string, der: Uint8Array): X509Bundle {
  return bundleCache.get(td, der, () => X509Bundle.parse(TrustDomain.parse(td), der));
}

/** Parses a FetchX509SVID response into SVIDs and bundles. */
export function parseX509SvidResponse(resp: X509SVIDResponseMessage): X509Context {
  if (!resp.svids || resp.svids.length === 0) {
    throw new WorkloadApiError('WORKLOADAPI_BAD_RESPONSE', 'no SVIDs in X509SVIDResponse');
  }
  const bundles: X509Bundle[] = [];
  const svids = resp.svids.map((m) => {
    const svid = svidCache.get([bytes(m.x509_svid), bytes(m.x509_svid_key), m.hint ?? ''], () =>
      X509Svid.parse(m.x509_svid, m.x509_svid_key, { hint: m.hint }),
    );
    if (m.spiffe_id && m.spiffe_id !== svid.id.toString()) {
      throw new WorkloadApiError(
        'WORKLOADAPI_BAD_RESPONSE',
        `SVID spiffe_id "${m.spiffe_id}" does not match its certificate (${svid.id})`,
      );
    }
    if (m.bundle && m.bundle.length > 0) bundles.push(cachedBundle(svid.id.trustDomain.name, m.bundle));
    return svid;
  });
  for (const [td, der] of Object.entries(resp.federated_bundles ?? {})) {
    bundles.push(cachedBundle(td, der));
  }
  return { svids, bundles: new X509BundleSet(bundles) };
}

/** A FetchX509Bundles response as a bundle set (each bundle parsed). */
export function parseX509BundlesResponse(resp: X509BundlesResponseMessage): X509BundleSet {
  return new X509BundleSet(Object.entries(resp.bundles ?? {}).map(([td, der]) => cachedBundle(td, der)));
}

/** A FetchJWTBundles response as a bundle set (each JWKS is parsed). */
export function parseJwtBundlesResponse(resp: JWTBundlesResponseMessage): JwtBundleSet {
  return new JwtBundleSet(
    Object.entries(resp.bundles ?? {}).map(([td, jwks]) =>
      jwtBundleCache.get(td, jwks, () => JwtBundle.parse(TrustDomain.parse(td), jwks)),
    ),
  );
}

/** A FetchJWTSVID response as its JWT-SVIDs (tokens parsed, not validated: they come from the agent). */
export function parseJwtSvidResponse(res: JWTSVIDResponseMessage): readonly JwtSvid[] {
  if (!res.svids || res.svids.length === 0) {
    throw new WorkloadApiError('WORKLOADAPI_BAD_RESPONSE', 'FetchJWTSVID: there were no SVIDs in the response');
  }
  return Object.freeze(res.svids.map((s) => insecureParseJwtSvid(s.svid, s.hint)));
}

/** Remembers the last response's bytes and what they were read into. */
export class LastResponse<T> {
  #bytes: Buffer | undefined;
  #value: T | undefined;
  readonly #read: (bytes: Buffer) => T;
  constructor(read: (bytes: Buffer) => T) {
    this.#read = read;
  }
  read(bytes: Buffer): T {
    if (this.#bytes?.equals(bytes)) return this.#value as T;
    const value = this.#read(bytes); // throws on bad input: nothing is remembered
    this.#bytes = Buffer.from(bytes); // a copy: `bytes` may be a view into a larger buffer
    this.#value = value;
    return value;
  }
}

/** Freezes a context (and its SVID list) so that one decoded response can be shared by callers. */
export function freezeContext(ctx: X509Context): X509Context {
  Object.freeze(ctx.svids);
  return Object.freeze(ctx);
}
