import * as net from 'node:net';
import * as tlsModule from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import {
  authenticateBearer,
  decideRequestPeer,
  type JwtSvid,
  type JwtSvidSource,
  peerSpiffeId,
  reportDenial,
  SpiffeAuthError,
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
  spiffeCheckServerIdentity,
  spiffeServerTls,
  type TrustedProxy,
  tlsMaterial,
  toMatcher,
  toTrustedProxy,
  validateBindToPeer,
  type X509MaterialSource,
} from '@spiffe-ts/core';

// ---------------------------------------------------------------------------------------------------------
// Server: SPIFFE mTLS listener
//
// grpc-js verifies client certificates only against one flat CA list, with no per-connection hook. SPIFFE
// needs the chain checked against the bundle of the peer's *own* trust domain, so the TLS handshake is done
// by a node:tls server built with the core (verification, rotation, no resumption) and only verified
// connections are handed to the gRPC server through its public connection injector.

// grpc-js gained `getConnectionInfo()` on interceptor calls (ServerInterceptingCallInterface) in 1.14.0; handler
// calls (ServerUnaryCall etc.) have no such method in any release up to 1.14.7. Without it a call cannot be tied
// to its connection, so every server-side entry point checks for it up front instead of never matching.
function requireConnectionInfo(what: string): void {
  const proto: Partial<grpc.ServerInterceptingCallInterface> = grpc.ServerInterceptingCall.prototype;
  if (typeof proto.getConnectionInfo !== 'function') {
    throw new SpiffeError(
      'GRPC_UNSUPPORTED_VERSION',
      `${what} needs @grpc/grpc-js >= 1.14.0 (ServerInterceptingCall.getConnectionInfo); the loaded version lacks it`,
    );
  }
}

type ConnectionInfo = ReturnType<grpc.ServerInterceptingCallInterface['getConnectionInfo']>;

interface VerifiedConnection {
  id: SpiffeId;
  raw: Buffer;
}

// Keyed by the TCP 4-tuple (local address and port, remote address and port) of each connection a
// `listenSpiffe` listener verified: that names one live connection, so the same key holder connecting from the
// same source port to another port of the same server (a different local port) never matches. The peer
// certificate is compared too, and entries go when the socket closes.
const verifiedConnections = new Map<string, Set<VerifiedConnection>>();

function tupleKey(info: ConnectionInfo): string | undefined {
  const { localAddress, localPort, remoteAddress, remotePort } = info;
  if (!localAddress || !localPort || !remoteAddress || !remotePort) return undefined;
  return `${localAddress}|${localPort}|${remoteAddress}|${remotePort}`;
}

function remember(socket: tlsModule.TLSSocket, id: SpiffeId): void {
  const key = tupleKey(socket);
  const raw = socket.getPeerX509Certificate()?.raw; // not getPeerCertificate(): no names, fingerprints to build
  if (!key || !raw) return;
  const entry: VerifiedConnection = { id, raw };
  let set = verifiedConnections.get(key);
  if (!set) {
    set = new Set();
    verifiedConnections.set(key, set);
  }
  set.add(entry);
  socket.once('close', () => {
    set.delete(entry);
    if (set.size === 0 && verifiedConnections.get(key) === set) verifiedConnections.delete(key);
  });
}

/** The parts of a grpc-js interceptor call that identify its connection. */
export type InterceptorCall = Pick<grpc.ServerInterceptingCallInterface, 'getConnectionInfo' | 'getAuthContext'>;

function connectionSpiffeId(call: InterceptorCall): SpiffeId | undefined {
  const raw = call.getAuthContext()?.sslPeerCertificate?.raw;
  if (!raw) return undefined;
  const key = tupleKey(call.getConnectionInfo());
  const set = key === undefined ? undefined : verifiedConnections.get(key);
  if (!set) return undefined;
  for (const entry of set) if (entry.raw.equals(raw)) return entry.id;
  return undefined;
}

// Handler calls cannot name their connection (see requireConnectionInfo), so our interceptors pass the ID they
// found on to the handler keyed by the call's Metadata object, which grpc-js hands to the handler unchanged;
// a client cannot forge an entry in this map.
const handlerIds = new WeakMap<grpc.Metadata, SpiffeId>();
const handlerSources = new WeakMap<grpc.Metadata, SpiffeIdSource>();

