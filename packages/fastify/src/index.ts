import type * as tls from 'node:tls';
import {
  authenticateBearer,
  hasSpiffeTls,
  type JwtSvid,
  type ResolveRequestPeerOptions,
  reportDenial,
  resolveRequestPeer,
  type SpiffeAuthError,
  type SpiffeDenial,
  SpiffeError,
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
  toMatcher,
  toTrustedProxy,
  validateBindToPeer,
  type X509MaterialSource,
} from '@spiffe-ts/core';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

/** Per-route SPIFFE settings, under `config.spiffe`. */
export interface SpiffeRouteConfig {
  /** Which mTLS peer IDs may call this route (overrides the plugin's `allow`; `[]` denies everyone). */
  allow?: SpiffeIdAllowlist;
  /** Require (true, default when the plugin has `jwt`) or skip (false) JWT-SVID bearer validation. */
  jwt?: boolean;
  /** Which JWT-SVID subjects may call this route (overrides the plugin's `jwt.allow`). */
  jwtAllow?: SpiffeIdAllowlist;
}

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The request's verified SPIFFE ID: the mTLS peer's, or the client's forwarded by a trusted proxy
     * (`trustedProxy`); undefined when there is none.
     */
    spiffeId: SpiffeId | undefined;
    /** Where `spiffeId` came from: `'connection'` (mTLS) or `'proxy'` (a trusted proxy's XFCC header). */
    spiffeIdSource: SpiffeIdSource | undefined;
    /** The validated JWT-SVID from `Authorization: Bearer`, or undefined. */
    jwtSvid: JwtSvid | undefined;
  }
  interface FastifyContextConfig {
    spiffe?: SpiffeRouteConfig;
  }
}

/** JWT-SVID settings of the plugin: the shared `SpiffeJwtOptions`, plus opt-in per route. */
export interface FastifySpiffeJwtOptions extends SpiffeJwtOptions {
  /** Validate only on routes with `config.spiffe.jwt: true` (default false: every route). */
  optIn?: boolean;
}

/** Options of the `fastifySpiffe` plugin. */
export interface FastifySpiffeOptions {
  /**
   * The SPIFFE TLS wiring from `spiffeServerTls(source)`, whose `.options` went to `Fastify({ https })`: the
   * plugin attaches it to the server (connection verification and live rotation).
   */
  tls?: SpiffeTlsServer;
  /** Default allowlist of mTLS peer IDs for every route; when set, routes deny by default. */
  allow?: SpiffeIdAllowlist;
  /** JWT-SVID bearer validation for every route (routes may opt out with `config.spiffe.jwt: false`). */
  jwt?: FastifySpiffeJwtOptions;
  /**
   * Accept the client's SPIFFE ID from `x-forwarded-client-cert` when the direct peer is a trusted proxy
   * (Envoy, an Istio sidecar): by its verified SPIFFE ID (`ids`) or as a local sidecar (`localSidecar`).
   * Off by default. With it on, a request carrying the header from any other peer is refused with 403
   * XFCC_UNTRUSTED_PEER on every route, and a malformed header with 403 XFCC_MALFORMED.
   */
  trustedProxy?: SpiffeTrustedProxyOptions;
  /**
   * Told about every denial, before the SpiffeAuthError goes to Fastify's error handler (which answers
   * with its statusCode and headers, or your `setErrorHandler`). A throwing hook does not change the denial.
   */
  onDenied?: (event: SpiffeDenial, request: FastifyRequest) => void;
  /**
   * Where denials and refused handshakes are logged, as warnings with the reason code, peer address and
   * verified SPIFFE ID (default: `request.log` for denials, `fastify.log` for handshakes).
   */
  logger?: SpiffeLogger;
}

/**
 * The server TLS wiring with `https` as another name for `options` (the 0.1 API).
 * @deprecated Use `spiffeServerTls(source, options)` and pass its `.options` as `Fastify({ https })`.
 */
