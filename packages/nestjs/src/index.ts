/**
 * @spiffe-ts/nestjs: SPIFFE mTLS and JWT-SVID authorization for NestJS (platform-express and platform-fastify).
 */

export {
  isSpiffeAuthError,
  type JwtSvid,
  SpiffeAuthError,
  type SpiffeAuthErrorCode,
  type SpiffeDenial,
  type SpiffeId,
  type SpiffeIdAllowlist,
  type SpiffeIdSource,
  type SpiffeJwtOptions,
  type SpiffeServerTlsOptions,
  type SpiffeTlsServer,
  type SpiffeTrustedProxyOptions,
} from '@spiffe-ts/core';
export {
  AllowSpiffeIds,
  AllowTrustDomain,
  BearerJwtSvid,
  PeerSpiffeId,
  PeerSpiffeIdSource,
  RequireJwtSvid,
} from './decorators.js';
export { SpiffeAuthException, type SpiffeExceptionBody } from './exception.js';
export {
  type JwtRequirement,
  SPIFFE_ALLOW,
  SPIFFE_JWT,
  SpiffeGuard,
  type SpiffeHttpRequest,
  socketOf,
} from './guard.js';
export {
  type NestHttpsOptions,
  type NestSpiffeTls,
  type SpiffeHttps,
  spiffeHttpsOptions,
  spiffeServerTls,
} from './https.js';
export { SpiffeModule } from './module.js';
export {
  nestSpiffeLogger,
  SPIFFE_MODULE_OPTIONS,
  type SpiffeModuleAsyncOptions,
  type SpiffeModuleOptions,
  type SpiffeOptionsFactory,
  SpiffeService,
} from './service.js';