/**
 * A grpc-js server call: an interceptor call (`ServerInterceptingCallInterface`, which names its connection) or
 * a handler call (`ServerUnaryCall`, `ServerReadableStream`, ..., identified through its metadata).
 */
export type CallWithPeer = InterceptorCall | { readonly metadata: grpc.Metadata };

/**
 * The verified SPIFFE ID of the caller, for calls that arrived on a `listenSpiffe` listener; undefined for
 * any other call (plain or foreign-TLS ports never yield an ID).
 *
 * In an interceptor the ID is looked up by the call's connection. In a handler it is the ID that
 * `spiffeIdentity()` or `spiffeAuthorization()` found for the call: without one of them on the server,
 * handlers get undefined. Throws a `SpiffeError` (`GRPC_UNSUPPORTED_VERSION`) for an interceptor call of a
 * grpc-js older than 1.14.0.
 */
export function peerSpiffeIdOf(call: CallWithPeer): SpiffeId | undefined {
  if ('getConnectionInfo' in call && typeof call.getConnectionInfo === 'function') return connectionSpiffeId(call);
  if ('metadata' in call) return handlerIds.get(call.metadata);
  throw new SpiffeError(
    'GRPC_UNSUPPORTED_VERSION',
    'peerSpiffeIdOf: the call has neither getConnectionInfo() (interceptor calls, @grpc/grpc-js >= 1.14.0) nor metadata (handler calls)',
  );
}

/**
 * Where the caller's ID that `peerSpiffeIdOf(call)` gives a handler came from: `'connection'` (mTLS) or
 * `'proxy'` (a trusted proxy's `x-forwarded-client-cert` metadata, see `trustedProxy`); undefined without
 * an ID. In an interceptor call it is the connection's.
 */
export function peerSpiffeIdSourceOf(call: CallWithPeer): SpiffeIdSource | undefined {
  if ('getConnectionInfo' in call && typeof call.getConnectionInfo === 'function') {
    return connectionSpiffeId(call) ? 'connection' : undefined;
  }
  if ('metadata' in call) return handlerSources.get(call.metadata);
  return undefined;
}

/**
 * The verified SPIFFE ID of the caller (the 0.1 name).
 * @deprecated Use `peerSpiffeIdOf(call)` (the same function).
 */
export const spiffeIdOf: (call: CallWithPeer) => SpiffeId | undefined = peerSpiffeIdOf;

/** Where `listenSpiffe` listens. */
export interface ListenAddress {
  /** Host to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: pick a free one). */
  port?: number;
  /**
   * Where refused handshakes on this listener are logged, as warnings with the reason code and peer address
   * (default: the wiring's own `logger`). Any pino-compatible logger (`{ warn, info, debug, error }`).
   */
  logger?: SpiffeLogger;
}

/**
 * Options of the old `listenSpiffe(server, { source, ... })` form.
 * @deprecated Use `listenSpiffe(server, spiffeServerTls(source, options), { host, port })`.
 */
export interface ListenSpiffeOptions extends SpiffeServerTlsOptions, ListenAddress {
  /** Our SVID and trusted bundles (X509Source, StaticX509Source, FileX509Source). */
  source: X509MaterialSource;
}

