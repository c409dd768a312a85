import type { Socket } from 'node:net';
import type * as tls from 'node:tls';
import {
  applyDecorators,
  type CanActivate,
  createParamDecorator,
  type DynamicModule,
  type ExecutionContext,
  ForbiddenException,
  Inject,
  Injectable,
  Logger,
  Module,
  type NestApplicationOptions,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  Optional,
  type Provider,
  SetMetadata,
  UnauthorizedException,
  UseGuards,
} from '@nestjs/common';
import { HttpAdapterHost, Reflector } from '@nestjs/core';
import {
  authenticateBearer,
  authorizeSocketPeer,
  createSpiffeTlsServer,
  type JwtBundleSource,
  JwtSource,
  type JwtSvid as JwtSvidType,
  matchAny,
  matchMemberOf,
  matchSome,
  type SpiffeIdAllowlist,
  type SpiffeIdMatcher,
  type SpiffeId as SpiffeIdType,
  type SpiffeTlsServer,
  type SpiffeTlsServerOptions,
  type TrustDomain,
  toMatcher,
  type X509MaterialSource,
} from '@spiffe-ts/core';

// ---------------------------------------------------------------------------------------------------------
// HTTPS options (needed before NestFactory.create, so they live outside the module)

export interface SpiffeHttps extends SpiffeTlsServer {
  /** The live X.509 source the options were built from. */
  readonly source: X509MaterialSource;
  /** Pass as `httpsOptions` (platform-express) or `new FastifyAdapter({ https })` (platform-fastify). */
  readonly https: tls.TlsOptions & NestHttpsOptions;
}

/** Nest declares its own (narrower) type for `httpsOptions`; the SPIFFE options satisfy both. */
export type NestHttpsOptions = NonNullable<NestApplicationOptions['httpsOptions']>;

/**
 * HTTPS options for a Nest app with SPIFFE mTLS: client certificates required, each peer verified against
 * its own trust domain's bundle. Give the result to `SpiffeModule.forRoot({ tls })` too: the module wires
 * verification and live rotation onto the HTTP server when the app boots.
 */
export function spiffeHttpsOptions(
  source: X509MaterialSource,
  options: Omit<SpiffeTlsServerOptions, 'source' | 'authorize'> & { authorize?: SpiffeIdAllowlist } = {},
): SpiffeHttps {
  const server = createSpiffeTlsServer({ ...options, source, authorize: options.authorize ?? matchAny() });
  return Object.assign(server, { source, https: server.options as tls.TlsOptions & NestHttpsOptions });
}

// ---------------------------------------------------------------------------------------------------------
// Module

export interface SpiffeModuleOptions {
  /** From `spiffeHttpsOptions(source)`: attached to the app's HTTPS server on bootstrap. */
  tls?: SpiffeHttps;
  /** JWT bundles for `@RequireJwtSvid` (a JwtSource, BundleSource or JwtBundleSet you own). */
  jwtBundles?: JwtBundleSource;
  /**
   * Let the module open its own JwtSource on the Workload API (closed on application shutdown) when
   * `jwtBundles` is not given. `true` uses SPIFFE_ENDPOINT_SOCKET.
   */
  workloadApi?: boolean | { address?: string; timeoutMs?: number };
  /** Defaults for `@RequireJwtSvid()`: the audience this service expects, and optional subject allowlist. */
  jwt?: { audience?: string | readonly string[]; allow?: SpiffeIdAllowlist; clockTolerance?: number };
  /**
   * The allowlist for routes with no `@AllowSpiffeIds` / `@AllowTrustDomain` of their own, enforced where
   * `SpiffeGuard` runs (register it globally with APP_GUARD to cover every route). Without it, such routes
   * pass with `request.spiffeId` set; `allow: []` denies every route that does not allow peers itself
   * (deny by default).
   */
  allow?: SpiffeIdAllowlist;
  /** Register the module globally (default true), so guards resolve `SpiffeService` everywhere. */
  isGlobal?: boolean;
}

export interface SpiffeModuleAsyncOptions {
  imports?: DynamicModule['imports'];
  inject?: Array<string | symbol | (abstract new (...args: never[]) => unknown) | (new (...args: never[]) => unknown)>;
  useFactory: (...args: never[]) => SpiffeModuleOptions | Promise<SpiffeModuleOptions>;
  isGlobal?: boolean;
}

export const SPIFFE_MODULE_OPTIONS = Symbol.for('@spiffe-ts/nestjs:options');

/** The module's state: sources, JWT defaults; closes what it opened on application shutdown. */
@Injectable()
export class SpiffeService implements OnApplicationBootstrap, OnApplicationShutdown {
  readonly #options: SpiffeModuleOptions;
  readonly #adapterHost: HttpAdapterHost | undefined;
  #ownedJwt: JwtSource | undefined;
  #detach: (() => void) | undefined;
  /** The module's `allow`, compiled (invalid entries fail when the module is created). */
  readonly defaultAllow: SpiffeIdMatcher | undefined;

