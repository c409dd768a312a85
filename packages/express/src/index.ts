import type { RequestListener } from 'node:http';
import * as https from 'node:https';
import type { Socket } from 'node:net';
import type * as tls from 'node:tls';
import {
  authenticateBearer,
  authorizeSocketPeer,
  createSpiffeTlsServer,
  type JwtBundleSource,
  type JwtSvid,
  matchAny,
  matchMemberOf,
  matchSome,
  peerSpiffeId,
  type SpiffeId,
  type SpiffeIdAllowlist,
  type SpiffeIdMatcher,
  type SpiffeTlsServerOptions,
  type TrustDomain,
  toMatcher,
  type X509MaterialSource,
} from '@spiffe-ts/core';
import type { NextFunction, Request, RequestHandler, Response } from 'express';

declare global {
  // Express's own request type lives in this global namespace (see @types/express-serve-static-core).
  namespace Express {
    interface Request {
      /** The verified mTLS peer SPIFFE ID (set by the SPIFFE middleware), or null when there is none. */
      spiffeId?: SpiffeId | null;
      /** The validated JWT-SVID from `Authorization: Bearer` (set by `jwtSvid()`), or null. */
      jwtSvid?: JwtSvid | null;
    }
  }
}

/** Where denials are reported: any logger with a pino/console-like `warn` (pino's `(obj, msg)` shape works). */
export interface SpiffeDenialLogger {
  warn(details: Record<string, unknown>, message: string): void;
}

export interface DenialOptions {
  /** Logger for denials (default: one line on console.warn); `false` silences it. */
  logger?: SpiffeDenialLogger | false;
}

const consoleLogger: SpiffeDenialLogger = {
  warn: (details, message) => console.warn(`${message} ${JSON.stringify(details)}`),
};

function deny(
  req: Request,
  res: Response,
  status: 401 | 403,
  message: string,
  id: SpiffeId | undefined,
  options: DenialOptions,
): void {
  const logger = options.logger === undefined ? consoleLogger : options.logger;
  if (logger) {
    logger.warn(
      { spiffeId: id?.toString() ?? null, route: routeOf(req), method: req.method },
      `SPIFFE authorization failed: ${message}`,
    );
  }
  res.status(status).json({ statusCode: status, error: status === 401 ? 'Unauthorized' : 'Forbidden', message });
}

// The matched route pattern when Express knows it (inside a route), else the path; never the query string.
function routeOf(req: Request): string {
  const route = (req as { route?: { path?: unknown } }).route;
  return typeof route?.path === 'string' ? `${req.baseUrl}${route.path}` : `${req.baseUrl}${req.path}`;
}

// Always the value derived from the socket's verification; written only when not already there.
function setPeer(req: Request, id: SpiffeId | null): void {
  if (req.spiffeId !== id) req.spiffeId = id;
}

function socketOf(req: Request): Socket {
  return req.socket;
}

// ---------------------------------------------------------------------------------------------------------
// HTTPS server

export interface SpiffeHttpsServerOptions extends Omit<SpiffeTlsServerOptions, 'source' | 'authorize'> {
  /** Which peers may connect at all; default any verified peer (authorize per router with the middleware). */
  authorize?: SpiffeIdAllowlist;
}

/**
 * Creates an HTTPS server for an Express app (or any request listener) with SPIFFE mTLS from a live X.509
 * source: client certificates required, each peer verified against its own trust domain's bundle, and the
 * certificate and bundles swapped live when the source rotates. Call `.listen()` on the result.
 */
export function createSpiffeHttpsServer(
  app: RequestListener,
  source: X509MaterialSource,
  options: SpiffeHttpsServerOptions = {},
): https.Server {
  const spiffe = createSpiffeTlsServer({ ...options, source, authorize: options.authorize ?? matchAny() });
  // The verified peer ID goes on the request while it is still a plain IncomingMessage: adding a property
  // after Express has re-prototyped the request costs about a microsecond per request (a slow-path store);
  // the middleware then finds the value already in place and only checks it.
  const listener: RequestListener = (req, res) => {
    (req as Request).spiffeId = peerSpiffeId(req.socket) ?? null;
    app(req, res);
  };
  const server = https.createServer(spiffe.options, listener);
  const detach = spiffe.attach(server as tls.Server);
  server.once('close', detach);
  return server;
}

