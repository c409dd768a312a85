import { AuthorizationError } from '../errors.js';
import { SpiffeId, TrustDomain, toSpiffeId, toTrustDomain } from './id.js';

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
 * The allowlist forms the adapters accept in configuration:
 * - a matcher function;
 * - a SpiffeId, or a string with an exact SPIFFE ID;
 * - a TrustDomain (every member);
 * - `{ trustDomain: 'example.org' }` (every member);
 * - an array of the above (any of them; an empty array denies everything).
 */
export type SpiffeIdAllowlist =
  | SpiffeIdMatcher
  | SpiffeId
  | TrustDomain
  | string
  | { trustDomain: TrustDomain | string }
  | ReadonlyArray<SpiffeIdMatcher | SpiffeId | TrustDomain | string | { trustDomain: TrustDomain | string }>;

/** Turns an allowlist (see SpiffeIdAllowlist) into a matcher, validating every entry up front. */
export function toMatcher(allow: SpiffeIdAllowlist): SpiffeIdMatcher {
  if (typeof allow === 'function') return allow;
  if (Array.isArray(allow)) {
    // The common allowlist, exact IDs only, is one set lookup.
    if (allow.every((e) => e instanceof SpiffeId || typeof e === 'string')) {
      return matchOneOf(...(allow as Array<SpiffeId | string>));
    }
    return matchSome(...allow.map((entry) => toMatcher(entry as SpiffeIdAllowlist)));
  }
  if (allow instanceof SpiffeId || typeof allow === 'string') return matchId(allow);
  if (allow instanceof TrustDomain) return matchMemberOf(allow);
  if (allow && typeof allow === 'object' && 'trustDomain' in allow) return matchMemberOf(allow.trustDomain);
  throw new TypeError('invalid SPIFFE ID allowlist entry');
}

/** Throws AuthorizationError unless the matcher accepts the ID. */
export function authorize(matcher: SpiffeIdMatcher, id: SpiffeId): void {
  if (!allows(matcher, id)) throw new AuthorizationError(id.toString());
}
