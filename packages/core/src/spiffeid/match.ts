import { AuthorizationError, SpiffeIdError } from '../errors.js';
import { SpiffeId, TrustDomain, toSpiffeId, toTrustDomain, validatePath } from './id.js';

/**
 * A predicate over a *verified* SPIFFE ID. Matchers are how every adapter decides who may call:
 * the TLS layer, Fastify routes, Express routers, Nest guards and gRPC interceptors all take one.
 */
export type SpiffeIdMatcher = (id: SpiffeId) => boolean;

/** Matches any (verified) SPIFFE ID. */
export function matchAny(): SpiffeIdMatcher {
  return () => true;
}

/** Matches exactly one SPIFFE ID. Invalid input throws SpiffeIdError at construction. */
export function matchId(expected: SpiffeId | string): SpiffeIdMatcher {
  const want = toSpiffeId(expected).toString();
  return (id) => id.toString() === want;
}

/** Matches any ID of a list. An empty list matches nothing (deny by default). */
export function matchOneOf(...expected: Array<SpiffeId | string>): SpiffeIdMatcher {
  const set = new Set(expected.map((e) => toSpiffeId(e).toString()));
  return (id) => set.has(id.toString());
}

/** Matches every ID in the given trust domain. */
export function matchMemberOf(trustDomain: TrustDomain | string): SpiffeIdMatcher {
  const td = toTrustDomain(trustDomain).name;
  return (id) => id.trustDomain.name === td;
}

// A compiled path rule: literal segments, `null` for a `*` segment; `prefix` also admits longer paths and
// `descendants` (a prefix written with a trailing slash) refuses the prefix itself.
interface PathRule {
  readonly segments: ReadonlyArray<string | null>;
  readonly prefix: boolean;
  readonly descendants: boolean;
}

function pathSegments(path: string): string[] {
  return path === '' ? [] : path.slice(1).split('/');
}

// Patterns get the same validation as IDs: `*` segments are checked as if they were a plain segment, so any
// other use of `*` (`/ns/prod*`), empty or dot segments, and bad characters throw SpiffeIdError.
function compilePath(path: string, kind: 'pattern' | 'prefix'): PathRule {
  if (typeof path !== 'string') throw new SpiffeIdError('SPIFFEID_NOT_STRING', `path ${kind} must be a string`);
  if (path === '' || path.charCodeAt(0) !== 0x2f) {
    throw new SpiffeIdError('SPIFFEID_NO_LEADING_SLASH', `path ${kind} must start with a slash`);
  }
  let body = path;
  let descendants = false;
  if (kind === 'prefix' && path.length > 1 && path.endsWith('/')) {
    body = path.slice(0, -1);
    descendants = true;
  } else if (kind === 'prefix' && path === '/') {
    return { segments: [], prefix: true, descendants: true };
  }
  const raw = pathSegments(body);
  const segments = raw.map((s) => (kind === 'pattern' && s === '*' ? null : s));
  validatePath(`/${raw.map((s, i) => (segments[i] === null ? 'x' : s)).join('/')}`);
  return { segments, prefix: kind === 'prefix', descendants };
}

function pathMatches(rule: PathRule, segs: readonly string[]): boolean {
  const want = rule.segments;
  if (rule.prefix ? segs.length < want.length : segs.length !== want.length) return false;
  if (rule.descendants && segs.length === want.length) return false;
  for (let i = 0; i < want.length; i++) {
    const w = want[i];
    if (w !== null && w !== segs[i]) return false;
  }
  return true;
}

// Splitting the path costs an allocation: done once per ID object, and only when a path rule looks at it.
const segmentCache = new WeakMap<SpiffeId, readonly string[]>();
function segmentsOf(id: SpiffeId): readonly string[] {
  let segs = segmentCache.get(id);
  if (!segs) {
    segs = pathSegments(id.path);
    segmentCache.set(id, segs);
  }
  return segs;
}

function splitPattern(pattern: SpiffeId | string): { td: string; path: string } {
  if (pattern instanceof SpiffeId) return { td: pattern.trustDomain.name, path: pattern.path };
  if (typeof pattern !== 'string') throw new SpiffeIdError('SPIFFEID_NOT_STRING', 'path pattern must be a string');
  const m = /^spiffe:\/\/([^/]*)(\/.*)?$/.exec(pattern);
  if (!m) {
    // Let the ID parser say what is wrong with the scheme or trust domain.
    toSpiffeId(pattern.replace(/\*/g, 'x'));
    throw new SpiffeIdError('SPIFFEID_WRONG_SCHEME', 'path pattern must be a spiffe:// URI');
  }
  return { td: toTrustDomain(m[1] ?? '').name, path: m[2] ?? '' };
}

