import type { Socket } from 'node:net';
import { type CanActivate, type ExecutionContext, Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import {
  authenticateBearer,
  type JwtSvid,
  reportDenial,
  resolveRequestPeer,
  SpiffeAuthError,
  type SpiffeId,
  type SpiffeIdMatcher,
  type SpiffeIdSource,
  toMatcher,
} from '@spiffe-ts/core';
import { SpiffeAuthException } from './exception.js';
import { nestSpiffeLogger, SpiffeService } from './service.js';

// Modules (their services) that have said their app lacks SPIFFE TLS: once each.
const warnedNoTls = new WeakSet<SpiffeService>();

/** Metadata key of `@AllowSpiffeIds` (a compiled SpiffeIdMatcher). */
export const SPIFFE_ALLOW = Symbol.for('@spiffe-ts/nestjs:allow');
/** Metadata key of `@RequireJwtSvid` (a `JwtRequirement`). */
export const SPIFFE_JWT = Symbol.for('@spiffe-ts/nestjs:jwt');

/** What `@RequireJwtSvid` records on a handler or controller. */
export interface JwtRequirement {
  /** The audience for this route (default: the module's `jwt.audience`). */
  audience?: string | readonly string[];
  /** Subject allowlist for this route (default: the module's `jwt.allow`). */
  allow?: SpiffeIdMatcher;
}

/** The request objects of both platforms: Express's req, and Fastify's request (socket on request.raw). */
export interface SpiffeHttpRequest {
  /** HTTP method. */
  method?: string;
  /** Request URL (for the denial event's route). */
  url?: string;
  /** Request headers. */
  headers: Record<string, string | string[] | undefined>;
  /** The connection (platform-express). */
  socket?: Socket;
  /** The Node request, whose socket is the connection (platform-fastify). */
  raw?: { socket?: Socket };
  /** Set by the guard: the verified mTLS peer ID (or the client's, from a trusted proxy), or undefined. */
  spiffeId?: SpiffeId | undefined;
  /** Set by the guard: where `spiffeId` came from, `'connection'` (mTLS) or `'proxy'` (XFCC). */
  spiffeIdSource?: SpiffeIdSource | undefined;
  /** Set by the guard: the JWT-SVID validated by `@RequireJwtSvid`, or undefined. */
  jwtSvid?: JwtSvid | undefined;
}

interface HttpResponseLike {
  header(name: string, value: string): unknown;
}

/** The socket of a request of either platform. */
export function socketOf(req: SpiffeHttpRequest): Socket | undefined {
  return req.raw?.socket ?? req.socket;
}

/**
 * Enforces `@AllowSpiffeIds` (403) and `@RequireJwtSvid` (401 with WWW-Authenticate, 403 for a subject that
 * is not allowed) with the core's checks, throwing a `SpiffeAuthException`. Applied by those decorators; may
 * also be registered globally (APP_GUARD). Extend it like Nest's own guards: override `getRequest` (e.g.
 * GraphQL) or `throwDenied` (another exception type).
 */
@Injectable()
export class SpiffeGuard implements CanActivate {
  /** Where denials are logged when the module is not imported (the module's logger otherwise). */
  protected readonly logger = new Logger('SpiffeGuard');

  /** Reads the SPIFFE metadata of handlers and controllers. */
  protected readonly reflector: Reflector;
  /** The module's service (JWT bundles, defaults, onDenied); absent when the module is not imported. */
  protected readonly spiffe: SpiffeService | undefined;

  constructor(@Inject(Reflector) reflector: Reflector, @Optional() @Inject(SpiffeService) spiffe?: SpiffeService) {
    this.reflector = reflector;
    this.spiffe = spiffe;
  }

  /** The HTTP request of the context, or undefined where there is none (RPC, WebSockets). */
  protected getRequest(context: ExecutionContext): SpiffeHttpRequest | undefined {
    return context.getType() === 'http' ? context.switchToHttp().getRequest<SpiffeHttpRequest>() : undefined;
  }

  /**
   * Reports a denial (a warning with reason, peer address and verified SPIFFE ID on the module's logger,
   * module `onDenied`), sets its headers on the HTTP response and throws it as a `SpiffeAuthException`.
   * Override to throw something else; it must throw.
   */
  protected throwDenied(error: SpiffeAuthError, context: ExecutionContext, route?: string): never {
    const req = this.getRequest(context);
    const event = reportDenial(error, {
      route,
      remoteAddress: req ? socketOf(req)?.remoteAddress : undefined,
      logger: this.spiffe?.logger ?? nestSpiffeLogger(this.logger),
    });
    try {
      this.spiffe?.onDenied?.(event);
    } catch {
      // observation only: the request is denied either way
    }
    // Decorated routes on an app without SPIFFE TLS deny every request: say so loudly, once.
    // (Not behind a trusted proxy: a sidecar app serves plain HTTP on purpose.)
    if (
      event.code === 'PEER_NOT_VERIFIED' &&
      this.spiffe?.servesSpiffeTls === false &&
      this.spiffe.trustedProxy === undefined &&
      !warnedNoTls.has(this.spiffe)
    ) {
      warnedNoTls.add(this.spiffe);
      this.spiffe.logger.error(
        { reason: 'TLS_NOT_CONFIGURED', route },
        'SpiffeGuard: this app has no SPIFFE TLS wiring, so every route with @AllowSpiffeIds answers 403; pass ' +
          '`tls: spiffeServerTls(source)` to SpiffeModule.forRoot and its `.options` as httpsOptions',
      );
    }
    if (context.getType() === 'http') {
      const res = context.switchToHttp().getResponse<HttpResponseLike>();
      for (const [name, value] of Object.entries(error.headers)) res.header(name, value);
    }
    throw new SpiffeAuthException(error);
  }

  /** Runs the mTLS allowlist, then the JWT-SVID requirement, of the route. */
  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    const allow =
      this.reflector.getAllAndOverride<SpiffeIdMatcher | undefined>(SPIFFE_ALLOW, targets) ?? this.spiffe?.defaultAllow;
    const jwt = this.reflector.getAllAndOverride<JwtRequirement | undefined>(SPIFFE_JWT, targets);
    const req = this.getRequest(context);
    if (!req) {
      // No request to read a verified peer from: deny where SPIFFE rules apply rather than guess.
      if (allow === undefined && jwt === undefined) return true;
      this.throwDenied(new SpiffeAuthError('PEER_NOT_VERIFIED', { statusCode: 403 }), context);
    }
    const route = `${req.method ?? ''} ${req.url ?? ''}`.trim();

    const proxy = this.spiffe?.trustedProxy;
    const header = proxy ? req.headers[proxy.header] : undefined;
    // Without an allowlist only a forwarded-identity failure denies (fail closed on a spoofed header).
    const peer = resolveRequestPeer(socketOf(req), header, { allow, proxy });
    req.spiffeId = peer.id;
    req.spiffeIdSource = peer.source;
    if (!peer.ok) this.throwDenied(peer.error, context, route);

    if (jwt !== undefined) {
      const defaults = this.spiffe?.jwtDefaults;
      const bundles = this.spiffe?.jwtBundles;
      const audience = jwt.audience ?? defaults?.audience;
      if (!bundles || audience === undefined) {
        throw new Error('@RequireJwtSvid needs SpiffeModule.forRoot({ jwt: { bundles, audience } } or workloadApi)');
      }
      const decision = await authenticateBearer(req.headers.authorization, {
        bundles,
        audience,
        allow: jwt.allow ?? (defaults?.allow !== undefined ? toMatcher(defaults.allow) : undefined),
        clockTolerance: defaults?.clockTolerance,
        realm: defaults?.realm,
        bindToPeer: defaults?.bindToPeer,
        peer: req.spiffeId,
      });
      if (!decision.ok) this.throwDenied(decision.error, context, route);
      req.jwtSvid = decision.svid;
    }
    return true;
  }
}
