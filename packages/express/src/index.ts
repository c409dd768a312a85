import type { RequestListener } from 'node:http';
import * as https from 'node:https';
import type * as tls from 'node:tls';
import {
  authenticateBearer,
  isSpiffeAuthError,
  type JwtSvid,
  matchMemberOf,
  matchSome,
  peerSpiffeId,
  type ResolveRequestPeerOptions,
  reportDenial,
  resolveRequestPeer,
  type SpiffeAuthError,
  type SpiffeDenial,
  type SpiffeId,
  type SpiffeIdAllowlist,
  type SpiffeIdMatcher,
  type SpiffeIdSource,
  type SpiffeJwtOptions,
  type SpiffeLogger,
  type SpiffeServerTlsOptions,
  type SpiffeTlsServer,
  type SpiffeTrustedProxyOptions,
  spiffeServerTls,
  type TrustDomain,
  toMatcher,
  toTrustedProxy,
  validateBindToPeer,
  type X509MaterialSource,
} from '@spiffe-ts/core';
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler } from 'express';

declare global {
  // Express's own request type lives in this global namespace (see @types/express-serve-static-core).
  namespace Express {
    interface Request {
      /**
       * The request's verified SPIFFE ID (set by the SPIFFE middleware): the mTLS peer's, or the client's
       * forwarded by a trusted proxy (`trustedProxy`); undefined when there is none.
       */
      spiffeId?: SpiffeId | undefined;
      /** Where `spiffeId` came from: `'connection'` (mTLS) or `'proxy'` (a trusted proxy's XFCC header). */
      spiffeIdSource?: SpiffeIdSource | undefined;
      /** The validated JWT-SVID from `Authorization: Bearer` (set by `jwtSvid()`), or undefined. */
      jwtSvid?: JwtSvid | undefined;
    }
  }
}

/** Options every denying middleware takes. */
export interface SpiffeDenialOptions {
  /**
   * Told about every denial before the SpiffeAuthError goes to `next(err)`. A throwing hook does not change
   * the denial.
   */
  onDenied?: (event: SpiffeDenial, req: Request) => void;
  /**
   * Where denials are logged, as warnings with the reason code, peer address and verified SPIFFE ID: any
   * pino-compatible logger (`{ warn, info, debug, error }`). NODE_DEBUG=spiffe shows them either way.
   */
  logger?: SpiffeLogger;
}

// A denial is passed to Express's error path: the app's error middleware (or `spiffeErrorHandler()`, or
// Express's default handler, which uses the error's statusCode and headers) answers it.
function deny(req: Request, next: NextFunction, error: SpiffeAuthError, options: SpiffeDenialOptions): void {
  const event = reportDenial(error, {
    route: routeOf(req),
    remoteAddress: req.socket?.remoteAddress,
    logger: options.logger,
  });
  if (options.onDenied) {
    try {
      options.onDenied(event, req);
    } catch {
      // the hook is for observation only; the request is denied either way
    }
  }
  next(error);
}

// The matched route pattern when Express knows it (inside a route), else the path; never the query string.
function routeOf(req: Request): string {
  const route = (req as { route?: { path?: unknown } }).route;
  return typeof route?.path === 'string' ? `${req.baseUrl}${route.path}` : `${req.baseUrl}${req.path}`;
}

// Always the value derived from the socket's verification (or a trusted proxy); written only when it changes.
function setPeer(req: Request, id: SpiffeId | undefined, source: SpiffeIdSource | undefined): void {
  if (req.spiffeId !== id) req.spiffeId = id;
  if (req.spiffeIdSource !== source) req.spiffeIdSource = source;
}

/** Options of `requirePeer` and `spiffeIdentity`: the denial hooks, and whom to trust for forwarded IDs. */
export interface SpiffePeerOptions extends SpiffeDenialOptions {
  /**
   * Accept the client's SPIFFE ID from `x-forwarded-client-cert` when the direct peer is a trusted proxy
   * (Envoy, an Istio sidecar): by its verified SPIFFE ID (`ids`) or as a local sidecar (`localSidecar`).
   * Off by default. With it on, a request carrying the header from any other peer is refused with 403
   * XFCC_UNTRUSTED_PEER (also by `spiffeIdentity`), and a malformed header with 403 XFCC_MALFORMED.
   */
  trustedProxy?: SpiffeTrustedProxyOptions;
}