/**
 * Matches IDs of one trust domain whose path fits a segment pattern, where a `*` segment stands for exactly
 * one segment: `matchPath('spiffe://example.org/ns/*\/sa/payments')`. Segments are compared whole, never as
 * text prefixes. The pattern is validated like an ID (SpiffeIdError at construction).
 */
export function matchPath(pattern: SpiffeId | string): SpiffeIdMatcher;
/** The same with the trust domain and path given apart: `matchPath('example.org', '/ns/*\/sa/payments')`. */
export function matchPath(trustDomain: TrustDomain | string, path: string): SpiffeIdMatcher;
export function matchPath(a: SpiffeId | TrustDomain | string, b?: string): SpiffeIdMatcher {
  const { td, path } =
    b === undefined
      ? splitPattern(a as SpiffeId | string)
      : { td: toTrustDomain(a as TrustDomain | string).name, path: b };
  const rule = compilePath(path, 'pattern');
  return (id) => id.trustDomain.name === td && pathMatches(rule, segmentsOf(id));
}

/**
 * Matches IDs of a trust domain whose path starts with the given segments: `matchPathPrefix('example.org',
 * '/ns/prod')` admits `/ns/prod` and `/ns/prod/sa/x` but not `/ns/production`. With a trailing slash
 * (`'/ns/prod/'`) only paths below it match, not `/ns/prod` itself. Validated at construction.
 */
export function matchPathPrefix(trustDomain: TrustDomain | string, prefix: string): SpiffeIdMatcher {
  const td = toTrustDomain(trustDomain).name;
  const rule = compilePath(prefix, 'prefix');
  return (id) => id.trustDomain.name === td && pathMatches(rule, segmentsOf(id));
}

/**
 * Whether the matcher accepts the ID: only a literal `true` does, and a matcher that throws denies
 * (authorization must never fail open). Every authorization decision in spiffe-ts goes through it.
 */
export function allows(matcher: SpiffeIdMatcher, id: SpiffeId): boolean {
  try {
    return matcher(id) === true;
  } catch {
    return false;
  }
}

/** Custom predicate; a thrown error counts as "no match" (deny). */
export function matchWhen(predicate: (id: SpiffeId) => boolean): SpiffeIdMatcher {
  return (id) => allows(predicate, id);
}

/** Matches when every matcher matches. With no matchers, matches nothing. */
export function matchAll(...matchers: SpiffeIdMatcher[]): SpiffeIdMatcher {
  if (matchers.length === 0) return () => false;
  return (id) => {
    for (const m of matchers) if (!allows(m, id)) return false;
    return true;
  };
}

/** Matches when at least one matcher matches. With no matchers, matches nothing. */
export function matchSome(...matchers: SpiffeIdMatcher[]): SpiffeIdMatcher {
  // Runs on every authorized request: a plain loop, no closure per call.
  return (id) => {
    for (const m of matchers) if (allows(m, id)) return true;
    return false;
  };
}

/**
 * An allowlist entry given as an object: every member of a trust domain (`{ trustDomain }`), those whose path
 * fits a segment pattern (`{ trustDomain, path: '/ns/*\/sa/payments' }`), or those below a path prefix
 * (`{ trustDomain, pathPrefix: '/ns/prod' }`). At most one of `path` and `pathPrefix`.
 */
export interface SpiffeIdAllowlistObject {
  /** The trust domain the entry admits IDs of. */
  trustDomain: TrustDomain | string;
  /** A path pattern whose `*` segments match any one segment (see `matchPath`). */
  path?: string;
  /** A path prefix compared segment by segment (see `matchPathPrefix`). */
  pathPrefix?: string;
}

/** One entry of an allowlist array. */
export type SpiffeIdAllowlistEntry = SpiffeIdMatcher | SpiffeId | TrustDomain | string | SpiffeIdAllowlistObject;