/** A running `listenSpiffe` listener. */
export interface SpiffeListener {
  /** The host it listens on. */
  readonly host: string;
  /** The bound port. */
  readonly port: number;
  /** Stops accepting, lets open calls finish for `graceMs` (default 1000), then closes the sessions. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Serves a grpc-js `Server` over SPIFFE mTLS on a TCP port: client certificates required and verified
 * against the bundle of the client's own trust domain before any call reaches the server; certificate and
 * bundles rotate live from the source (new handshakes use the new material, open connections continue).
 * Use instead of `server.bindAsync` for this port. Rejects with a `SpiffeError` (`GRPC_UNSUPPORTED_VERSION`)
 * on a grpc-js older than 1.14.0, which cannot tell `peerSpiffeIdOf` which connection a call came on.
 */
export async function listenSpiffe(
  server: grpc.Server,
  tls: SpiffeTlsServer,
  address?: ListenAddress,
): Promise<SpiffeListener>;
/**
 * Serves a grpc-js `Server` over SPIFFE mTLS, built from a source (the 0.1 form).
 * @deprecated Use `listenSpiffe(server, spiffeServerTls(source, options), { host, port })`.
 */
export async function listenSpiffe(server: grpc.Server, options: ListenSpiffeOptions): Promise<SpiffeListener>;
export async function listenSpiffe(
  server: grpc.Server,
  tlsOrOptions: SpiffeTlsServer | ListenSpiffeOptions,
  listenAddress: ListenAddress = {},
): Promise<SpiffeListener> {
  requireConnectionInfo('listenSpiffe');
  let spiffe: SpiffeTlsServer;
  let where: ListenAddress;
  if ('attach' in tlsOrOptions) {
    spiffe = tlsOrOptions;
    where = listenAddress;
  } else {
    const { source, host, port, ...rest } = tlsOrOptions;
    spiffe = spiffeServerTls(source, rest);
    where = { host, port, logger: rest.logger };
  }
  const { host = '127.0.0.1', port = 0 } = where;
  // gRPC runs over HTTP/2 only; ALPN is a server setting that rotation (setSecureContext) leaves alone.
  const tlsServer = tlsModule.createServer({ ...spiffe.options, ALPNProtocols: ['h2'] });
  const detach = spiffe.attach(tlsServer, { logger: where.logger });
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  tlsServer.on('secureConnection', (socket: tlsModule.TLSSocket) => {
    // The core's listener ran first (it is prepended) and destroyed any peer that failed verification.
    const id = socket.destroyed ? undefined : peerSpiffeId(socket);
    if (!id) {
      socket.destroy();
      return;
    }
    remember(socket, id);
    injector.injectConnection(socket);
  });
  // A failed handshake is the client's problem; never let it surface as an unhandled error.
  tlsServer.on('tlsClientError', () => undefined);

  await new Promise<void>((resolve, reject) => {
    tlsServer.once('error', reject);
    tlsServer.listen(port, host, () => {
      tlsServer.off('error', reject);
      resolve();
    });
  });
  const address = tlsServer.address();
  const boundPort = typeof address === 'object' && address ? address.port : port;
  let closed: Promise<void> | undefined;
  return {
    host,
    port: boundPort,
    close(graceMs = 1000) {
      closed ??= new Promise<void>((resolve) => {
        detach();
        tlsServer.close(() => resolve());
        injector.drain(graceMs);
        setTimeout(() => injector.destroy(), graceMs).unref();
      });
      return closed;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Server: authorization and JWT-SVID interceptors

/** Options of `spiffeAuthorization`. */
export interface SpiffeAuthorizationOptions {
  /** Allowlist for every method not listed in `methods`. Without it, unlisted methods are denied. */
  allow?: SpiffeIdAllowlist;
  /**
   * Per-method allowlists, keyed by full method path (`/pkg.Service/Method`) or by service (`/pkg.Service/*`).
   * An exact method entry wins over a service entry, which wins over `allow`.
   */
  methods?: Readonly<Record<string, SpiffeIdAllowlist>>;
  /** Told about every denial (`route` is the method path). */
  onDenied?: (event: SpiffeDenial) => void;
  /**
   * Where denials are logged, as warnings with the reason code, method, peer address and verified SPIFFE
   * ID: any pino-compatible logger. NODE_DEBUG=spiffe shows them either way.
   */
  logger?: SpiffeLogger;
  /**
   * Accept the client's SPIFFE ID from `x-forwarded-client-cert` metadata when the direct peer is a trusted
   * proxy (Envoy, an Istio sidecar): by its verified SPIFFE ID (`ids`, the proxy connects to a `listenSpiffe`
   * port) or as a local sidecar (`localSidecar`: loopback or unix socket, plain h2c allowed). Off by default.
   * With it on, a call carrying the metadata from any other peer is refused with PERMISSION_DENIED
   * XFCC_UNTRUSTED_PEER, and malformed metadata with XFCC_MALFORMED.
   */
  trustedProxy?: SpiffeTrustedProxyOptions;
}

/** Options of `spiffeIdentity`. */
export interface SpiffeIdentityOptions {
  /** As `SpiffeAuthorizationOptions.trustedProxy`; a spoofed or malformed header is refused even here. */
  trustedProxy?: SpiffeTrustedProxyOptions;
  /** Told about every denial (only forwarded-identity failures deny here). */
  onDenied?: (event: SpiffeDenial) => void;
  /** Where denials are logged. */
  logger?: SpiffeLogger;
}

const denyAll: SpiffeIdMatcher = () => false;

// The identity decision of one call: the connection's verified ID, or a trusted proxy's forwarded one.
function decideCall(
  call: grpc.ServerInterceptingCallInterface,
  metadata: grpc.Metadata,
  proxy: TrustedProxy | undefined,
  allow: SpiffeIdMatcher | undefined,
) {
  const header = proxy ? metadata.get(proxy.header).map(String) : undefined;
  return decideRequestPeer(
    { id: connectionSpiffeId(call), isLocal: () => isLocalConnection(call.getConnectionInfo()) },
    header,
    { allow, proxy },
  );
}

function compileMethods(methods: Readonly<Record<string, SpiffeIdAllowlist>> | undefined) {
  const out = new Map<string, SpiffeIdMatcher>();
  for (const [path, allow] of Object.entries(methods ?? {})) {
    if (!/^\/[^/]+\/([^/]+|\*)$/.test(path)) {
      throw new TypeError(`invalid gRPC method pattern "${path}" (expected /pkg.Service/Method or /pkg.Service/*)`);
    }
    out.set(path, toMatcher(allow));
  }
  return out;
}

/** Trailing metadata key that carries a denial's stable code (also the prefix of `details`). */
export const SPIFFE_ERROR_CODE_METADATA = 'spiffe-error-code';

// A denial ends the call through gRPC's own status path: 401 is UNAUTHENTICATED, 403 PERMISSION_DENIED, with
// the stable code at the start of `details` and in trailing metadata.
function denyCall(
  call: grpc.ServerInterceptingCallInterface,
  error: SpiffeAuthError,
  path: string,
  options: { onDenied?: (event: SpiffeDenial) => void; logger?: SpiffeLogger },
): void {
  let remoteAddress: string | undefined;
  try {
    remoteAddress = call.getConnectionInfo().remoteAddress;
  } catch {
    remoteAddress = undefined;
  }
  const event = reportDenial(error, { route: path, remoteAddress, logger: options.logger });
  try {
    options.onDenied?.(event);
  } catch {
    // observation only: the call is denied either way
  }
  const metadata = new grpc.Metadata();
  metadata.set(SPIFFE_ERROR_CODE_METADATA, error.code);
  call.sendStatus({
    code: error.statusCode === 401 ? grpc.status.UNAUTHENTICATED : grpc.status.PERMISSION_DENIED,
    details: `${error.code}: ${error.message}`,
    metadata,
  });
}

/**
 * A server interceptor that authorizes each call by the caller's verified SPIFFE ID (from `listenSpiffe`),
 * per method or service; others get PERMISSION_DENIED before the handler runs. Deny by default: a method
 * with no matching entry and no `allow` is refused, and so is a call without a verified peer. Handlers of
 * allowed calls get the ID from `peerSpiffeIdOf(call)`. Throws `GRPC_UNSUPPORTED_VERSION` on grpc-js < 1.14.0.
 */
export function spiffeAuthorization(options: SpiffeAuthorizationOptions): grpc.ServerInterceptor {
  requireConnectionInfo('spiffeAuthorization');
  const methods = compileMethods(options.methods);
  const fallback = options.allow === undefined ? undefined : toMatcher(options.allow);
  const proxy = toTrustedProxy(options.trustedProxy);
  const matcherFor = (path: string): SpiffeIdMatcher | undefined =>
    methods.get(path) ?? methods.get(`${path.slice(0, path.lastIndexOf('/'))}/*`) ?? fallback;

  return (descriptor, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, mdNext) => {
            // Deny by default: a method without an allowlist admits nobody.
            const d = decideCall(call, metadata, proxy, matcherFor(descriptor.path) ?? denyAll);
            if (d.ok && d.id) {
              handlerIds.set(metadata, d.id);
              if (d.source) handlerSources.set(metadata, d.source);
              mdNext(metadata);
              return;
            }
            const error = d.ok ? new SpiffeAuthError('PEER_NOT_VERIFIED', { statusCode: 403 }) : d.error;
            denyCall(call, error, descriptor.path, options);
          },
        });
      },
    });
}

