import type * as tls from 'node:tls';
import {
  authenticateBearer,
  authorizeSocketPeer,
  createSpiffeTlsServer,
  type JwtBundleSource,
  type JwtSvid,
  matchAny,
  type SpiffeId,
  type SpiffeIdAllowlist,
  type SpiffeIdMatcher,
  type SpiffeTlsServer,
  type SpiffeTlsServerOptions,
  toMatcher,
  type X509MaterialSource,
} from '@spiffe-ts/core';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
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
    /** The verified mTLS peer SPIFFE ID, or null when the connection has none. */
    spiffeId: SpiffeId | null;
    /** The validated JWT-SVID from `Authorization: Bearer`, or null. */
    jwtSvid: JwtSvid | null;
  }
  interface FastifyContextConfig {
    spiffe?: SpiffeRouteConfig;
  }
}

export interface FastifySpiffeOptions {
  /**
   * The SPIFFE TLS wiring created with `spiffeHttpsOptions` and passed to `Fastify({ https })`: the plugin
   * attaches it to the server (connection verification and live rotation).
   */
  tls?: SpiffeTlsServer;
  /** Default allowlist of mTLS peer IDs for every route; when set, routes deny by default. */
  allow?: SpiffeIdAllowlist;
  /** JWT-SVID bearer validation for every route (routes may opt out with `config.spiffe.jwt: false`). */
  jwt?: {
    /** JWT bundles to validate with (JwtSource, BundleSource, JwtBundleSet). */
    bundles: JwtBundleSource;
    /** Audience this service expects. */
    audience: string | readonly string[];
    /** Default allowlist of token subjects. */
    allow?: SpiffeIdAllowlist;
    /** Clock skew tolerance in seconds. */
    clockTolerance?: number;
    /** Validate only on routes with `config.spiffe.jwt: true` (default false: every route). */
    optIn?: boolean;
  };
}

/**
 * Builds the `https` options for `Fastify({ https })` from a live X.509 source: client certificates required,
 * peers verified by SPIFFE ID against their own trust domain's bundle (not by hostname), no session
 * resumption. Pass the result to the plugin's `tls` option so rotation and verification are wired.
 */
export function spiffeHttpsOptions(
  source: X509MaterialSource,
  options: Omit<SpiffeTlsServerOptions, 'source' | 'authorize'> & { authorize?: SpiffeIdAllowlist } = {},
): SpiffeTlsServer & { https: tls.TlsOptions } {
  const server = createSpiffeTlsServer({ ...options, source, authorize: options.authorize ?? matchAny() });
  return Object.assign(server, { https: server.options });
}

const kMatchers = Symbol('spiffeMatchers');
const anyPeer: SpiffeIdMatcher = () => true;

interface CompiledRoute {
  allow: SpiffeIdMatcher | undefined;
  jwt: boolean;
  jwtAllow: SpiffeIdMatcher | undefined;
}

const plugin: FastifyPluginAsync<FastifySpiffeOptions> = async (fastify, options) => {
  const defaultAllow = options.allow === undefined ? undefined : toMatcher(options.allow);
  const jwt = options.jwt;
  const defaultJwtAllow = jwt?.allow === undefined ? undefined : toMatcher(jwt.allow);

  if (options.tls) {
    const server = fastify.server as unknown as tls.Server;
    if (typeof (server as { setSecureContext?: unknown }).setSecureContext !== 'function') {
      throw new Error(
        '@spiffe-ts/fastify: `tls` was given but Fastify is not serving HTTPS; pass Fastify({ https: spiffe.https })',
      );
    }
    const detach = options.tls.attach(server);
    fastify.addHook('onClose', async () => detach());
  }

  fastify.decorateRequest('spiffeId', null);
  fastify.decorateRequest('jwtSvid', null);

  const compile = (cfg: SpiffeRouteConfig | undefined, url: string): CompiledRoute => {
    if (cfg?.jwt === true && !jwt) throw new Error(`route ${url}: config.spiffe.jwt needs the plugin's jwt option`);
    return {
      allow: cfg?.allow !== undefined ? toMatcher(cfg.allow) : defaultAllow,
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

  const deny = (request: FastifyRequest, reply: FastifyReply, status: number, message: string, id?: SpiffeId) => {
    request.log.warn(
      { spiffeId: id?.toString() ?? null, route: request.routeOptions.url, method: request.method },
      `SPIFFE authorization failed: ${message}`,
    );
    return reply
      .code(status)
      .send({ statusCode: status, error: status === 401 ? 'Unauthorized' : 'Forbidden', message });
  };

  // Callback-style for the mTLS part (no promise per request); only JWT validation is asynchronous.
  fastify.addHook('onRequest', (request, reply, done) => {
    const socket = request.raw.socket;
    let entry: CompiledRoute;
    try {
      // Unknown routes (404 handler) have no `config.spiffe`: they get the plugin defaults.
      entry = compiledFor(request);
    } catch (err) {
      done(err as Error);
      return;
    }
    const allow = entry.allow;
    const d = authorizeSocketPeer(socket, allow ?? anyPeer);
    // The verified ID is exposed even when this route refuses it (for logging hooks); unverified never is.
    if (d.id) request.spiffeId = d.id;
    if (allow && !d.ok) {
      deny(request, reply, 403, d.message, d.id);
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
    }).then(
      (b) => {
        if (!b.ok) {
          if (b.wwwAuthenticate) reply.header('www-authenticate', b.wwwAuthenticate);
          deny(request, reply, b.status, b.message, b.subject);
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
