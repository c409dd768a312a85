import type * as tls from 'node:tls';
import {
  type DynamicModule,
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  Optional,
} from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import {
  hasSpiffeTls,
  type JwtBundleSource,
  JwtSource,
  type SpiffeDenial,
  SpiffeError,
  type SpiffeIdAllowlist,
  type SpiffeIdMatcher,
  type SpiffeJwtOptions,
  type SpiffeLogger,
  type SpiffeTlsServer,
  type SpiffeTrustedProxyOptions,
  type TrustedProxy,
  toMatcher,
  toTrustedProxy,
  validateBindToPeer,
  type X509MaterialSource,
} from '@spiffe-ts/core';

/** Options of `SpiffeModule.forRoot` (and what `forRootAsync` factories return). */
export interface SpiffeModuleOptions {
  /** From `spiffeServerTls(source)`: attached to the app's HTTPS server on bootstrap (verification, rotation). */
  tls?: SpiffeTlsServer;
  /**
   * JWT-SVID validation for `@RequireJwtSvid`: the shared `SpiffeJwtOptions`. `bundles` may be left out when
   * `workloadApi` is set, and `audience` when every `@RequireJwtSvid` names its own.
   */
  jwt?: Partial<SpiffeJwtOptions>;
  /**
   * JWT bundles for `@RequireJwtSvid`.
   * @deprecated Use `jwt.bundles`.
   */
  jwtBundles?: JwtBundleSource;
  /**
   * Let the module open its own JwtSource on the Workload API (closed on application shutdown) when
   * `jwt.bundles` is not given. `true` uses SPIFFE_ENDPOINT_SOCKET. Opened while the module initialises,
   * which fails with SOURCE_TIMEOUT after `timeoutMs` (default 30 s; `Infinity` waits forever).
   */
  workloadApi?: boolean | { address?: string; timeoutMs?: number };
  /**
   * The allowlist for routes with no `@AllowSpiffeIds` of their own, enforced where `SpiffeGuard` runs
   * (register it globally with APP_GUARD to cover every route). Without it, such routes pass with
   * `request.spiffeId` set; `allow: []` denies every route that does not allow peers itself (deny by default).
   */
  allow?: SpiffeIdAllowlist;
  /**
   * Accept the client's SPIFFE ID from `x-forwarded-client-cert` when the direct peer is a trusted proxy
   * (Envoy, an Istio sidecar): by its verified SPIFFE ID (`ids`) or as a local sidecar (`localSidecar`).
   * Off by default. With it on, wherever `SpiffeGuard` runs, a request carrying the header from any other
   * peer is refused with 403 XFCC_UNTRUSTED_PEER, and a malformed header with 403 XFCC_MALFORMED.
   */
  trustedProxy?: SpiffeTrustedProxyOptions;
  /** Told about every denial (besides the warning logged). A throwing hook does not change it. */
  onDenied?: (event: SpiffeDenial) => void;
  /**
   * Where denials and refused handshakes are logged, as warnings with the reason code, peer address and
   * verified SPIFFE ID (default: Nest's `Logger` with the context "Spiffe"). Any pino-compatible logger.
   */
  logger?: SpiffeLogger;
  /** Register the module globally (default true), so guards resolve `SpiffeService` everywhere. */
  isGlobal?: boolean;
}

/** A class that builds the module's options, for `forRootAsync({ useClass | useExisting })`. */
export interface SpiffeOptionsFactory {
  /** Returns the module's options. */
  createSpiffeOptions(): SpiffeModuleOptions | Promise<SpiffeModuleOptions>;
}

/** Options of `SpiffeModule.forRootAsync`: exactly one of useFactory, useClass, useExisting. */
export interface SpiffeModuleAsyncOptions {
  /** Modules that export what the factory or class injects. */
  imports?: DynamicModule['imports'];
  /** Tokens injected into `useFactory`. */
  inject?: Array<string | symbol | (abstract new (...args: never[]) => unknown) | (new (...args: never[]) => unknown)>;
  /** A factory returning the options. */
  useFactory?: (...args: never[]) => SpiffeModuleOptions | Promise<SpiffeModuleOptions>;
  /** A class the module instantiates to build the options. */
  useClass?: new (
    ...args: never[]
  ) => SpiffeOptionsFactory;
  /** An existing provider (from `imports`) that builds the options. */
  useExisting?: new (
    ...args: never[]
  ) => SpiffeOptionsFactory;
  /** Register the module globally (default true). */
  isGlobal?: boolean;
}