/**
 * A server interceptor that authorizes nothing: it only makes the caller's verified SPIFFE ID available to
 * handlers through `peerSpiffeIdOf(call)`, for servers that decide in their handlers (with `spiffeAuthorization`
 * installed it is not needed). With `trustedProxy` it also takes forwarded IDs from trusted proxies, and
 * refuses a call whose `x-forwarded-client-cert` is spoofed or malformed (fail closed). Throws
 * `GRPC_UNSUPPORTED_VERSION` on grpc-js < 1.14.0.
 */
export function spiffeIdentity(options: SpiffeIdentityOptions = {}): grpc.ServerInterceptor {
  requireConnectionInfo('spiffeIdentity');
  const proxy = toTrustedProxy(options.trustedProxy);
  return (descriptor, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, mdNext) => {
            const d = decideCall(call, metadata, proxy, undefined);
            if (!d.ok) {
              denyCall(call, d.error, descriptor.path, options);
              return;
            }
            if (d.id) {
              handlerIds.set(metadata, d.id);
              if (d.source) handlerSources.set(metadata, d.source);
            }
            mdNext(metadata);
          },
        });
      },
    });
}

// The validated token travels from the interceptor to the handler keyed by the call's Metadata object,
// which grpc-js hands to the handler unchanged; a client cannot forge an entry in this map.
const validatedTokens = new WeakMap<grpc.Metadata, JwtSvid>();