// ---------------------------------------------------------------------------------------------------------
// Middleware

/** Sets `req.spiffeId` to the verified mTLS peer ID (or null). Never rejects: pair it with an allowlist. */
export function spiffeIdentity(): RequestHandler {
  const any = matchAny();
  return (req, _res, next) => {
    const decision = authorizeSocketPeer(socketOf(req), any);
    setPeer(req, decision.ok ? decision.id : null);
    next();
  };
}

/**
 * Admits only requests whose verified mTLS peer matches the allowlist; others get 403 (and a log line).
 * Also sets `req.spiffeId`. Entries are validated when the middleware is built, so typos fail at startup.
 *
 *   router.use(allowSpiffeIds('spiffe://example.org/service/payment-processor'))
 */
export function allowSpiffeIds(...ids: Array<SpiffeId | string | SpiffeIdMatcher>): RequestHandler {
  return requirePeer(ids, {});
}

/** Admits every verified peer of the given trust domains (403 otherwise). */
export function allowTrustDomain(...trustDomains: Array<TrustDomain | string>): RequestHandler {
  return requirePeer(matchSome(...trustDomains.map((td) => matchMemberOf(td))), {});
}

/** Like `allowSpiffeIds` with options (logger) and any allowlist form, including custom matchers. */
export function requirePeer(allow: SpiffeIdAllowlist, options: DenialOptions = {}): RequestHandler {
  const matcher: SpiffeIdMatcher = toMatcher(allow);
  return (req, res, next) => {
    const decision = authorizeSocketPeer(socketOf(req), matcher);
    if (!decision.ok) {
      // Only an ID that passed TLS verification is ever exposed, even on a rejected request.
      setPeer(req, decision.id ?? null);
      deny(req, res, decision.status, decision.message, decision.id, options);
      return;
    }
    setPeer(req, decision.id);
    next();
  };
}

export interface JwtSvidMiddlewareOptions extends DenialOptions {
  /** The audience this service expects (at least one must be in the token's `aud`). */
  audience: string | readonly string[];
  /** JWT bundles to validate with: a JwtSource, BundleSource or JwtBundleSet. */
  source: JwtBundleSource;
  /** Which token subjects may call (403 `insufficient_scope` otherwise); default any valid subject. */
  allow?: SpiffeIdAllowlist;
  /** Clock skew tolerance in seconds (default 30). */
  clockTolerance?: number;
  /** `realm` in WWW-Authenticate (default "spiffe"). */
  realm?: string;
}

/**
 * Validates `Authorization: Bearer <JWT-SVID>` against the source's JWT bundles and the audience, and sets
 * `req.jwtSvid`. Failures answer 401 with an RFC 6750 `WWW-Authenticate` header (403 for a subject that is
 * valid but not allowed). Works with Express 4 and 5 (does not rely on promise-aware routing).
 */
export function jwtSvid(options: JwtSvidMiddlewareOptions): RequestHandler {
  const allow = options.allow === undefined ? undefined : toMatcher(options.allow);
  return (req: Request, res: Response, next: NextFunction) => {
    authenticateBearer(req.headers.authorization, {
      bundles: options.source,
      audience: options.audience,
      allow,
      clockTolerance: options.clockTolerance,
      realm: options.realm,
    }).then(
      (decision) => {
        if (!decision.ok) {
          req.jwtSvid = null;
          if (decision.wwwAuthenticate) res.setHeader('WWW-Authenticate', decision.wwwAuthenticate);
          deny(req, res, decision.status, decision.message, decision.subject, options);
          return;
        }
        req.jwtSvid = decision.svid;
        next();
      },
      (err: unknown) => next(err),
    );
  };
}

export type { JwtSvid, SpiffeId, SpiffeIdAllowlist } from '@spiffe-ts/core';