  constructor(
    @Inject(SPIFFE_MODULE_OPTIONS) options: SpiffeModuleOptions,
    @Optional() @Inject(HttpAdapterHost) adapterHost?: HttpAdapterHost,
  ) {
    this.#options = options;
    this.#adapterHost = adapterHost;
    this.defaultAllow = options.allow === undefined ? undefined : toMatcher(options.allow);
  }

  /** Opens the module-owned JwtSource, if configured. Called by the module's provider factory. */
  async init(): Promise<this> {
    const api = this.#options.workloadApi;
    if (!this.#options.jwtBundles && api) {
      const cfg = api === true ? {} : api;
      this.#ownedJwt = await JwtSource.create({ address: cfg.address, timeoutMs: cfg.timeoutMs ?? 15_000 });
    }
    return this;
  }

  get x509Source(): X509MaterialSource | undefined {
    return this.#options.tls?.source;
  }

  get jwtBundles(): JwtBundleSource | undefined {
    return this.#options.jwtBundles ?? this.#ownedJwt;
  }

  /** A JwtSource opened by the module (to fetch our own JWT-SVIDs), when `workloadApi` is set. */
  get jwtSource(): JwtSource | undefined {
    return this.#ownedJwt;
  }

  get jwtDefaults(): SpiffeModuleOptions['jwt'] {
    return this.#options.jwt;
  }

  onApplicationBootstrap(): void {
    const tlsWiring = this.#options.tls;
    if (!tlsWiring || this.#detach) return;
    const server = this.#adapterHost?.httpAdapter?.getHttpServer() as tls.Server | undefined;
    if (!server || typeof server.setSecureContext !== 'function') {
      throw new Error(
        '@spiffe-ts/nestjs: `tls` was given but the app is not serving HTTPS; pass spiffe.https as httpsOptions ' +
          '(platform-express) or new FastifyAdapter({ https: spiffe.https }) (platform-fastify)',
      );
    }
    this.#detach = tlsWiring.attach(server);
  }

  async onApplicationShutdown(): Promise<void> {
    this.#detach?.();
    this.#detach = undefined;
    await this.#ownedJwt?.close();
    this.#ownedJwt = undefined;
  }
}

function serviceProvider(): Provider {
  return {
    provide: SpiffeService,
    inject: [SPIFFE_MODULE_OPTIONS, { token: HttpAdapterHost, optional: true }],
    useFactory: (options: SpiffeModuleOptions, host?: HttpAdapterHost) => new SpiffeService(options, host).init(),
  };
}

/**
 * SPIFFE for NestJS: `SpiffeModule.forRoot({ tls, workloadApi, jwt })` in the root module, then
 * `@AllowSpiffeIds(...)`, `@AllowTrustDomain(...)`, `@RequireJwtSvid(...)` on controllers or handlers.
 */
@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: Nest dynamic modules are classes with static forRoot/forRootAsync.
export class SpiffeModule {
  static forRoot(options: SpiffeModuleOptions = {}): DynamicModule {
    return {
      module: SpiffeModule,
      global: options.isGlobal ?? true,
      providers: [{ provide: SPIFFE_MODULE_OPTIONS, useValue: options }, serviceProvider(), SpiffeGuard],
      exports: [SpiffeService, SpiffeGuard],
    };
  }

