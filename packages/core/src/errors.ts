/**
 * Every error this library throws on bad input or a failed check is a SpiffeError with a stable `code`.
 * Codes are part of the public API: match on `err.code`, not on the message.
 */
export type SpiffeErrorCode =
  // SPIFFE ID and trust domain
  | 'SPIFFEID_EMPTY'
  | 'SPIFFEID_WRONG_SCHEME'
  | 'SPIFFEID_MISSING_TRUST_DOMAIN'
  | 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'
  | 'SPIFFEID_TRUST_DOMAIN_TOO_LONG'
  | 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'
  | 'SPIFFEID_DOT_SEGMENT'
  | 'SPIFFEID_EMPTY_SEGMENT'
  | 'SPIFFEID_TRAILING_SLASH'
  | 'SPIFFEID_NO_LEADING_SLASH'
  | 'SPIFFEID_TOO_LONG'
  | 'SPIFFEID_NOT_STRING'
  // authorization
  | 'UNAUTHORIZED_SPIFFE_ID'
  | 'PEER_NOT_VERIFIED'
  // bundles
  | 'BUNDLE_INVALID'
  | 'BUNDLE_NOT_FOUND'
  | 'BUNDLE_TRUST_DOMAIN_MISMATCH'
  // certificates and keys
  | 'CERTIFICATE_INVALID'
  | 'PRIVATE_KEY_INVALID'
  // X.509-SVID
  | 'X509SVID_INVALID'
  | 'X509SVID_NO_URI_SAN'
  | 'X509SVID_MULTIPLE_URI_SANS'
  | 'X509SVID_LEAF_IS_CA'
  | 'X509SVID_LEAF_KEY_USAGE'
  | 'X509SVID_SIGNING_CERT_NOT_CA'
  | 'X509SVID_SIGNING_CERT_KEY_USAGE'
  | 'X509SVID_KEY_MISMATCH'
  | 'X509SVID_EXPIRED'
  | 'X509SVID_NOT_YET_VALID'
  | 'X509SVID_UNTRUSTED'
  | 'X509SVID_PATH_LEN_EXCEEDED'
  | 'X509SVID_UNSUPPORTED_CRITICAL_EXTENSION'
  | 'X509SVID_WEAK_SIGNATURE'
  | 'X509SVID_LEAF_NO_PATH'
  | 'X509SVID_NAME_NOT_PERMITTED'
  // JWT-SVID
  | 'JWTSVID_MALFORMED'
  | 'JWTSVID_UNSUPPORTED_ALG'
  | 'JWTSVID_BAD_TYP'
  | 'JWTSVID_MISSING_KID'
  | 'JWTSVID_UNKNOWN_KID'
  | 'JWTSVID_BAD_SUBJECT'
  | 'JWTSVID_MISSING_EXP'
  | 'JWTSVID_EXPIRED'
  | 'JWTSVID_NOT_YET_VALID'
  | 'JWTSVID_AUDIENCE_MISMATCH'
  | 'JWTSVID_BAD_SIGNATURE'
  | 'JWTSVID_INVALID'
  | 'JWTSVID_MISSING'
  | 'JWTSVID_INSECURE_TRANSPORT'
  | 'JWTSVID_NOT_BOUND_TO_PEER'
  // Identity forwarded by a proxy in x-forwarded-client-cert
  | 'XFCC_MALFORMED'
  | 'XFCC_UNTRUSTED_PEER'
  // Workload API and sources
  | 'WORKLOADAPI_BAD_ADDRESS'
  | 'WORKLOADAPI_NO_ADDRESS'
  | 'WORKLOADAPI_UNAVAILABLE'
  | 'WORKLOADAPI_PERMISSION_DENIED'
  | 'WORKLOADAPI_INVALID_ARGUMENT'
  | 'WORKLOADAPI_BAD_RESPONSE'
  | 'WORKLOADAPI_ERROR'
  | 'SOURCE_CLOSED'
  | 'SOURCE_NOT_READY'
  | 'SOURCE_TIMEOUT'
  | 'SOURCE_NO_SVID'
  | 'SOURCE_SVID_EXPIRED'
  | 'SOURCE_UPDATE_UNVERIFIED'
  | 'SOURCE_TRUST_DOMAIN_CHANGED'
  | 'FILE_SOURCE_ERROR'
  // files written by the CLI
  | 'FILE_UNSAFE_DIRECTORY'
  // TLS
  | 'TLS_PEER_UNVERIFIED'
  | 'TLS_NO_PEER_CERTIFICATE'
  // an adapter with peer allowlists on a server without SPIFFE TLS wiring (refused at start-up)
  | 'TLS_NOT_CONFIGURED'
  // @spiffe-ts/grpc
  | 'GRPC_UNSUPPORTED_VERSION'
  // SPIFFE Federation (bundle endpoints)
  | 'FEDERATION_BAD_CONFIG'
  | 'FEDERATION_UNAVAILABLE'
  | 'FEDERATION_TIMEOUT'
  | 'FEDERATION_ENDPOINT_UNTRUSTED'
  | 'FEDERATION_ENDPOINT_ID_MISMATCH'
  | 'FEDERATION_BAD_STATUS'
  | 'FEDERATION_BAD_REDIRECT'
  | 'FEDERATION_REDIRECT_LOOP'
  | 'FEDERATION_TOO_MANY_REDIRECTS'
  | 'FEDERATION_BUNDLE_TOO_LARGE'
  | 'FEDERATION_BUNDLE_INVALID'
  | 'FEDERATION_WRONG_TRUST_DOMAIN'
  | 'FEDERATION_BUNDLE_STALE';