export function spiffeHttpsOptions(
  source: X509MaterialSource,
  options: SpiffeServerTlsOptions = {},
): SpiffeTlsServer & { https: tls.TlsOptions } {
  const server = spiffeServerTls(source, options);
  return Object.assign(server, { https: server.options });
}

const kMatchers = Symbol('spiffeMatchers');

// An allowlist that admits nobody works the same with or without TLS; any other one needs verified peers.
function needsPeers(allow: SpiffeIdAllowlist | undefined): boolean {
  return allow !== undefined && !(Array.isArray(allow) && allow.length === 0);
}

function noTlsError(where: string): SpiffeError {
  return new SpiffeError(
    'TLS_NOT_CONFIGURED',
    `@spiffe-ts/fastify: ${where} allows peers by SPIFFE ID, but this server has no SPIFFE TLS wiring, so every ` +
      'request would be refused with 403. Pass `tls: spiffeServerTls(source)` to the plugin and its `.options` ' +
      'as Fastify({ https })',
  );
}

interface CompiledRoute {
  allow: SpiffeIdMatcher | undefined;
  /** `{ allow, proxy }` for resolveRequestPeer, built once per route rather than per request. */
  peer: ResolveRequestPeerOptions;
  jwt: boolean;
  jwtAllow: SpiffeIdMatcher | undefined;
}