/** One line per event for Nest's Logger: the message, then the fields as key=value. */
export function nestSpiffeLogger(logger: Pick<Logger, 'error' | 'warn' | 'log' | 'debug'>): SpiffeLogger {
  const line = (fields: object, message: string): string => {
    const parts = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? JSON.stringify(v) : String(v)}`);
    return parts.length ? `${message} ${parts.join(' ')}` : message;
  };
  return {
    error: (fields, message) => logger.error(line(fields, message)),
    warn: (fields, message) => logger.warn(line(fields, message)),
    info: (fields, message) => logger.log(line(fields, message)),
    debug: (fields, message) => logger.debug(line(fields, message)),
  };
}

// An allowlist that admits nobody works the same with or without TLS; any other one needs verified peers.
function needsPeers(allow: SpiffeIdAllowlist | undefined): boolean {
  return allow !== undefined && !(Array.isArray(allow) && allow.length === 0);
}

/** Injection token of the module's options. */
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
  /** Where denials and refused handshakes are logged (the module's `logger`, or Nest's Logger). */
  readonly logger: SpiffeLogger;
  /** The module's `trustedProxy`, validated (a bad one fails when the module is created). */
  readonly trustedProxy: TrustedProxy | undefined;

  constructor(
    @Inject(SPIFFE_MODULE_OPTIONS) options: SpiffeModuleOptions,
    @Optional() @Inject(HttpAdapterHost) adapterHost?: HttpAdapterHost,
  ) {
    this.#options = options;
    this.#adapterHost = adapterHost;
    this.defaultAllow = options.allow === undefined ? undefined : toMatcher(options.allow);
    this.logger = options.logger ?? nestSpiffeLogger(new Logger('Spiffe'));
    this.trustedProxy = toTrustedProxy(options.trustedProxy);
    validateBindToPeer(options.jwt?.bindToPeer);
  }

  /** Opens the module-owned JwtSource, if configured. Called by the module's provider factory. */
  async init(): Promise<this> {
    const api = this.#options.workloadApi;
    if (!this.#configuredBundles() && api) {
      const cfg = api === true ? {} : api;
      this.#ownedJwt = await JwtSource.create({ address: cfg.address, timeoutMs: cfg.timeoutMs, logger: this.logger });
    }
    return this;
  }

  #configuredBundles(): JwtBundleSource | undefined {
    return this.#options.jwt?.bundles ?? this.#options.jwtBundles;
  }

  /** The X.509 source behind `tls`, when the wiring carries one (`spiffeHttpsOptions`). */
  get x509Source(): X509MaterialSource | undefined {
    const wiring = this.#options.tls as (SpiffeTlsServer & { source?: X509MaterialSource }) | undefined;
    return wiring?.source;
  }

  /** The JWT bundles `@RequireJwtSvid` validates with. */
  get jwtBundles(): JwtBundleSource | undefined {
    return this.#configuredBundles() ?? this.#ownedJwt;
  }

  /** A JwtSource opened by the module (to fetch our own JWT-SVIDs), when `workloadApi` is set. */
  get jwtSource(): JwtSource | undefined {
    return this.#ownedJwt;
  }

  /** The module's `jwt` options. */
  get jwtDefaults(): SpiffeModuleOptions['jwt'] {
    return this.#options.jwt;
  }

  /**
   * Whether the app's HTTP server has SPIFFE TLS wiring (the module's `tls`, or one attached elsewhere);
   * undefined without an HTTP server.
   */
  get servesSpiffeTls(): boolean | undefined {
    if (this.#options.tls) return true;
    const server: unknown = this.#adapterHost?.httpAdapter?.getHttpServer();
    return server ? hasSpiffeTls(server) : undefined;
  }

  /** The module's `onDenied` hook. */
  get onDenied(): SpiffeModuleOptions['onDenied'] {
    return this.#options.onDenied;
  }

  /**
   * Attaches `tls` to the app's HTTPS server. Refuses to start (TLS_NOT_CONFIGURED) when the module allows
   * peers by SPIFFE ID but the server has no SPIFFE TLS wiring: every such request would be refused.
   */
  onApplicationBootstrap(): void {
    const tlsWiring = this.#options.tls;
    const server = this.#adapterHost?.httpAdapter?.getHttpServer() as tls.Server | undefined;
    if (!tlsWiring) {
      // Only apps that serve HTTP: an application context or a microservice has no server to wire.
      // A local sidecar that terminates mTLS talks plain HTTP to the app: then no TLS is needed.
      const sidecar = this.#options.trustedProxy?.localSidecar === true;
      if (server && needsPeers(this.#options.allow) && !sidecar && !hasSpiffeTls(server)) {
        throw new SpiffeError(
          'TLS_NOT_CONFIGURED',
          '@spiffe-ts/nestjs: SpiffeModule `allow` allows peers by SPIFFE ID, but the app has no SPIFFE TLS wiring, ' +
            'so every request would be refused with 403. Pass `tls: spiffeServerTls(source)` to SpiffeModule.forRoot ' +
            'and its `.options` as httpsOptions (platform-express) or new FastifyAdapter({ https }) (platform-fastify)',
        );
      }
      return;
    }
    if (this.#detach) return;
    if (!server || typeof server.setSecureContext !== 'function') {
      throw new SpiffeError(
        'TLS_NOT_CONFIGURED',
        '@spiffe-ts/nestjs: `tls` was given but the app is not serving HTTPS; pass tls.options as httpsOptions ' +
          '(platform-express) or new FastifyAdapter({ https: tls.options }) (platform-fastify)',
      );
    }
    this.#detach = tlsWiring.attach(server, { logger: this.logger });
  }

  /** Detaches `tls` and closes the module-owned JwtSource. */
  async onApplicationShutdown(): Promise<void> {
    this.#detach?.();
    this.#detach = undefined;
    await this.#ownedJwt?.close();
    this.#ownedJwt = undefined;
  }
}