function headerOf(req: Request, name: string): string | string[] | undefined {
  return req.headers[name];
}

// ---------------------------------------------------------------------------------------------------------
// HTTPS server

/**
 * Options of the old `createSpiffeHttpsServer(app, source, options)` form.
 * @deprecated The same as `SpiffeServerTlsOptions`.
 */
export type SpiffeHttpsServerOptions = SpiffeServerTlsOptions;

/** Options of `createSpiffeHttpsServer(app, tls, options)`. */
export interface SpiffeHttpsAttachOptions {
  /**
   * Where refused handshakes are logged, as warnings with the reason code and peer address (default: the
   * wiring's own `logger`). Any pino-compatible logger.
   */
  logger?: SpiffeLogger;
}

/**
 * Creates an HTTPS server for an Express app (or any request listener) from `spiffeServerTls(source)`:
 * client certificates required, each peer verified against its own trust domain's bundle, and the
 * certificate and bundles swapped live when the source rotates. Call `.listen()` on the result.
 * The older `(app, source, options)` form builds the wiring itself.
 */
export function createSpiffeHttpsServer(
  app: RequestListener,
  tls: SpiffeTlsServer,
  options?: SpiffeHttpsAttachOptions,
): https.Server;
/**
 * Creates the HTTPS server from a source and TLS options (the 0.1 form).
 * @deprecated Pass `spiffeServerTls(source, options)` instead of the source.
 */
export function createSpiffeHttpsServer(
  app: RequestListener,
  source: X509MaterialSource,
  options?: SpiffeServerTlsOptions,
): https.Server;
export function createSpiffeHttpsServer(
  app: RequestListener,
  tlsOrSource: SpiffeTlsServer | X509MaterialSource,
  options: SpiffeServerTlsOptions = {},
): https.Server {
  const spiffe = 'attach' in tlsOrSource ? tlsOrSource : spiffeServerTls(tlsOrSource, options);
  // The verified peer ID goes on the request while it is still a plain IncomingMessage: adding a property
  // after Express has re-prototyped the request is a slow-path store; the middleware then only checks it.
  const listener: RequestListener = (req, res) => {
    const id = peerSpiffeId(req.socket);
    (req as Request).spiffeId = id;
    (req as Request).spiffeIdSource = id && 'connection';
    app(req, res);
  };
  const server = https.createServer(spiffe.options, listener);
  const detach = spiffe.attach(server as tls.Server, { logger: options.logger });
  server.once('close', detach);
  return server;
}

// ---------------------------------------------------------------------------------------------------------
// Middleware

/**
 * Sets `req.spiffeId` to the verified mTLS peer ID (or undefined). Never rejects, except with `trustedProxy`
 * a forwarded-identity header that is spoofed or malformed (fail closed): pair it with an allowlist.
 */
export function spiffeIdentity(options: SpiffePeerOptions = {}): RequestHandler {
  const proxy = toTrustedProxy(options.trustedProxy);
  const peerOptions: ResolveRequestPeerOptions = { proxy };
  return (req, _res, next) => {
    if (!proxy) {
      const id = peerSpiffeId(req.socket);
      setPeer(req, id, id && 'connection');
      next();
      return;
    }
    const decision = resolveRequestPeer(req.socket, headerOf(req, proxy.header), peerOptions);
    setPeer(req, decision.id, decision.source);
    if (!decision.ok) {
      deny(req, next, decision.error, options);
      return;
    }
    next();
  };
}

/**
 * Admits only requests whose verified mTLS peer matches the allowlist (SPIFFE IDs, matchers,
 * `{ trustDomain }` entries); others go to `next(err)` with a 403 SpiffeAuthError. Also sets `req.spiffeId`.
 * Entries are validated when the middleware is built, so typos fail at startup.
 *
 *   router.use(requirePeer(['spiffe://example.org/service/payment-processor']))
 */
