import type { KeyObject } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { type JwtAuthority } from '../bundle/jwt.js';
import { type JwtBundleSource } from '../bundle/source.js';
import { BundleError, JwtSvidError } from '../errors.js';
import { SpiffeId } from '../spiffeid/id.js';

/** The only algorithms a JWT-SVID may use (JWT-SVID standard): no `none`, no HMAC. */
export const JWT_SVID_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'ES256',
  'ES384',
  'ES512',
  'PS256',
  'PS384',
  'PS512',
] as const;

/** One of {@link JWT_SVID_ALGORITHMS}. */
export type JwtSvidAlgorithm = (typeof JWT_SVID_ALGORITHMS)[number];

const ALLOWED = new Set<string>(JWT_SVID_ALGORITHMS);

// jose is handed only the header's own algorithm (already checked against the allowed list): it then checks
// a one-entry list instead of building a set of nine on every validation. Never mutated.
const VERIFY_ALGORITHMS = new Map<string, string[]>(JWT_SVID_ALGORITHMS.map((a) => [a, [a]]));

type Jose = typeof import('jose');
type ImportedKey = Awaited<ReturnType<Jose['importJWK']>>;

// jose is loaded on the first validation, not when the package is imported: most services that import the
// core (TLS servers, adapters) never validate a JWT, and jose is among the larger modules it would load at
// start-up (bench/README.md). Once loaded, validation reads it synchronously (no extra await per call).
let jose: Jose | undefined;
let joseLoading: Promise<Jose> | undefined;
function loadJose(): Promise<Jose> {
  joseLoading ??= import('jose').then((m) => {
    jose = m;
    return m;
  });
  return joseLoading;
}

/** Default clock skew tolerance in seconds for `exp`/`nbf` (half of go-jose's one-minute default leeway). */
export const DEFAULT_JWT_CLOCK_TOLERANCE_SECONDS = 30;

// Marks constructor input built by this module from a freshly decoded token: its claims object and audience
// array belong to no one else, so they are frozen in place instead of copied (a copy per validation).
const DECODED: unique symbol = Symbol('decoded');

/** A JWT-SVID: its SPIFFE ID (`sub`), audience, expiry and all claims. */
export class JwtSvid {
  /** The SPIFFE ID in `sub`. */
  readonly id: SpiffeId;
  /** The audiences of `aud`, as a list (a single string becomes one entry). */
  readonly audience: readonly string[];
  /** When the token expires (`exp`). */
  readonly expiresAt: Date;
  /** Every claim of the payload, frozen. */
  readonly claims: Readonly<JWTPayload>;
  /** The compact JWS serialization. */
  readonly token: string;
  /** Operator-supplied hint (Workload API `hint`). */
  readonly hint: string;

  constructor(init: {
    id: SpiffeId;
    audience: readonly string[];
    expiresAt: Date;
    claims: JWTPayload;
    token: string;
    hint?: string;
  }) {
    const owned = (init as { [DECODED]?: true })[DECODED] === true;
    this.id = init.id;
    this.audience = Object.freeze(owned ? (init.audience as string[]) : [...init.audience]);
    this.expiresAt = init.expiresAt;
    this.claims = Object.freeze(owned ? init.claims : { ...init.claims });
    this.token = init.token;
    this.hint = init.hint ?? '';
    Object.freeze(this);
  }

  /** Marshals to the compact token, so `String(svid)` is what goes into an Authorization header. */
  toString(): string {
    return this.token;
  }
}

interface Unverified {
  header: { alg?: unknown; kid?: unknown; typ?: unknown };
  claims: JWTPayload;
  id: SpiffeId;
  exp: number;
}

const ALLOWED_HEADERS = new Set(['alg', 'kid', 'typ']);

/** The largest time value a Date can hold (ECMA-262: ±8.64e15 ms). */
const MAX_DATE_MS = 8.64e15;

const B64URL = /^[A-Za-z0-9_-]+$/;

const B64URL_OR_EMPTY = /^[A-Za-z0-9_-]*$/; // an empty signature is judged by the algorithm/signature checks