/** The JWT-SVID validated by `jwtSvidAuthentication` for this call, if any. */
export function jwtSvidOf(call: { metadata: grpc.Metadata }): JwtSvid | undefined {
  return validatedTokens.get(call.metadata);
}

/**
 * Options of `jwtSvidAuthentication`: the shared `SpiffeJwtOptions` (a subject outside `allow` gets
 * PERMISSION_DENIED; `realm` has no use in gRPC) plus the gRPC-specific settings.
 */
export interface JwtSvidAuthenticationOptions extends SpiffeJwtOptions {
  /** Methods (`/pkg.Service/Method` or `/pkg.Service/*`) that do not need a token. */
  skip?: readonly string[];
  /**
   * Accept tokens on connections that are not TLS, but only from a loopback address (127.0.0.0/8, ::1) or
   * over a unix domain socket, e.g. from a sidecar proxy that terminated TLS on this host (default false:
   * a bearer token seen in clear by anyone on the path must not be honoured).
   */
  allowInsecureTransport?: boolean;
  /** Told about every denial (`route` is the method path). */
  onDenied?: (event: SpiffeDenial) => void;
  /** Where denials are logged (see `SpiffeAuthorizationOptions.logger`). */
  logger?: SpiffeLogger;
}

// grpc-js reports `transportSecurityType: 'ssl'` only for TLS connections whose client certificate it verified
// (listenSpiffe, or bindAsync with createSsl(..., checkClientCertificate = true)); a TLS port that does not
// request client certificates looks like plaintext here, and its tokens are refused too.
function isTls(call: grpc.ServerInterceptingCallInterface): boolean {
  return call.getAuthContext()?.transportSecurityType === 'ssl';
}

// A TCP connection always has an IP peer address, which grpc-js records when the session starts; no address at
// all means a unix domain socket (or an in-process stream handed to a connection injector).
function isLocalConnection(info: ConnectionInfo): boolean {
  const address = info.remoteAddress;
  if (address === undefined || address === '') return info.remotePort === undefined;
  const v4 = net.isIPv4(address) ? address : /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (v4 !== undefined) return net.isIPv4(v4) && v4.startsWith('127.');
  return address === '::1';
}

/**
 * A server interceptor that requires a JWT-SVID in the `authorization: Bearer <token>` metadata of every
 * call, validated against the bundles and audience; failures end the call with UNAUTHENTICATED (a valid
 * token whose subject is not allowed: PERMISSION_DENIED). `jwtSvidOf(call)` gives handlers the token.
 * Calls on connections that are not TLS are refused with UNAUTHENTICATED before the token is looked at,
 * unless `allowInsecureTransport` is set and the connection is loopback or a unix socket. Throws
 * `GRPC_UNSUPPORTED_VERSION` on grpc-js < 1.14.0.
 */
