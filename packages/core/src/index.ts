/**
 * @spiffe-ts/core: SPIFFE IDs, bundles, SVIDs, the Workload API client and live sources, SPIFFE mTLS for
 * node:tls / node:https, and the authorization decisions the framework adapters share. Every name exported
 * here is public API; the undici dispatcher is `@spiffe-ts/core/undici`.
 */

// Authorization decisions shared by the HTTP and gRPC adapters
export {
  authenticateBearer,
  type BearerDecision,
  type BearerOptions,
  bearerChallenge,
  type SpiffeJwtOptions,
  validateBindToPeer,
} from './auth/bearer.js';
export {
  isSpiffeAuthError,
  SpiffeAuthError,
  type SpiffeAuthErrorCode,
  type SpiffeDenial,
} from './auth/error.js';
export {
  authorizeSocketPeer,
  decideRequestPeer,
  isLocalSocket,
  type PeerDecision,
  type RequestConnection,
  type RequestPeerDecision,
  type ResolveRequestPeerOptions,
  resolveRequestPeer,
  type SpiffeIdSource,
  type SpiffeTrustedProxyOptions,
  TrustedProxy,
  toTrustedProxy,
  trustedProxy,
} from './auth/peer.js';
export {
  type ForwardedPeer,
  forwardedSpiffeId,
  MAX_XFCC_ELEMENTS,
  MAX_XFCC_LENGTH,
  parseXfcc,
  type XfccElement,
  XfccError,
} from './auth/xfcc.js';
// Bundles
export { type JwtAuthority, JwtBundle } from './bundle/jwt.js';
export { type BundleSet, JwtBundleSet, SpiffeBundleSet, X509BundleSet } from './bundle/set.js';
export type { JwtBundleSource, X509BundleSource } from './bundle/source.js';
export { SpiffeBundle } from './bundle/spiffe.js';
export { X509Bundle } from './bundle/x509.js';
// Errors
export {
  AuthorizationError,
  BundleError,
  CertificateError,
  FederationError,
  isSpiffeError,
  JwtSvidError,
  SourceError,
  SpiffeError,
  type SpiffeErrorCode,
  SpiffeIdError,
  TlsVerificationError,
  WorkloadApiError,
  X509SvidError,
} from './errors.js';
// SPIFFE Federation: bundle endpoint client, watcher, server, and combining bundle sources
export {
  type BundleEndpointProfile,
  DEFAULT_FETCH_TIMEOUT_MS,
  DEFAULT_MAX_BUNDLE_BYTES,
  DEFAULT_MAX_REDIRECTS,
  type FederationRelationship,
  type FetchBundleOptions,
  type FetchLimits,
  fetchBundle,
  type HttpsSpiffeProfile,
  type HttpsWebProfile,
} from './federation/client.js';
export {
  type BundleSetSource,
  CombinedBundleSource,
  combineBundleSources,
  withFederatedBundles,
  X509SourceWithBundles,
} from './federation/combine.js';
export {
  type BundleEndpointBundle,
  type BundleEndpointHandlerOptions,
  type BundleEndpointServer,
  type BundleEndpointServerOptions,
  type BundleEndpointServerProfile,
  bundleEndpointHandler,
  createBundleEndpointServer,
} from './federation/server.js';
export {
  DEFAULT_MAX_REFRESH_MS,
  DEFAULT_MIN_REFRESH_MS,
  DEFAULT_REFRESH_MS,
  FederatedBundleSource,
  type FederatedBundleSourceOptions,
  type FederationStatus,
} from './federation/watcher.js';
// PEM / DER helpers for material handled by the application
export {
  type CertificatesInput,
  certificatesToPem,
  parseCertificates,
  parsePrivateKey,
  privateKeyToPem,
} from './internal/x509util.js';
// Observability: logging, metrics, health, start-up time limits
export {
  checkReadiness,
  type HealthHandlerOptions,
  type HealthReporter,
  healthHandler,
  type ReadinessReport,
  type SourceHealth,
} from './observability/health.js';
export type { SpiffeLogger, SpiffeLogLevel } from './observability/logger.js';
export { METER_NAME, SpiffeMetric } from './observability/metrics.js';
export { type DenialContext, type HandshakeRefusalReason, reportDenial } from './observability/report.js';
// SPIFFE IDs, trust domains and matchers
export {
  MAX_SPIFFE_ID_LENGTH,
  MAX_TRUST_DOMAIN_LENGTH,
  SpiffeId,
  TrustDomain,
  toSpiffeId,
  toTrustDomain,
  validatePath,
} from './spiffeid/id.js';
export {
  allows,
  authorize,
  matchAll,
  matchAny,
  matchId,
  matchMemberOf,
  matchOneOf,
  matchPath,
  matchPathPrefix,
  matchSome,
  matchWhen,
  type SpiffeIdAllowlist,
  type SpiffeIdAllowlistEntry,
  type SpiffeIdAllowlistObject,
  type SpiffeIdMatcher,
  toMatcher,
} from './spiffeid/match.js';
export { FileX509Source, type FileX509SourceOptions } from './static/file-x509-source.js';
export { StaticX509Source } from './static/static-x509-source.js';
// SVIDs and the sources that hand them out
export {
  DEFAULT_JWT_CLOCK_TOLERANCE_SECONDS,
  insecureParseJwtSvid,
  JWT_SVID_ALGORITHMS,
  JwtSvid,
  type JwtSvidAlgorithm,
  parseAndValidateJwtSvid,
  type ValidateJwtSvidOptions,
} from './svid/jwt.js';
export type { JwtSvidSource, UpdatableSource, X509MaterialSource, X509SvidSource } from './svid/source.js';
export {
  idFromCertificate,
  tryIdFromCertificate,
  type VerifiedX509Svid,
  type VerifyX509SvidOptions,
  verifyX509Svid,
  X509Svid,
} from './svid/x509.js';
// SPIFFE mTLS
export {
  connectSpiffeTls,
  createSpiffeHttpsAgent,
  createSpiffeTlsSocket,
  type SpiffeTlsClientOptions,
  spiffeCheckServerIdentity,
  spiffeTlsConnectOptions,
} from './tls/client.js';
export { type TlsMaterial, tlsMaterial } from './tls/material.js';
export { peerSpiffeId, verifyPeer } from './tls/peer.js';
export {
  createSpiffeTlsServer,
  hasSpiffeTls,
  type SpiffeRejectEvent,
  type SpiffeServerTlsOptions,
  type SpiffeTlsAttachOptions,
  type SpiffeTlsServer,
  type SpiffeTlsServerOptions,
  spiffeServerTls,
} from './tls/server.js';
// Workload API
export { SPIFFE_ENDPOINT_SOCKET } from './workloadapi/address.js';
export type { BackoffOptions } from './workloadapi/backoff.js';
export { BundleSource } from './workloadapi/bundle-source.js';
export {
  type CallOptions,
  type JwtSvidParams,
  type Watch,
  type Watcher,
  WorkloadApiClient,
  type WorkloadApiClientOptions,
} from './workloadapi/client.js';
export { JwtSource, type JwtSourceOptions } from './workloadapi/jwt-source.js';
export type { X509Context } from './workloadapi/parse.js';
export type { ReadyOptions, SourceOptions, WorkloadApiSource } from './workloadapi/source.js';
export { DEFAULT_WORKLOAD_API_TIMEOUT_MS } from './workloadapi/startup.js';
export { GrpcStatus } from './workloadapi/status.js';
export { X509Source, type X509SourceOptions } from './workloadapi/x509-source.js';