/** One base64url segment of a compact JWS as a JSON object (what jose's decoders do, with one split). */
function jsonSegment(segment: string, what: string): Record<string, unknown> {
  // A remainder of one character is no base64url length; Buffer would silently drop it.
  if (!B64URL.test(segment) || segment.length % 4 === 1) throw new Error(`${what} is not base64url`);
  const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what} is not an object`);
  return value as Record<string, unknown>;
}

function decodeUnverified(token: unknown): Unverified {
  if (typeof token !== 'string' || token.length === 0) {
    throw new JwtSvidError('JWTSVID_MALFORMED', 'token must be a non-empty string');
  }
  let header: Unverified['header'];
  let claims: JWTPayload;
  try {
    const parts = token.split('.');
    // A JWT-SVID is a compact JWS: exactly header.payload.signature (five parts would be a JWE).
    if (parts.length !== 3) throw new Error('not a compact JWS');
    if (!B64URL_OR_EMPTY.test(parts[2] as string)) throw new Error('signature is not base64url');
    header = jsonSegment(parts[0] as string, 'header');
    claims = jsonSegment(parts[1] as string, 'payload') as JWTPayload;
  } catch (err) {
    throw new JwtSvidError('JWTSVID_MALFORMED', 'unable to parse JWT token', { cause: err });
  }
  // JWT-SVID profile: only `alg`, `kid` and `typ` may appear in the header. Anything else (`jwk`, `jku`, `x5c`,
  // `x5u`, `b64`, `crit`, ...) is refused: the key must come from the bundle, and the payload must be plain
  // base64url JSON. (go-spiffe does not check this; see README "Deliberate differences from go-spiffe".)
  for (const name of Object.keys(header)) {
    if (!ALLOWED_HEADERS.has(name)) {
      throw new JwtSvidError('JWTSVID_MALFORMED', `token header parameter "${name}" is not allowed in a JWT-SVID`);
    }
  }
  if (header.typ !== undefined && header.typ !== 'JWT' && header.typ !== 'JOSE') {
    throw new JwtSvidError('JWTSVID_BAD_TYP', 'token header type not equal to either JWT or JOSE');
  }
  if (typeof header.alg !== 'string' || !ALLOWED.has(header.alg)) {
    throw new JwtSvidError('JWTSVID_UNSUPPORTED_ALG', `unsupported token signature algorithm "${String(header.alg)}"`);
  }
  if (typeof claims.sub !== 'string' || claims.sub === '') {
    throw new JwtSvidError('JWTSVID_BAD_SUBJECT', 'token missing subject claim');
  }
  if (claims.exp === undefined) throw new JwtSvidError('JWTSVID_MISSING_EXP', 'token missing exp claim');
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) {
    throw new JwtSvidError('JWTSVID_MALFORMED', 'token exp claim is not a number');
  }
  // exp must fit a Date: a larger value would make `expiresAt` an Invalid Date.
  if (Math.abs(claims.exp) * 1000 > MAX_DATE_MS) {
    throw new JwtSvidError('JWTSVID_MALFORMED', 'token exp claim is out of range');
  }
  if (Array.isArray(claims.aud) && !claims.aud.every((a) => typeof a === 'string')) {
    throw new JwtSvidError('JWTSVID_MALFORMED', 'token aud claim has a member that is not a string');
  }
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(claims.sub);
  } catch (err) {
    throw new JwtSvidError('JWTSVID_BAD_SUBJECT', `token has an invalid subject claim: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return { header, claims, id, exp: claims.exp };
}

function decodedSvid(id: SpiffeId, claims: JWTPayload, exp: number, token: string, hint?: string): JwtSvid {
  const init: ConstructorParameters<typeof JwtSvid>[0] & { [DECODED]: true } = {
    id,
    audience: audienceList(claims),
    expiresAt: new Date(exp * 1000),
    claims,
    token,
    hint,
    [DECODED]: true,
  };
  return new JwtSvid(init);
}

function audienceList(claims: JWTPayload): string[] {
  const aud = claims.aud;
  if (typeof aud === 'string') return [aud];
  if (Array.isArray(aud)) return aud.filter((a): a is string => typeof a === 'string');
  return [];
}

// Imported CryptoKeys per authority and algorithm, so hot-path validation does no key import.
// Imported keys per authority key and algorithm. Once imported, the key itself is handed to jwtVerify (not a
// resolver function): one promise and one call less on every validation.
const keyCache = new WeakMap<KeyObject, Map<string, Promise<ImportedKey> | ImportedKey>>();

function cryptoKeyFor(j: Jose, authority: JwtAuthority, alg: string): Promise<ImportedKey> | ImportedKey {
  let perAlg = keyCache.get(authority.publicKey);
  if (!perAlg) {
    perAlg = new Map();
    keyCache.set(authority.publicKey, perAlg);
  }
  const cached = perAlg.get(alg);
  if (cached) return cached;
  const byAlg = perAlg;
  const pending = j.importJWK({ ...authority.jwk, alg }, alg).then(
    (key) => {
      byAlg.set(alg, key);
      return key;
    },
    (err: unknown) => {
      byAlg.delete(alg);
      throw err;
    },
  );
  byAlg.set(alg, pending);
  return pending;
}

/** Options of {@link parseAndValidateJwtSvid}. */
export interface ValidateJwtSvidOptions {
  /** Verification time (default: now). */
  now?: Date;
  /** Clock skew tolerance in seconds for exp/nbf (default DEFAULT_JWT_CLOCK_TOLERANCE_SECONDS). */
  clockTolerance?: number;
}

/**
 * Parses and validates a JWT-SVID: the key is chosen by the trust domain of `sub` and the `kid` header from
 * the bundle source; the algorithm must be RS/ES/PS 256/384/512; `exp` is required; the token's `aud` must
 * contain at least one of the expected audiences. Throws JwtSvidError with a stable code.
 */
