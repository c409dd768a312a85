import { type JwtBundleSource } from '../bundle/source.js';
import { JwtSvidError } from '../errors.js';
import { type SpiffeId } from '../spiffeid/id.js';
import { allows, type SpiffeIdAllowlist, type SpiffeIdMatcher, toMatcher } from '../spiffeid/match.js';
import { JwtSvid, parseAndValidateJwtSvid, type ValidateJwtSvidOptions } from '../svid/jwt.js';
import { SpiffeAuthError, type SpiffeAuthErrorCode } from './error.js';

/**
 * JWT-SVID bearer validation settings, the same object in every adapter (`jwt: { ... }`).
 */
export interface SpiffeJwtOptions {
  /** JWT bundles to validate with (a JwtSource, BundleSource or JwtBundleSet). */
  bundles: JwtBundleSource;
  /** The audience this service expects (at least one must be in the token's `aud`). */
  audience: string | readonly string[];
  /** Which token subjects may call (403 `insufficient_scope` otherwise); default any valid subject. */
  allow?: SpiffeIdAllowlist;
  /** Clock skew tolerance in seconds for exp/nbf (default DEFAULT_JWT_CLOCK_TOLERANCE_SECONDS). */
  clockTolerance?: number;
  /** `realm` in WWW-Authenticate (default "spiffe"). */
  realm?: string;
  /**
   * Bind the token to the request's verified peer: `true` requires the token's subject to equal the peer's
   * SPIFFE ID (from mTLS, or from a trusted proxy's XFCC header); a function decides the relation itself
   * (`(subject, peer) => boolean`, a throw denies). A request without a verified peer, or whose token fails
   * the check, is refused with 401 `JWTSVID_NOT_BOUND_TO_PEER`. Default: tokens are not bound.
   */
  bindToPeer?: boolean | ((subject: SpiffeId, peer: SpiffeId) => boolean);
}

/** Options of `authenticateBearer`: `SpiffeJwtOptions`, a verification time, and the request's verified peer. */
export interface BearerOptions extends SpiffeJwtOptions, ValidateJwtSvidOptions {
  /**
   * The request's verified peer ID, if any: recorded on a denial (`spiffeId`) for `onDenied`, and the ID a
   * `bindToPeer` token must be bound to.
   */
  peer?: SpiffeId;
}

/** The outcome of `authenticateBearer`: the validated token, or the denial to pass to the framework. */
export type BearerDecision = { ok: true; svid: JwtSvid } | { ok: false; error: SpiffeAuthError };

/** Extracts the token from `Authorization: Bearer <token>` (case-insensitive scheme); undefined otherwise. */
export function bearerToken(authorization: string | string[] | undefined): string | undefined {
  const value = Array.isArray(authorization) ? authorization[0] : authorization;
  if (typeof value !== 'string') return undefined;
  const m = /^Bearer[ \t]+([A-Za-z0-9\-._~+/]+=*)[ \t]*$/i.exec(value);
  return m?.[1];
}

function quote(s: string): string {
  return `"${s.replace(/["\\]/g, '').replace(/[\r\n]/g, ' ')}"`;
}

/**
 * The RFC 6750 challenge for a bearer denial: no `error` when no token was sent (section 3.1), else
 * `invalid_token` (401) or `insufficient_scope` (403). No `error_description`: it would tell the caller why.
 */
export function bearerChallenge(realm: string, code: SpiffeAuthErrorCode, statusCode: 401 | 403): string {
  const base = `Bearer realm=${quote(realm)}`;
  if (code === 'JWTSVID_MISSING') return base;
  return `${base}, error="${statusCode === 403 ? 'insufficient_scope' : 'invalid_token'}"`;
}

// Compiled once per allowlist object: adapters pass the same options on every request.
const compiled = new WeakMap<object, SpiffeIdMatcher>();
function matcherOf(allow: SpiffeIdAllowlist): SpiffeIdMatcher {
  if (typeof allow !== 'object') return toMatcher(allow);
  let m = compiled.get(allow);
  if (!m) {
    m = toMatcher(allow);
    compiled.set(allow, m);
  }
  return m;
}

/** Checks `bindToPeer` at start-up: only a boolean or a function is accepted (a typo must not unbind tokens). */
export function validateBindToPeer(bind: unknown): void {
  if (bind !== undefined && typeof bind !== 'boolean' && typeof bind !== 'function') {
    throw new TypeError('jwt.bindToPeer must be a boolean or a function (subject, peer) => boolean');
  }
}

// Fail closed: no verified peer, anything but a literal true from the relation, or a throw, is unbound.
function boundToPeer(
  bind: true | ((subject: SpiffeId, peer: SpiffeId) => boolean),
  subject: SpiffeId,
  peer: SpiffeId | undefined,
): boolean {
  if (!peer) return false;
  if (bind === true) return subject.toString() === peer.toString();
  if (typeof bind !== 'function') return false;
  try {
    return bind(subject, peer) === true;
  } catch {
    return false;
  }
}

/**
 * Validates a JWT-SVID bearer token from an Authorization header: the one bearer decision every adapter
 * makes. A denial is a SpiffeAuthError: 401 with the token's JWTSVID_* code (JWTSVID_MISSING without a
 * token), or 403 UNAUTHORIZED_SPIFFE_ID for a valid token whose subject is not allowed; `headers` carries
 * the RFC 6750 `WWW-Authenticate`. With `bindToPeer`, a valid token not bound to `peer` is 401
 * JWTSVID_NOT_BOUND_TO_PEER.
 */
export async function authenticateBearer(
  authorization: string | string[] | undefined,
  options: BearerOptions,
): Promise<BearerDecision> {
  const realm = options.realm ?? 'spiffe';
  const token = bearerToken(authorization);
  if (!token) return denied(realm, options, 'JWTSVID_MISSING', 401, {});
  let svid: JwtSvid;
  try {
    svid = await parseAndValidateJwtSvid(token, options.bundles, options.audience, options);
  } catch (err) {
    // Fail closed on anything: unknown failures are JWTSVID_INVALID, the original kept as the cause.
    const code = err instanceof JwtSvidError && err.code.startsWith('JWTSVID_') ? err.code : 'JWTSVID_INVALID';
    return denied(realm, options, code as SpiffeAuthErrorCode, 401, { cause: err });
  }
  if (options.allow !== undefined && !allows(matcherOf(options.allow), svid.id)) {
    return denied(realm, options, 'UNAUTHORIZED_SPIFFE_ID', 403, { subject: svid });
  }
  if (
    options.bindToPeer !== undefined &&
    options.bindToPeer !== false &&
    !boundToPeer(options.bindToPeer, svid.id, options.peer)
  ) {
    return denied(realm, options, 'JWTSVID_NOT_BOUND_TO_PEER', 401, { subject: svid });
  }
  return { ok: true, svid };
}

// A module-level function, not a closure per call: this runs on every bearer-authenticated request, and the
// build's keepNames renames each closure it creates (an Object.defineProperty per call).
function denied(
  realm: string,
  options: BearerOptions,
  code: SpiffeAuthErrorCode,
  statusCode: 401 | 403,
  extra: { cause?: unknown; subject?: JwtSvid },
): BearerDecision {
  return {
    ok: false,
    error: new SpiffeAuthError(code, {
      statusCode,
      headers: { 'WWW-Authenticate': bearerChallenge(realm, code, statusCode) },
      spiffeId: options.peer,
      subject: extra.subject?.id,
      cause: extra.cause,
    }),
  };
}
