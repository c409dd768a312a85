import { type JwtBundleSource } from '../bundle/source.js';
import { JwtSvidError } from '../errors.js';
import { SpiffeId } from '../spiffeid/id.js';
import { allows, type SpiffeIdMatcher } from '../spiffeid/match.js';
import { JwtSvid, parseAndValidateJwtSvid, type ValidateJwtSvidOptions } from '../svid/jwt.js';

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