export function jwtSvidAuthentication(options: JwtSvidAuthenticationOptions): grpc.ServerInterceptor {
  requireConnectionInfo('jwtSvidAuthentication');
  if (options.allowInsecureTransport !== undefined && typeof options.allowInsecureTransport !== 'boolean') {
    throw new TypeError('jwtSvidAuthentication: allowInsecureTransport must be a boolean');
  }
  const allowInsecure = options.allowInsecureTransport === true;
  const bearer = {
    bundles: options.bundles,
    audience: options.audience,
    allow: options.allow === undefined ? undefined : toMatcher(options.allow),
    clockTolerance: options.clockTolerance,
    bindToPeer: options.bindToPeer,
  };
  validateBindToPeer(options.bindToPeer);
  const skip = new Set(options.skip ?? []);
  return (descriptor, call) => {
    const path = descriptor.path;
    if (skip.has(path) || skip.has(`${path.slice(0, path.lastIndexOf('/'))}/*`)) {
      return new grpc.ServerInterceptingCall(call);
    }
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, mdNext) => {
            if (!isTls(call) && !(allowInsecure && isLocalConnection(call.getConnectionInfo()))) {
              const reason = allowInsecure
                ? 'JWT-SVIDs are accepted over TLS, loopback or unix sockets only; this connection is none of them'
                : 'JWT-SVIDs are accepted over TLS only; this connection is not TLS';
              const error = new SpiffeAuthError('JWTSVID_INSECURE_TRANSPORT', {
                statusCode: 401,
                cause: new Error(reason),
              });
              denyCall(call, error, path, options);
              return;
            }
            const header = metadata.get('authorization').map(String);
            // The ID an earlier spiffeAuthorization/spiffeIdentity settled for this call (it may come from a
            // trusted proxy), else the connection's: for `bindToPeer` and the denial event.
            const peer = handlerIds.get(metadata) ?? connectionSpiffeId(call);
            authenticateBearer(header.length === 1 ? header[0] : undefined, { ...bearer, peer }).then(
              (decision) => {
                if (decision.ok) {
                  validatedTokens.set(metadata, decision.svid);
                  mdNext(metadata);
                  return;
                }
                denyCall(call, decision.error, path, options);
              },
              // authenticateBearer turns every validation failure into a denial; this is a bug, not a client error.
              () =>
                call.sendStatus({
                  code: grpc.status.INTERNAL,
                  details: 'internal error',
                  metadata: new grpc.Metadata(),
                }),
            );
          },
        });
      },
    });
  };
}

// ---------------------------------------------------------------------------------------------------------
// Client

// Feeds grpc-js's certificate-provider channel credentials from a live source, so every new connection
// uses the current SVID and bundles.
class SourceCertificateProvider implements grpc.experimental.CertificateProvider {
  readonly #source: X509MaterialSource;
  readonly #ca = new Set<grpc.experimental.CaCertificateUpdateListener>();
  readonly #identity = new Set<grpc.experimental.IdentityCertificateUpdateListener>();
  #unsubscribe: (() => void) | undefined;

  constructor(source: X509MaterialSource) {
    this.#source = source;
  }

  #material() {
    try {
      return tlsMaterial(this.#source);
    } catch {
      return undefined; // no usable SVID right now: grpc-js fails new connections until there is one
    }
  }

  #emit(): void {
    const m = this.#material();
    for (const l of this.#ca) l(m ? { caCertificate: Buffer.from(m.ca.join('')) } : null);
    for (const l of this.#identity) l(m ? { certificate: Buffer.from(m.cert), privateKey: Buffer.from(m.key) } : null);
  }

  #watch(): void {
    if (!this.#unsubscribe && this.#source.onUpdate) this.#unsubscribe = this.#source.onUpdate(() => this.#emit());
  }

  #unwatch(): void {
    if (this.#ca.size === 0 && this.#identity.size === 0) {
      this.#unsubscribe?.();
      this.#unsubscribe = undefined;
    }
  }

  addCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.#ca.add(listener);
    this.#watch();
    const m = this.#material();
    listener(m ? { caCertificate: Buffer.from(m.ca.join('')) } : null);
  }

  removeCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.#ca.delete(listener);
    this.#unwatch();
  }

  addIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.#identity.add(listener);
    this.#watch();
    const m = this.#material();
    listener(m ? { certificate: Buffer.from(m.cert), privateKey: Buffer.from(m.key) } : null);
  }

  removeIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.#identity.delete(listener);
    this.#unwatch();
  }
}

/** Options of `spiffeChannelCredentials`. */
export interface SpiffeChannelCredentialsOptions {
  /** Which server SPIFFE IDs we accept. Required: hostnames are not checked. */
  authorize: SpiffeIdAllowlist;
}

/**
 * Channel credentials that present our current X.509-SVID and accept the server only when its chain
 * verifies against the bundle of its own trust domain and its SPIFFE ID is authorized (no hostname check).
 * Rotated SVIDs and bundles apply to new connections.
 */
export function spiffeChannelCredentials(
  source: X509MaterialSource,
  options: SpiffeChannelCredentialsOptions,
): grpc.ChannelCredentials {
  const provider = new SourceCertificateProvider(source);
  return allowJwtSvids(
    grpc.experimental.createCertificateProviderChannelCredentials(provider, provider, {
      checkServerIdentity: spiffeCheckServerIdentity(source, options.authorize),
    }),
  );
}

// grpc-js (1.14.7 included) sends call credentials given per call (`{ credentials }` in the call options) on
// insecure channels too, and a metadata generator learns nothing about the transport (`service_url` is always
// https://...). So channel credentials known to be secure carry this marker: grpc-js composes the per-call and
// the channel's call credentials into one and passes every generator the same options object, synchronously,
// so our JWT-SVID generator sends its token only if the marker saw that object in the same round. Should
// grpc-js ever stop sharing the object, tokens are refused, never leaked.
const secureRounds = new WeakSet<object>();
const secureChannelMarker = grpc.credentials.createFromMetadataGenerator((params, callback) => {
  secureRounds.add(params);
  callback(null, new grpc.Metadata());
});

/**
 * Marks secure channel credentials (TLS, e.g. `grpc.credentials.createSsl(...)`) as ones that
 * `jwtSvidCallCredentials` may send tokens over. `spiffeChannelCredentials` are marked already. grpc-js
 * throws for insecure credentials ("Cannot compose insecure credentials").
 */
export function allowJwtSvids(channelCredentials: grpc.ChannelCredentials): grpc.ChannelCredentials {
  return grpc.credentials.combineChannelCredentials(channelCredentials, secureChannelMarker);
}

/** Options of `jwtSvidCallCredentials`. */
export interface JwtSvidCallCredentialsOptions {
  /** The audience to request JWT-SVIDs for (the server's expected audience). */
  audience: string | readonly string[];
}

/**
 * Call credentials that attach `authorization: Bearer <JWT-SVID>` to every call, fetched from a JwtSource
 * (which caches tokens until they near expiry). Compose with channel credentials:
 * `grpc.credentials.combineChannelCredentials(channelCreds, jwtSvidCallCredentials(jwt, { audience }))`.
 * Tokens go only over channels built from `spiffeChannelCredentials` or `allowJwtSvids(...)` credentials, also
 * when given per call (`{ credentials }`); on any other channel the call fails with UNAUTHENTICATED before
 * anything is sent.
 */
export function jwtSvidCallCredentials(
  source: JwtSvidSource,
  options: JwtSvidCallCredentialsOptions,
): grpc.CallCredentials {
  return grpc.credentials.createFromMetadataGenerator((params, callback) => {
    // The marker runs in the same synchronous pass as this generator (before or after it): look once it ends.
    queueMicrotask(() => {
      if (!secureRounds.has(params)) {
        const error = new Error(
          'JWT-SVID call credentials refused: the channel is not known to be secure (use spiffeChannelCredentials or allowJwtSvids)',
        );
        // grpc-js takes the call's status from a numeric `code` on the generator's error.
        callback(Object.assign(error, { code: grpc.status.UNAUTHENTICATED }));
        return;
      }
      source.fetchJwtSvid({ audience: options.audience }).then(
        (svid) => {
          const metadata = new grpc.Metadata();
          metadata.set('authorization', `Bearer ${svid.token}`);
          callback(null, metadata);
        },
        (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
      );
    });
  });
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