  static forRootAsync(options: SpiffeModuleAsyncOptions): DynamicModule {
    return {
      module: SpiffeModule,
      global: options.isGlobal ?? true,
      imports: options.imports ?? [],
      providers: [
        { provide: SPIFFE_MODULE_OPTIONS, inject: options.inject ?? [], useFactory: options.useFactory },
        serviceProvider(),
        SpiffeGuard,
      ],
      exports: [SpiffeService, SpiffeGuard],
    };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Guard and decorators

const ALLOW = Symbol.for('@spiffe-ts/nestjs:allow');
const JWT = Symbol.for('@spiffe-ts/nestjs:jwt');

interface JwtRequirement {
  audience?: string | readonly string[];
  allow?: SpiffeIdMatcher;
}

// The request objects of both platforms: Express's req, and Fastify's request (socket on request.raw).
interface HttpRequestLike {
  method?: string;
  url?: string;
  headers: Record<string, string | string[] | undefined>;
  socket?: Socket;
  raw?: { socket?: Socket };
  spiffeId?: SpiffeIdType | null;
  jwtSvid?: JwtSvidType | null;
}

interface HttpResponseLike {
  header(name: string, value: string): unknown;
}

function socketOf(req: HttpRequestLike): Socket | undefined {
  return req.raw?.socket ?? req.socket;
}

/**
 * Enforces `@AllowSpiffeIds` / `@AllowTrustDomain` (403) and `@RequireJwtSvid` (401 with WWW-Authenticate)
 * with the core's checks. Applied automatically by those decorators; may also be registered globally
 * (APP_GUARD), where routes without SPIFFE metadata pass through with `request.spiffeId` set.
 */
@Injectable()
export class SpiffeGuard implements CanActivate {
  readonly #reflector: Reflector;
  readonly #spiffe: SpiffeService | undefined;
  readonly #logger = new Logger('SpiffeGuard');

  constructor(@Inject(Reflector) reflector: Reflector, @Optional() @Inject(SpiffeService) spiffe?: SpiffeService) {
    this.#reflector = reflector;
    this.#spiffe = spiffe;
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    const allow =
      this.#reflector.getAllAndOverride<SpiffeIdMatcher | undefined>(ALLOW, targets) ?? this.#spiffe?.defaultAllow;
    const jwt = this.#reflector.getAllAndOverride<JwtRequirement | undefined>(JWT, targets);
    if (context.getType() !== 'http') {
      // Only HTTP carries a verified peer here: deny where SPIFFE rules apply rather than guess.
      return allow === undefined && jwt === undefined;
    }
    const http = context.switchToHttp();
    const req = http.getRequest<HttpRequestLike>();
    const route = `${req.method ?? ''} ${req.url ?? ''}`.trim();

    const peer = authorizeSocketPeer(socketOf(req), allow ?? matchAny());
    req.spiffeId = peer.ok ? peer.id : (peer.id ?? null);
    if (allow !== undefined && !peer.ok) {
      this.#logger.warn(`SPIFFE authorization failed: ${peer.message} (peer ${peer.id ?? 'none'}, ${route})`);
      throw new ForbiddenException(peer.message);
    }

    if (jwt !== undefined) {
      const bundles = this.#spiffe?.jwtBundles;
      const audience = jwt.audience ?? this.#spiffe?.jwtDefaults?.audience;
      if (!bundles || audience === undefined) {
        throw new Error('@RequireJwtSvid needs SpiffeModule.forRoot({ jwtBundles | workloadApi, jwt: { audience } })');
      }
      const defaults = this.#spiffe?.jwtDefaults;
      const decision = await authenticateBearer(req.headers.authorization, {
        bundles,
        audience,
        allow: jwt.allow ?? (defaults?.allow !== undefined ? toMatcher(defaults.allow) : undefined),
        clockTolerance: defaults?.clockTolerance,
      });
      if (!decision.ok) {
        if (decision.wwwAuthenticate)
          http.getResponse<HttpResponseLike>().header('WWW-Authenticate', decision.wwwAuthenticate);
        this.#logger.warn(`JWT-SVID rejected: ${decision.message} (subject ${decision.subject ?? 'none'}, ${route})`);
        throw decision.status === 403
          ? new ForbiddenException(decision.message)
          : new UnauthorizedException(decision.message);
      }
      req.jwtSvid = decision.svid;
    }
    return true;
  }
}

/**
 * Only these verified mTLS peers may call the controller or handler (403 otherwise). Accepts SPIFFE IDs,
 * matchers, `{ trustDomain }` entries. With no arguments, nobody may. A handler's decorator overrides its
 * controller's.
 */
export function AllowSpiffeIds(...allow: Array<SpiffeIdAllowlist>): ClassDecorator & MethodDecorator {
  const matcher = toMatcher(allow as SpiffeIdAllowlist);
  return applyDecorators(SetMetadata(ALLOW, matcher), UseGuards(SpiffeGuard));
}

/** Only verified mTLS peers of these trust domains may call (403 otherwise). */
export function AllowTrustDomain(...trustDomains: Array<TrustDomain | string>): ClassDecorator & MethodDecorator {
  const matcher = matchSome(...trustDomains.map((td) => matchMemberOf(td)));
  return applyDecorators(SetMetadata(ALLOW, matcher), UseGuards(SpiffeGuard));
}

/**
 * Requires a valid JWT-SVID in `Authorization: Bearer` (401 + WWW-Authenticate otherwise; 403 for subjects
 * outside `allow`). The audience defaults to the module's `jwt.audience`.
 */
export function RequireJwtSvid(
  options: { audience?: string | readonly string[]; allow?: SpiffeIdAllowlist } = {},
): ClassDecorator & MethodDecorator {
  const requirement: JwtRequirement = {
    audience: options.audience,
    allow: options.allow === undefined ? undefined : toMatcher(options.allow),
  };
  return applyDecorators(SetMetadata(JWT, requirement), UseGuards(SpiffeGuard));
}

/** Handler parameter: the verified mTLS peer SPIFFE ID, or null. */
export const SpiffeId = createParamDecorator((_data: unknown, ctx: ExecutionContext): SpiffeIdType | null => {
  const req = ctx.switchToHttp().getRequest<HttpRequestLike>();
  if (req.spiffeId !== undefined) return req.spiffeId;
  const peer = authorizeSocketPeer(socketOf(req), matchAny());
  return peer.ok ? peer.id : null;
});

/** Handler parameter: the JWT-SVID validated by `@RequireJwtSvid`, or null. */
export const JwtSvid = createParamDecorator(
  (_data: unknown, ctx: ExecutionContext): JwtSvidType | null =>
    ctx.switchToHttp().getRequest<HttpRequestLike>().jwtSvid ?? null,
);

export type { JwtSvidType, SpiffeIdType };