export function requirePeer(allow: SpiffeIdAllowlist, options: SpiffePeerOptions = {}): RequestHandler {
  const matcher: SpiffeIdMatcher = toMatcher(allow);
  const proxy = toTrustedProxy(options.trustedProxy);
  // Built once: the per-request path allocates nothing but the decision.
  const peerOptions: ResolveRequestPeerOptions = { allow: matcher, proxy };
  return (req, _res, next) => {
    const header = proxy ? headerOf(req, proxy.header) : undefined;
    const decision = resolveRequestPeer(req.socket, header, peerOptions);
    // Only an ID that passed TLS verification (or came from a trusted proxy) is ever exposed.
    setPeer(req, decision.id, decision.source);
    if (!decision.ok) {
      deny(req, next, decision.error, options);
      return;
    }
    next();
  };
}

/** `requirePeer` with the allowlist entries as arguments and no options. */
export function allowSpiffeIds(
  ...allow: Array<SpiffeId | string | SpiffeIdMatcher | { trustDomain: TrustDomain | string }>
): RequestHandler {
  return requirePeer(allow, {});
}

/**
 * Admits every verified peer of the given trust domains (403 otherwise).
 * @deprecated Use `requirePeer({ trustDomain })` (or `[{ trustDomain: a }, { trustDomain: b }]`).
 */
export function allowTrustDomain(...trustDomains: Array<TrustDomain | string>): RequestHandler {
  return requirePeer(matchSome(...trustDomains.map((td) => matchMemberOf(td))), {});
}

/** Options of `jwtSvid()`: the shared `SpiffeJwtOptions` plus the denial hook. */
export interface JwtSvidMiddlewareOptions extends SpiffeJwtOptions, SpiffeDenialOptions {}

/**
 * Validates `Authorization: Bearer <JWT-SVID>` against the JWT bundles and the audience, and sets
 * `req.jwtSvid`. Failures go to `next(err)` as a SpiffeAuthError: 401 with an RFC 6750 `WWW-Authenticate`
 * header (403 `insufficient_scope` for a valid subject that is not allowed). Works with Express 4 and 5.
 * With `bindToPeer` the token is bound to `req.spiffeId`: put `requirePeer`/`spiffeIdentity` (with the same
 * `trustedProxy`, behind a proxy) before it.
 */
export function jwtSvid(options: JwtSvidMiddlewareOptions): RequestHandler {
  const bearer = {
    bundles: options.bundles,
    audience: options.audience,
    allow: options.allow === undefined ? undefined : toMatcher(options.allow),
    clockTolerance: options.clockTolerance,
    realm: options.realm,
    bindToPeer: options.bindToPeer,
  };
  validateBindToPeer(options.bindToPeer);
  return (req, _res, next) => {
    authenticateBearer(req.headers.authorization, { ...bearer, peer: req.spiffeId ?? peerSpiffeId(req.socket) }).then(
      (decision) => {
        if (!decision.ok) {
          req.jwtSvid = undefined;
          deny(req, next, decision.error, options);
          return;
        }
        req.jwtSvid = decision.svid;
        next();
      },
      (err: unknown) => next(err),
    );
  };
}

/** The JSON body `spiffeErrorHandler()` sends (the same shape Fastify's default handler uses). */
export interface SpiffeErrorBody {
  /** 401 or 403. */
  statusCode: 401 | 403;
  /** The status text. */
  error: 'Unauthorized' | 'Forbidden';
  /** The stable denial code. */
  code: SpiffeAuthError['code'];
  /** The client-safe message. */
  message: string;
}

/**
 * Error middleware that answers SPIFFE denials with their status, headers and a JSON `SpiffeErrorBody`, and
 * passes every other error on. Optional: without it Express's default handler answers with the status and
 * headers (and its own HTML body); your own error middleware can do the same with `isSpiffeAuthError(err)`.
 */
export function spiffeErrorHandler(): ErrorRequestHandler {
  return (err: unknown, _req, res, next) => {
    if (!isSpiffeAuthError(err) || res.headersSent) {
      next(err);
      return;
    }
    const body: SpiffeErrorBody = {
      statusCode: err.statusCode,
      error: err.statusCode === 401 ? 'Unauthorized' : 'Forbidden',
      code: err.code,
      message: err.message,
    };
    res.status(err.statusCode).set(err.headers).json(body);
  };
}

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
  type SpiffeLogger,
  type SpiffeServerTlsOptions,
  type SpiffeTlsServer,
  type SpiffeTrustedProxyOptions,
  spiffeServerTls,
} from '@spiffe-ts/core';
