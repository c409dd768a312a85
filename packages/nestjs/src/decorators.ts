import { applyDecorators, createParamDecorator, type ExecutionContext, SetMetadata, UseGuards } from '@nestjs/common';
import {
  type JwtSvid,
  matchMemberOf,
  matchSome,
  peerSpiffeId,
  type SpiffeId,
  type SpiffeIdAllowlist,
  type SpiffeIdSource,
  type TrustDomain,
  toMatcher,
} from '@spiffe-ts/core';
import {
  type JwtRequirement,
  SPIFFE_ALLOW,
  SPIFFE_JWT,
  SpiffeGuard,
  type SpiffeHttpRequest,
  socketOf,
} from './guard.js';

/**
 * Only these verified mTLS peers may call the controller or handler (403 otherwise). Accepts SPIFFE IDs,
 * matchers, `{ trustDomain }` entries. With no arguments, nobody may. A handler's decorator overrides its
 * controller's.
 */
export function AllowSpiffeIds(...allow: Array<SpiffeIdAllowlist>): ClassDecorator & MethodDecorator {
  const matcher = toMatcher(allow as SpiffeIdAllowlist);
  return applyDecorators(SetMetadata(SPIFFE_ALLOW, matcher), UseGuards(SpiffeGuard));
}

/**
 * Only verified mTLS peers of these trust domains may call (403 otherwise).
 * @deprecated Use `@AllowSpiffeIds({ trustDomain: 'example.org' })`.
 */
export function AllowTrustDomain(...trustDomains: Array<TrustDomain | string>): ClassDecorator & MethodDecorator {
  const matcher = matchSome(...trustDomains.map((td) => matchMemberOf(td)));
  return applyDecorators(SetMetadata(SPIFFE_ALLOW, matcher), UseGuards(SpiffeGuard));
}

/**
 * Requires a valid JWT-SVID in `Authorization: Bearer` (401 + WWW-Authenticate otherwise; 403 for subjects
 * outside `allow`). The audience defaults to the module's `jwt.audience`, the allowlist to its `jwt.allow`.
 */
export function RequireJwtSvid(
  options: { audience?: string | readonly string[]; allow?: SpiffeIdAllowlist } = {},
): ClassDecorator & MethodDecorator {
  const requirement: JwtRequirement = {
    audience: options.audience,
    allow: options.allow === undefined ? undefined : toMatcher(options.allow),
  };
  return applyDecorators(SetMetadata(SPIFFE_JWT, requirement), UseGuards(SpiffeGuard));
}

/** Handler parameter: the verified mTLS peer SPIFFE ID, or undefined. */
export const PeerSpiffeId = createParamDecorator((_data: unknown, ctx: ExecutionContext): SpiffeId | undefined => {
  const req = ctx.switchToHttp().getRequest<SpiffeHttpRequest>();
  // Both values come only from a verified connection; the socket is read when no guard ran.
  return req.spiffeId ?? peerSpiffeId(socketOf(req));
});

/**
 * Handler parameter: where `@PeerSpiffeId()` came from, `'connection'` (mTLS) or `'proxy'` (a trusted
 * proxy's XFCC header, set by `SpiffeGuard`), or undefined without an ID.
 */
export const PeerSpiffeIdSource = createParamDecorator(
  (_data: unknown, ctx: ExecutionContext): SpiffeIdSource | undefined => {
    const req = ctx.switchToHttp().getRequest<SpiffeHttpRequest>();
    if (req.spiffeIdSource) return req.spiffeIdSource;
    return peerSpiffeId(socketOf(req)) ? 'connection' : undefined;
  },
);

/** Handler parameter: the JWT-SVID validated by `@RequireJwtSvid`, or undefined. */
export const BearerJwtSvid = createParamDecorator(
  (_data: unknown, ctx: ExecutionContext): JwtSvid | undefined =>
    ctx.switchToHttp().getRequest<SpiffeHttpRequest>().jwtSvid,
);
