import type { Socket } from 'node:net';
import type { JwtBundleSource } from './bundle.js';
import { JwtSvidError } from './errors.js';
import { type JwtSvid, parseAndValidateJwtSvid, type ValidateJwtSvidOptions } from './jwtsvid.js';
import { allows, type SpiffeIdMatcher } from './match.js';
import type { SpiffeId } from './spiffeid.js';
import { peerSpiffeId } from './tls.js';

/**
 * Framework-agnostic request authorization shared by every HTTP adapter (Fastify, Express, NestJS), so
 * they all decide the same way and answer with the same status codes and headers.
 */

export type PeerDecision =
  | { ok: true; id: SpiffeId }
  | { ok: false; status: 403; id: SpiffeId | undefined; reason: 'no_verified_peer' | 'not_allowed'; message: string };

/** Checks the verified mTLS peer of a request's socket against an allowlist matcher. */
export function authorizeSocketPeer(socket: Socket | null | undefined, matcher: SpiffeIdMatcher): PeerDecision {
  const id = peerSpiffeId(socket);
  if (!id) {
    return {
      ok: false,
      status: 403,
      id: undefined,
      reason: 'no_verified_peer',
      message: 'no verified SPIFFE ID for this connection',
    };
  }
  if (!allows(matcher, id)) {
    return { ok: false, status: 403, id, reason: 'not_allowed', message: `SPIFFE ID "${id}" is not authorized` };
  }
  return { ok: true, id };
}

export interface BearerOptions extends ValidateJwtSvidOptions {
  /** JWT bundles to validate with (a JwtSource, BundleSource or JwtBundleSet). */
  bundles: JwtBundleSource;
  /** The audience this service expects (at least one must be in the token's `aud`). */
  audience: string | readonly string[];
  /** Optional allowlist for the token's subject. */
  allow?: SpiffeIdMatcher;
  /** `realm` in WWW-Authenticate (default "spiffe"). */
  realm?: string;
}

export type BearerDecision =
  | { ok: true; svid: JwtSvid }
  | {
      ok: false;
      status: 401 | 403;
      wwwAuthenticate: string | undefined;
      error: JwtSvidError;
      message: string;
      /** The token's subject when the token was valid but the subject is not allowed (403). */
      subject?: SpiffeId;
    };

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
 * Validates a JWT-SVID bearer token from an Authorization header. Failures carry the 401/403 status and an
 * RFC 6750 `WWW-Authenticate` value.
 */
export async function authenticateBearer(
  authorization: string | string[] | undefined,
  options: BearerOptions,
): Promise<BearerDecision> {
  const realm = options.realm ?? 'spiffe';
  const token = bearerToken(authorization);
  if (!token) {
    const error = new JwtSvidError('JWTSVID_MALFORMED', 'missing bearer token');
    return { ok: false, status: 401, wwwAuthenticate: `Bearer realm=${quote(realm)}`, error, message: error.message };
  }
  try {
    const svid = await parseAndValidateJwtSvid(token, options.bundles, options.audience, options);
    if (options.allow) {
      if (!allows(options.allow, svid.id)) {
        const error = new JwtSvidError('JWTSVID_INVALID', `JWT-SVID subject "${svid.id}" is not authorized`);
        return {
          ok: false,
          status: 403,
          wwwAuthenticate: `Bearer realm=${quote(realm)}, error="insufficient_scope", error_description=${quote(error.message)}`,
          error,
          message: error.message,
          subject: svid.id,
        };
      }
    }
    return { ok: true, svid };
  } catch (err) {
    const error =
      err instanceof JwtSvidError
        ? err
        : new JwtSvidError('JWTSVID_INVALID', `token validation failed: ${(err as Error).message}`, { cause: err });
    return {
      ok: false,
      status: 401,
      wwwAuthenticate: `Bearer realm=${quote(realm)}, error="invalid_token", error_description=${quote(error.message)}`,
      error,
      message: error.message,
    };
  }
}
