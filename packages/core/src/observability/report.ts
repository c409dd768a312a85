import type { SpiffeAuthError, SpiffeDenial } from '../auth/error.js';
import type { SpiffeErrorCode } from '../errors.js';
import { type SpiffeId } from '../spiffeid/id.js';
import { logEvent, type SpiffeLogger } from './logger.js';
import { countDenial, countHandshake } from './metrics.js';

/** Where a denial happened, for its report. */
export interface DenialContext {
  /** The route pattern or gRPC method path. */
  route?: string;
  /** The peer's IP address. */
  remoteAddress?: string;
  /** Where to log it (the framework's logger or the app's); NODE_DEBUG=spiffe shows it either way. */
  logger?: SpiffeLogger;
}

// Enough of the server-side reason to act on, never a whole token or document.
function detailOf(cause: unknown): string | undefined {
  if (cause === undefined || cause === null) return undefined;
  const text = cause instanceof Error ? cause.message : String(cause);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

/**
 * Reports a request or call denied by a SPIFFE check, the one reporting path of every adapter: a warning
 * with the reason code, status, peer address, verified SPIFFE ID (never an unverified one) and the
 * server-side detail; the `spiffe.requests.denied` counter; NODE_DEBUG=spiffe. Returns the `onDenied` event.
 */
export function reportDenial(error: SpiffeAuthError, context: DenialContext = {}): SpiffeDenial {
  const base = error.toDenial(context.route);
  const event: SpiffeDenial =
    context.remoteAddress === undefined ? base : { ...base, remoteAddress: context.remoteAddress };
  countDenial({ reason: event.code });
  logEvent(
    context.logger,
    'warn',
    {
      reason: event.code,
      statusCode: event.statusCode,
      remoteAddress: event.remoteAddress,
      spiffeId: event.spiffeId?.toString(),
      subject: event.subject?.toString(),
      route: event.route,
      detail: detailOf(error.cause),
    },
    'SPIFFE: request denied',
  );
  return event;
}

/**
 * Stable reason codes of refused TLS handshakes. Certificate refusals by node:tls before SPIFFE checks:
 * TLS_NO_PEER_CERTIFICATE, TLS_SELF_SIGNED, TLS_UNKNOWN_CA, TLS_CERT_EXPIRED, TLS_CERT_NOT_YET_VALID,
 * TLS_CERT_INVALID. Handshakes that failed: TLS_NOT_TLS (plain text on a TLS port), TLS_PROTOCOL_VERSION,
 * TLS_NO_SHARED_CIPHER, TLS_SERVER_CERT_REFUSED (the client does not trust our SVID), TLS_ALERT,
 * TLS_HANDSHAKE_TIMEOUT, TLS_CONNECTION_RESET, TLS_HANDSHAKE_FAILED. SPIFFE verification refusals carry the
 * verification error's own code (X509SVID_*, BUNDLE_NOT_FOUND, UNAUTHORIZED_SPIFFE_ID, ...).
 */
export type HandshakeRefusalReason =
  | 'TLS_NO_PEER_CERTIFICATE'
  | 'TLS_SELF_SIGNED'
  | 'TLS_UNKNOWN_CA'
  | 'TLS_CERT_EXPIRED'
  | 'TLS_CERT_NOT_YET_VALID'
  | 'TLS_CERT_INVALID'
  | 'TLS_NOT_TLS'
  | 'TLS_PROTOCOL_VERSION'
  | 'TLS_NO_SHARED_CIPHER'
  | 'TLS_SERVER_CERT_REFUSED'
  | 'TLS_ALERT'
  | 'TLS_HANDSHAKE_TIMEOUT'
  | 'TLS_CONNECTION_RESET'
  | 'TLS_HANDSHAKE_FAILED'
  | SpiffeErrorCode;

/** What is known of a refused handshake. */
export interface HandshakeRefusal {
  /** Stable reason code (see `HandshakeRefusalReason`). */
  reason: HandshakeRefusalReason;
  /** The peer's IP address. */
  remoteAddress: string | undefined;
  /** The verified SPIFFE ID, when verification passed and only authorization refused it. */
  spiffeId?: SpiffeId;
  /** The underlying code or message (OpenSSL verify code, node error code). */
  detail?: string;
}

/** Reports a refused handshake (warning; resets at debug level: probes and scanners do that all day). */
export function reportHandshakeRefusal(refusal: HandshakeRefusal, logger: SpiffeLogger | undefined): void {
  countHandshake({ result: 'refused', reason: refusal.reason });
  logEvent(
    logger,
    refusal.reason === 'TLS_CONNECTION_RESET' ? 'debug' : 'warn',
    {
      reason: refusal.reason,
      remoteAddress: refusal.remoteAddress,
      spiffeId: refusal.spiffeId?.toString(),
      detail: refusal.detail,
    },
    'SPIFFE: TLS handshake refused',
  );
}

/** Counts an accepted handshake. */
export function reportHandshakeAccepted(): void {
  countHandshake(ACCEPTED);
}

// Every accepted handshake carries the same attributes: one object, not one per handshake.
const ACCEPTED = Object.freeze({ result: 'accepted' });

/** The reason code for a client certificate node:tls did not verify (`socket.authorizationError`). */
export function certificateRefusalReason(authorizationError: string | Error | undefined): HandshakeRefusalReason {
  const code = typeof authorizationError === 'string' ? authorizationError : authorizationError?.message;
  switch (code) {
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
      return 'TLS_SELF_SIGNED';
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
      return 'TLS_UNKNOWN_CA';
    case 'CERT_HAS_EXPIRED':
      return 'TLS_CERT_EXPIRED';
    case 'CERT_NOT_YET_VALID':
      return 'TLS_CERT_NOT_YET_VALID';
    default:
      return 'TLS_CERT_INVALID';
  }
}

/** The reason code for a handshake that failed inside node:tls ('tlsClientError'). */
export function handshakeErrorReason(err: Error & { code?: string }): HandshakeRefusalReason {
  const code = err.code ?? '';
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'TLS_CONNECTION_RESET';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT' || code === 'ETIMEDOUT') return 'TLS_HANDSHAKE_TIMEOUT';
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') return 'TLS_NO_PEER_CERTIFICATE';
  if (/^ERR_SSL_(WRONG_VERSION_NUMBER|HTTP_REQUEST|HTTPS_PROXY_REQUEST|PACKET_LENGTH_TOO_LONG)$/.test(code)) {
    return 'TLS_NOT_TLS';
  }
  if (/^ERR_SSL_(UNSUPPORTED_PROTOCOL|TLSV1_ALERT_PROTOCOL_VERSION|VERSION_TOO_LOW)$/.test(code)) {
    return 'TLS_PROTOCOL_VERSION';
  }
  if (code === 'ERR_SSL_NO_SHARED_CIPHER') return 'TLS_NO_SHARED_CIPHER';
  if (
    /^ERR_SSL_(TLSV1_ALERT_UNKNOWN_CA|SSLV3_ALERT_BAD_CERTIFICATE|SSLV3_ALERT_CERTIFICATE_UNKNOWN|SSLV3_ALERT_CERTIFICATE_EXPIRED|TLSV1_ALERT_DECRYPT_ERROR)$/.test(
      code,
    )
  ) {
    return 'TLS_SERVER_CERT_REFUSED';
  }
  if (/^ERR_SSL_(SSLV3|TLSV1|TLSV13)_ALERT_/.test(code)) return 'TLS_ALERT';
  return 'TLS_HANDSHAKE_FAILED';
}
