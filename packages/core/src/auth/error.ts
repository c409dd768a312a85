import { SpiffeError, type SpiffeErrorCode } from '../errors.js';
import { type SpiffeId } from '../spiffeid/id.js';

/**
 * The codes a request denial carries: no verified mTLS peer, a peer or token subject outside the allowlist,
 * a missing bearer token, a token over an insecure transport or not bound to the peer, one of the JWT-SVID
 * validation codes, or a forwarded-identity (XFCC) header that is malformed or came from an untrusted peer.
 */
export type SpiffeAuthErrorCode = Extract<
  SpiffeErrorCode,
  'PEER_NOT_VERIFIED' | 'UNAUTHORIZED_SPIFFE_ID' | `JWTSVID_${string}` | `XFCC_${string}`
>;

/** What an `onDenied` hook is told, the same in every adapter. Never holds an unverified ID. */
export interface SpiffeDenial {
  /** Stable code of the denial. */
  readonly code: SpiffeAuthErrorCode;
  /** The client-safe message (no allowlist, no validation details). */
  readonly message: string;
  /** 401 (no or bad credentials) or 403 (authenticated but not allowed). */
  readonly statusCode: 401 | 403;
  /** The verified mTLS peer ID, when the connection has one. */
  readonly spiffeId?: SpiffeId;
  /** The subject of a valid JWT-SVID whose subject was refused. */
  readonly subject?: SpiffeId;
  /** The route pattern or gRPC method path, when the adapter knows it. */
  readonly route?: string;
  /** The peer's IP address, when the adapter knows it. */
  readonly remoteAddress?: string;
}

// One fixed message per code: a client learns the code, never the allowlist or why validation failed
// (that stays in `cause` for server-side logs).
function publicMessage(code: SpiffeAuthErrorCode): string {
  switch (code) {
    case 'PEER_NOT_VERIFIED':
      return 'no verified SPIFFE ID for this connection';
    case 'UNAUTHORIZED_SPIFFE_ID':
      return 'SPIFFE ID not authorized';
    case 'JWTSVID_MISSING':
      return 'missing bearer token';
    case 'JWTSVID_INSECURE_TRANSPORT':
      return 'bearer tokens are not accepted on this connection';
    case 'JWTSVID_NOT_BOUND_TO_PEER':
      return 'bearer token is not bound to this peer';
    case 'XFCC_MALFORMED':
      return 'malformed forwarded client certificate header';
    case 'XFCC_UNTRUSTED_PEER':
      return 'forwarded client certificate header from an untrusted peer';
    default:
      return 'invalid JWT-SVID';
  }
}

/**
 * A request denied by a SPIFFE check, shaped for frameworks' error paths (as http-errors, @fastify/jwt and
 * express-oauth2-jwt-bearer shape theirs): `statusCode`/`status`, `headers` (RFC 6750 `WWW-Authenticate` for
 * bearer failures) and `expose: true` (the message is safe to send). The underlying error is in `cause`.
 */
export class SpiffeAuthError extends SpiffeError {
  /** Stable code of the denial (a subset of SpiffeErrorCode). */
  declare readonly code: SpiffeAuthErrorCode;
  /** HTTP status for the response. */
  readonly statusCode: 401 | 403;
  /** Same as statusCode (Express/Koa read `status`). */
  readonly status: 401 | 403;
  /** Response headers to send with the error. */
  readonly headers: Readonly<Record<string, string>>;
  /** The message is client-safe (http-errors convention). */
  readonly expose = true;
  /** The verified mTLS peer ID, when there is one (never from an unverified certificate). */
  readonly spiffeId: SpiffeId | undefined;
  /** The validated token's subject, when the token was valid but its subject is not allowed. */
  readonly subject: SpiffeId | undefined;

  constructor(
    code: SpiffeAuthErrorCode,
    options: {
      statusCode: 401 | 403;
      headers?: Readonly<Record<string, string>>;
      spiffeId?: SpiffeId;
      subject?: SpiffeId;
      cause?: unknown;
    },
  ) {
    super(code, publicMessage(code), { cause: options.cause });
    this.statusCode = options.statusCode;
    this.status = options.statusCode;
    this.headers = Object.freeze({ ...options.headers });
    this.spiffeId = options.spiffeId;
    this.subject = options.subject;
  }

  /** The `onDenied` event for this error. */
  toDenial(route?: string): SpiffeDenial {
    return {
      code: this.code,
      message: this.message,
      statusCode: this.statusCode,
      ...(this.spiffeId ? { spiffeId: this.spiffeId } : {}),
      ...(this.subject ? { subject: this.subject } : {}),
      ...(route !== undefined ? { route } : {}),
    };
  }
}

/** True for a SpiffeAuthError. */
export function isSpiffeAuthError(err: unknown): err is SpiffeAuthError {
  return err instanceof SpiffeAuthError;
}