/**
 * Base class of every error this library throws on bad input or a failed check; subclasses group the codes
 * by area (SpiffeIdError, X509SvidError, SourceError, ...).
 */
export class SpiffeError extends Error {
  /** Stable machine-readable reason: match on this, not on the message. */
  readonly code: SpiffeErrorCode;

  /** Creates an error with a stable `code`, a message for humans and, optionally, the underlying `cause`. */
  constructor(code: SpiffeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  /** The subclass name (e.g. `X509SvidError`), so stack traces and logs show which kind of error it is. */
  override get name(): string {
    return this.constructor.name;
  }
}

/** Invalid SPIFFE ID or trust domain. */
export class SpiffeIdError extends SpiffeError {}

/** A valid SPIFFE ID that the authorizer did not allow. */
export class AuthorizationError extends SpiffeError {
  /** The rejected peer ID, as a string (never from an unverified certificate). */
  readonly spiffeId: string;
  constructor(spiffeId: string, message = `SPIFFE ID "${spiffeId}" is not authorized`) {
    super('UNAUTHORIZED_SPIFFE_ID', message);
    this.spiffeId = spiffeId;
  }
}

/** Malformed or missing bundle. */
export class BundleError extends SpiffeError {}

/** Malformed certificate or private key input. */
export class CertificateError extends SpiffeError {}

/** X.509-SVID parse or verification failure. */
export class X509SvidError extends SpiffeError {}

/** JWT-SVID parse or validation failure. */
export class JwtSvidError extends SpiffeError {}

/** Workload API transport or protocol failure. */
export class WorkloadApiError extends SpiffeError {
  /** gRPC status code, when the failure came from the server. */
  readonly grpcCode: number | undefined;
  constructor(code: SpiffeErrorCode, message: string, options?: { cause?: unknown; grpcCode?: number }) {
    super(code, message, options);
    this.grpcCode = options?.grpcCode;
  }
}

/** A live source could not serve what was asked. */
export class SourceError extends SpiffeError {}

/** TLS peer verification failure. */
export class TlsVerificationError extends SpiffeError {}

/** A bundle endpoint could not be configured, reached, trusted or read (SPIFFE Federation). */
export class FederationError extends SpiffeError {
  /** The bundle endpoint URL the failure happened at (after redirects), when known. */
  readonly url: string | undefined;
  constructor(code: SpiffeErrorCode, message: string, options?: { cause?: unknown; url?: string }) {
    super(code, message, options);
    this.url = options?.url;
  }
}

/** True when `err` is a SpiffeError (of any subclass), narrowing it so `err.code` can be read. */
export function isSpiffeError(err: unknown): err is SpiffeError {
  return err instanceof SpiffeError;
}