/**
 * The allowlist forms the adapters accept in configuration:
 * - a matcher function;
 * - a SpiffeId, or a string with an exact SPIFFE ID;
 * - a TrustDomain (every member);
 * - `{ trustDomain: 'example.org' }` (every member), optionally with `path` (a segment pattern such as
 *   `'/ns/*\/sa/payments'`) or `pathPrefix` (`'/ns/prod'`);
 * - an array of the above (any of them; an empty array denies everything).
 */
export type SpiffeIdAllowlist = SpiffeIdAllowlistEntry | ReadonlyArray<SpiffeIdAllowlistEntry>;

function objectMatcher(entry: SpiffeIdAllowlistObject): { td: string; rule?: PathRule } {
  const td = toTrustDomain(entry.trustDomain).name;
  const hasPath = entry.path !== undefined;
  const hasPrefix = entry.pathPrefix !== undefined;
  if (hasPath && hasPrefix) throw new TypeError('invalid SPIFFE ID allowlist entry: both path and pathPrefix');
  if (hasPath) return { td, rule: compilePath(entry.path as string, 'pattern') };
  if (hasPrefix) return { td, rule: compilePath(entry.pathPrefix as string, 'prefix') };
  return { td };
}

function isAllowlistObject(entry: unknown): entry is SpiffeIdAllowlistObject {
  return typeof entry === 'object' && entry !== null && 'trustDomain' in entry;
}

/**
 * Builds the allowlist into an index once: a set of exact IDs, a set of whole trust domains, path rules per
 * trust domain, then custom matchers in order. A lookup costs one or two set probes plus the rules of the
 * ID's own trust domain, however many entries the list has.
 */
function indexMatcher(entries: ReadonlyArray<SpiffeIdAllowlistEntry>): SpiffeIdMatcher {
  const exact = new Set<string>();
  const domains = new Set<string>();
  const rules = new Map<string, PathRule[]>();
  const custom: SpiffeIdMatcher[] = [];
  const add = (entry: SpiffeIdAllowlistEntry | ReadonlyArray<SpiffeIdAllowlistEntry>): void => {
    // Nested arrays (as decorators taking `...allow` build them) are flattened into the same index.
    if (Array.isArray(entry)) for (const e of entry as ReadonlyArray<SpiffeIdAllowlistEntry>) add(e);
    else if (typeof entry === 'function') custom.push(entry);
    else if (entry instanceof SpiffeId || typeof entry === 'string') exact.add(toSpiffeId(entry).toString());
    else if (entry instanceof TrustDomain) domains.add(entry.name);
    else if (isAllowlistObject(entry)) {
      const { td, rule } = objectMatcher(entry);
      if (!rule) domains.add(td);
      else {
        const list = rules.get(td);
        if (list) list.push(rule);
        else rules.set(td, [rule]);
      }
    } else throw new TypeError('invalid SPIFFE ID allowlist entry');
  };
  add(entries);
  if (domains.size === 0 && rules.size === 0 && custom.length === 0) return (id) => exact.has(id.toString());
  return (id) => {
    if (exact.size > 0 && exact.has(id.toString())) return true;
    const td = id.trustDomain.name;
    if (domains.has(td)) return true;
    const tdRules = rules.get(td);
    if (tdRules) {
      const segs = segmentsOf(id);
      for (const r of tdRules) if (pathMatches(r, segs)) return true;
    }
    for (const m of custom) if (allows(m, id)) return true;
    return false;
  };
}

/** Turns an allowlist (see SpiffeIdAllowlist) into a matcher, validating every entry up front. */
export function toMatcher(allow: SpiffeIdAllowlist): SpiffeIdMatcher {
  if (typeof allow === 'function') return allow;
  if (Array.isArray(allow)) return indexMatcher(allow as ReadonlyArray<SpiffeIdAllowlistEntry>);
  if (allow instanceof SpiffeId || typeof allow === 'string') return matchId(allow);
  if (allow instanceof TrustDomain) return matchMemberOf(allow);
  if (isAllowlistObject(allow)) return indexMatcher([allow]);
  throw new TypeError('invalid SPIFFE ID allowlist entry');
}

/** Throws AuthorizationError unless the matcher accepts the ID. */
export function authorize(matcher: SpiffeIdMatcher, id: SpiffeId): void {
  if (!allows(matcher, id)) throw new AuthorizationError(id.toString());
}