export async function parseAndValidateJwtSvid(
  token: string,
  bundles: JwtBundleSource,
  audience: string | readonly string[],
  options: ValidateJwtSvidOptions = {},
): Promise<JwtSvid> {
  const expected = typeof audience === 'string' ? [audience] : [...audience];
  if (expected.length === 0 || expected.some((a) => typeof a !== 'string' || a === '')) {
    throw new JwtSvidError('JWTSVID_AUDIENCE_MISMATCH', 'an expected audience is required');
  }
  const { header, claims, id, exp } = decodeUnverified(token);
  if (typeof header.kid !== 'string' || header.kid === '') {
    throw new JwtSvidError('JWTSVID_MISSING_KID', 'token header missing key id');
  }
  let authority: JwtAuthority | undefined;
  try {
    authority = bundles.getJwtBundleForTrustDomain(id.trustDomain).findAuthority(header.kid);
  } catch (err) {
    if (err instanceof BundleError) {
      throw new JwtSvidError('JWTSVID_UNKNOWN_KID', `no JWT bundle for trust domain "${id.trustDomain.name}"`, {
        cause: err,
      });
    }
    throw err;
  }
  if (!authority) {
    throw new JwtSvidError(
      'JWTSVID_UNKNOWN_KID',
      `no JWT authority "${header.kid}" found for trust domain "${id.trustDomain.name}"`,
    );
  }
  const alg = header.alg as string;
  const tolerance = options.clockTolerance ?? DEFAULT_JWT_CLOCK_TOLERANCE_SECONDS;
  const j = jose ?? (await loadJose());
  try {
    const key = cryptoKeyFor(j, authority, alg);
    await j.jwtVerify(token, key instanceof Promise ? await key : key, {
      algorithms: VERIFY_ALGORITHMS.get(alg) ?? [], // empty: jose refuses every algorithm
      audience: expected,
      clockTolerance: tolerance,
      currentDate: options.now,
      requiredClaims: ['exp', 'sub'],
    });
  } catch (err) {
    throw mapJoseError(j.errors, err, expected, audienceList(claims));
  }
  // jose checks only that `iat` is a number; the standard (go-jose leeway rule) refuses one issued in the future.
  if (claims.iat !== undefined) {
    const nowSeconds = (options.now ?? new Date()).getTime() / 1000;
    if (claims.iat > nowSeconds + tolerance) {
      throw new JwtSvidError('JWTSVID_NOT_YET_VALID', 'token issued in the future (iat)');
    }
  }
  return decodedSvid(id, claims, exp, token);
}

function mapJoseError(joseErrors: Jose['errors'], err: unknown, expected: string[], actual: string[]): JwtSvidError {
  if (err instanceof JwtSvidError) return err;
  if (err instanceof joseErrors.JWTExpired) {
    return new JwtSvidError('JWTSVID_EXPIRED', 'token has expired', { cause: err });
  }
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') {
      return new JwtSvidError(
        'JWTSVID_AUDIENCE_MISMATCH',
        `expected audience in ${JSON.stringify(expected)} (audience=${JSON.stringify(actual)})`,
        { cause: err },
      );
    }
    if (err.claim === 'nbf') {
      return new JwtSvidError('JWTSVID_NOT_YET_VALID', 'token is not valid yet', { cause: err });
    }
    if (err.claim === 'exp')
      return new JwtSvidError('JWTSVID_MISSING_EXP', 'token exp claim is invalid', { cause: err });
    return new JwtSvidError('JWTSVID_INVALID', `token claim "${err.claim}" is invalid: ${err.reason}`, { cause: err });
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new JwtSvidError('JWTSVID_BAD_SIGNATURE', 'token signature verification failed', { cause: err });
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) {
    return new JwtSvidError('JWTSVID_UNSUPPORTED_ALG', 'token signature algorithm not allowed', { cause: err });
  }
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) {
    return new JwtSvidError('JWTSVID_MALFORMED', `malformed token: ${(err as Error).message}`, { cause: err });
  }
  // Key/alg mismatches (e.g. an RSA key for an ES256 header) surface as TypeError or JOSENotSupported.
  return new JwtSvidError(
    'JWTSVID_BAD_SIGNATURE',
    `token cannot be verified: ${(err as Error)?.message ?? String(err)}`,
    {
      cause: err,
    },
  );
}

/** The `kid` header of a JWT-SVID, unverified (throws JwtSvidError on a malformed token). Internal. */
export function unverifiedKeyId(token: string): unknown {
  return decodeUnverified(token).header.kid;
}

/**
 * INSECURE: decodes a JWT-SVID **without checking its signature, audience or expiry**. For tooling that
 * displays tokens only; never use the result to make an access decision.
 */
export function insecureParseJwtSvid(token: string, hint?: string): JwtSvid {
  const { claims, id, exp } = decodeUnverified(token);
  return decodedSvid(id, claims, exp, token, hint);
}