const plugin: FastifyPluginAsync<FastifySpiffeOptions> = async (fastify, options) => {
  const defaultAllow = options.allow === undefined ? undefined : toMatcher(options.allow);
  const jwt = options.jwt;
  const defaultJwtAllow = jwt?.allow === undefined ? undefined : toMatcher(jwt.allow);
  validateBindToPeer(jwt?.bindToPeer);
  const proxy = toTrustedProxy(options.trustedProxy);

  if (options.tls) {
    const server = fastify.server as unknown as tls.Server;
    if (typeof (server as { setSecureContext?: unknown }).setSecureContext !== 'function') {
      throw new SpiffeError(
        'TLS_NOT_CONFIGURED',
        '@spiffe-ts/fastify: `tls` was given but Fastify is not serving HTTPS; pass Fastify({ https: spiffe.options })',
      );
    }
    const detach = options.tls.attach(server, { logger: options.logger ?? fastify.log });
    fastify.addHook('onClose', async () => detach());
  }
  // Peer allowlists without SPIFFE TLS answer every request 403: refuse to start instead.
  // A local sidecar that terminates mTLS talks plain HTTP to the app: then no TLS is needed.
  const hasTls = (): boolean =>
    options.tls !== undefined || hasSpiffeTls(fastify.server) || options.trustedProxy?.localSidecar === true;
  if (needsPeers(options.allow) && !hasTls()) throw noTlsError('the plugin option `allow`');

  fastify.decorateRequest('spiffeId', undefined);
  fastify.decorateRequest('spiffeIdSource', undefined);
  fastify.decorateRequest('jwtSvid', undefined);

  const compile = (cfg: SpiffeRouteConfig | undefined, url: string): CompiledRoute => {
    if (cfg?.jwt === true && !jwt) throw new Error(`route ${url}: config.spiffe.jwt needs the plugin's jwt option`);
    if (needsPeers(cfg?.allow) && !hasTls()) throw noTlsError(`route ${url} (config.spiffe.allow)`);
    const allow = cfg?.allow !== undefined ? toMatcher(cfg.allow) : defaultAllow;
    return {
      allow,
      peer: { allow, proxy },
      jwt: jwt !== undefined && (cfg?.jwt ?? !jwt.optIn),
      jwtAllow: cfg?.jwtAllow !== undefined ? toMatcher(cfg.jwtAllow) : defaultJwtAllow,
    };
  };

  fastify.addHook('onRoute', (route) => {
    const entry = compile((route.config as { spiffe?: SpiffeRouteConfig } | undefined)?.spiffe, route.url);
    // Allowlists are validated and compiled once, when the route is added: bad entries fail at startup.
    route.config = { ...(route.config as object), [kMatchers]: entry } as typeof route.config;
  });

  // Routes added before the plugin was registered never reach onRoute: their own `config.spiffe` is compiled
  // at their first request (a bad entry then fails that request), never skipped in favour of the defaults.
  const lateRoutes = new WeakMap<object, CompiledRoute>();
  const compiledFor = (request: FastifyRequest): CompiledRoute => {
    const config = request.routeOptions.config as { [kMatchers]?: CompiledRoute; spiffe?: SpiffeRouteConfig };
    const early = config[kMatchers];
    if (early) return early;
    let late = lateRoutes.get(config);
    if (!late) {
      late = compile(config.spiffe, request.routeOptions.url ?? request.url);
      lateRoutes.set(config, late);
    }
    return late;
  };

  // The denial goes through Fastify's error path (done(err)): its default handler answers with the error's
  // statusCode, headers and code; an app's setErrorHandler sees and may reshape it.
  const deny = (request: FastifyRequest, error: SpiffeAuthError, done: (err?: Error) => void): void => {
    const event = reportDenial(error, {
      route: request.routeOptions.url ?? request.url,
      remoteAddress: request.raw.socket?.remoteAddress,
      logger: options.logger ?? request.log,
    });
    if (options.onDenied) {
      try {
        options.onDenied(event, request);
      } catch (err) {
        request.log.error({ err }, 'SPIFFE onDenied hook threw');
      }
    }
    done(error);
  };

  // Callback-style for the mTLS part (no promise per request); only JWT validation is asynchronous.
  fastify.addHook('onRequest', (request, _reply, done) => {
    const socket = request.raw.socket;
    let entry: CompiledRoute;
    try {
      // Unknown routes (404 handler) have no `config.spiffe`: they get the plugin defaults.
      entry = compiledFor(request);
    } catch (err) {
      done(err as Error);
      return;
    }
    // Without an allowlist only a forwarded-identity failure denies (fail closed on a spoofed header).
    const d = resolveRequestPeer(socket, proxy ? request.headers[proxy.header] : undefined, entry.peer);
    // The verified ID is exposed even when this route refuses it (for logging hooks); unverified never is.
    if (d.id) {
      request.spiffeId = d.id;
      request.spiffeIdSource = d.source;
    }
    if (!d.ok) {
      deny(request, d.error, done);
      return;
    }
    if (!entry.jwt || !jwt) {
      done();
      return;
    }
    authenticateBearer(request.headers.authorization, {
      bundles: jwt.bundles,
      audience: jwt.audience,
      allow: entry.jwtAllow,
      clockTolerance: jwt.clockTolerance,
      realm: jwt.realm,
      bindToPeer: jwt.bindToPeer,
      peer: request.spiffeId,
    }).then(
      (b) => {
        if (!b.ok) {
          deny(request, b.error, done);
          return;
        }
        request.jwtSvid = b.svid;
        done();
      },
      (err: Error) => done(err),
    );
  });
};

/** The SPIFFE plugin for Fastify (fastify-plugin: decorations are visible to the whole app). */
export const fastifySpiffe: FastifyPluginAsync<FastifySpiffeOptions> = fp(plugin, {
  fastify: '5.x',
  name: '@spiffe-ts/fastify',
});
export default fastifySpiffe;

export {
  isSpiffeAuthError,
  type JwtSvid,
  SpiffeAuthError,
  type SpiffeAuthErrorCode,
  type SpiffeDenial,
  SpiffeError,
  type SpiffeId,
  type SpiffeIdAllowlist,
  type SpiffeIdAllowlist as Allowlist,
  type SpiffeIdSource,
  type SpiffeJwtOptions,
  type SpiffeLogger,
  type SpiffeServerTlsOptions,
  type SpiffeTlsServer,
  type SpiffeTrustedProxyOptions,
  spiffeServerTls,
} from '@spiffe-ts/core';
