import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import {
  authenticateBearer,
  createSpiffeTlsServer,
  type JwtBundleSource,
  type JwtSvid,
  type JwtSvidSource,
  matchAny,
  peerSpiffeId,
  type SpiffeId,
  type SpiffeIdAllowlist,
  type SpiffeIdMatcher,
  type SpiffeTlsServerOptions,
  spiffeCheckServerIdentity,
  tlsMaterial,
  toMatcher,
  type X509MaterialSource,
} from '@spiffe-ts/core';

// ---------------------------------------------------------------------------------------------------------
// Server: SPIFFE mTLS listener
//
// grpc-js verifies client certificates only against one flat CA list, with no per-connection hook. SPIFFE
// needs the chain checked against the bundle of the peer's *own* trust domain, so the TLS handshake is done
// by a node:tls server built with the core (verification, rotation, no resumption) and only verified
// connections are handed to the gRPC server through its public connection injector.

interface VerifiedConnection {
  id: SpiffeId;
  raw: Buffer;
}

// Keyed by "remoteAddress:remotePort", the form grpc-js reports in call.getPeer(). The peer certificate is
// compared too, so an entry can only ever match the very connection that was verified.
const verifiedConnections = new Map<string, Set<VerifiedConnection>>();

function peerKey(socket: tls.TLSSocket): string | undefined {
  if (!socket.remoteAddress) return undefined;
  return socket.remotePort ? `${socket.remoteAddress}:${socket.remotePort}` : socket.remoteAddress;
}

function remember(socket: tls.TLSSocket, id: SpiffeId): void {
  const key = peerKey(socket);
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

/** The parts of a grpc-js call (handler call or interceptor call) needed to identify its peer. */
export interface CallWithPeer {
  getPeer(): string;
  getAuthContext(): { sslPeerCertificate?: { raw?: Buffer } } | null;
}

/**
 * The verified SPIFFE ID of the caller, for calls that arrived on a `listenSpiffe` listener; undefined for
 * any other call (plain or foreign-TLS ports never yield an ID).
 */
export function spiffeIdOf(call: CallWithPeer): SpiffeId | undefined {
  const raw = call.getAuthContext()?.sslPeerCertificate?.raw;
  if (!raw) return undefined;
  const set = verifiedConnections.get(call.getPeer());
  if (!set) return undefined;
  for (const entry of set) if (entry.raw.equals(raw)) return entry.id;
  return undefined;
}

export interface ListenSpiffeOptions extends Omit<SpiffeTlsServerOptions, 'source' | 'authorize'> {
  /** Our SVID and trusted bundles (X509Source, StaticX509Source, FileX509Source). */
  source: X509MaterialSource;
  /** Host to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: pick a free one). */
  port?: number;
  /** Who may connect at all (default any verified peer; authorize per method with `spiffeAuthorization`). */
  authorize?: SpiffeIdAllowlist;
}

export interface SpiffeListener {
  readonly host: string;
  readonly port: number;
  /** Stops accepting, lets open calls finish for `graceMs` (default 1000), then closes the sessions. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Serves a grpc-js `Server` over SPIFFE mTLS on a TCP port: client certificates required and verified
 * against the bundle of the client's own trust domain before any call reaches the server; certificate and
 * bundles rotate live from the source (new handshakes use the new material, open connections continue).
 * Use instead of `server.bindAsync` for this port.
 */
export async function listenSpiffe(server: grpc.Server, options: ListenSpiffeOptions): Promise<SpiffeListener> {
  const { source, host = '127.0.0.1', port = 0, authorize, ...rest } = options;
  const spiffe = createSpiffeTlsServer({
    ...rest,
    source,
    authorize: authorize ?? matchAny(),
    tlsOptions: { ...rest.tlsOptions, ALPNProtocols: ['h2'] },
  });
  const tlsServer = tls.createServer(spiffe.options);
  const detach = spiffe.attach(tlsServer);
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  tlsServer.on('secureConnection', (socket: tls.TLSSocket) => {
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

export interface SpiffeAuthorizationOptions {
  /** Allowlist for every method not listed in `methods`. Without it, unlisted methods are denied. */
  allow?: SpiffeIdAllowlist;
  /**
   * Per-method allowlists, keyed by full method path (`/pkg.Service/Method`) or by service (`/pkg.Service/*`).
   * An exact method entry wins over a service entry, which wins over `allow`.
   */
  methods?: Readonly<Record<string, SpiffeIdAllowlist>>;
  /** Told about every denial (for logging). */
  onDenied?: (event: { path: string; spiffeId: SpiffeId | undefined; reason: string }) => void;
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

function denyCall(call: grpc.ServerInterceptingCallInterface, code: grpc.status, details: string): void {
  call.sendStatus({ code, details, metadata: new grpc.Metadata() });
}

/**
 * A server interceptor that authorizes each call by the caller's verified SPIFFE ID (from `listenSpiffe`),
 * per method or service; others get PERMISSION_DENIED before the handler runs. Deny by default: a method
 * with no matching entry and no `allow` is refused, and so is a call without a verified peer.
 */
export function spiffeAuthorization(options: SpiffeAuthorizationOptions): grpc.ServerInterceptor {
  const methods = compileMethods(options.methods);
  const fallback = options.allow === undefined ? undefined : toMatcher(options.allow);
  const matcherFor = (path: string): SpiffeIdMatcher | undefined =>
    methods.get(path) ?? methods.get(`${path.slice(0, path.lastIndexOf('/'))}/*`) ?? fallback;

  return (descriptor, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, mdNext) => {
            const id = spiffeIdOf(call);
            const matcher = matcherFor(descriptor.path);
            let allowed = false;
            if (id && matcher) {
              try {
                allowed = matcher(id) === true;
              } catch {
                allowed = false;
              }
            }
            if (allowed) {
              mdNext(metadata);
              return;
            }
            const reason = !id
              ? 'no verified SPIFFE ID for this connection'
              : `SPIFFE ID "${id}" is not authorized for ${descriptor.path}`;
            options.onDenied?.({ path: descriptor.path, spiffeId: id, reason });
            denyCall(call, grpc.status.PERMISSION_DENIED, reason);
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

export interface JwtSvidAuthenticationOptions {
  /** JWT bundles to validate with (a JwtSource, BundleSource or JwtBundleSet). */
  bundles: JwtBundleSource;
  /** The audience this service expects. */
  audience: string | readonly string[];
  /** Which token subjects may call (PERMISSION_DENIED otherwise); default any valid subject. */
  allow?: SpiffeIdAllowlist;
  /** Methods (`/pkg.Service/Method` or `/pkg.Service/*`) that do not need a token. */
  skip?: readonly string[];
  /** Clock skew tolerance in seconds (default 30). */
  clockTolerance?: number;
  onDenied?: (event: { path: string; reason: string }) => void;
}

/**
 * A server interceptor that requires a JWT-SVID in the `authorization: Bearer <token>` metadata of every
 * call, validated against the bundles and audience; failures end the call with UNAUTHENTICATED (a valid
 * token whose subject is not allowed: PERMISSION_DENIED). `jwtSvidOf(call)` gives handlers the token.
 */
export function jwtSvidAuthentication(options: JwtSvidAuthenticationOptions): grpc.ServerInterceptor {
  const allow = options.allow === undefined ? undefined : toMatcher(options.allow);
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
            const header = metadata.get('authorization').map(String);
            authenticateBearer(header.length === 1 ? header[0] : undefined, {
              bundles: options.bundles,
              audience: options.audience,
              allow,
              clockTolerance: options.clockTolerance,
            }).then(
              (decision) => {
                if (decision.ok) {
                  validatedTokens.set(metadata, decision.svid);
                  mdNext(metadata);
                  return;
                }
                options.onDenied?.({ path, reason: decision.message });
                const code = decision.status === 403 ? grpc.status.PERMISSION_DENIED : grpc.status.UNAUTHENTICATED;
                denyCall(call, code, decision.message);
              },
              (err: unknown) => denyCall(call, grpc.status.INTERNAL, `token validation failed: ${String(err)}`),
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
  return grpc.experimental.createCertificateProviderChannelCredentials(provider, provider, {
    checkServerIdentity: spiffeCheckServerIdentity(source, options.authorize),
  });
}

export interface JwtSvidCallCredentialsOptions {
  /** The audience to request JWT-SVIDs for (the server's expected audience). */
  audience: string | readonly string[];
}

/**
 * Call credentials that attach `authorization: Bearer <JWT-SVID>` to every call, fetched from a JwtSource
 * (which caches tokens until they near expiry). Compose with channel credentials:
 * `grpc.credentials.combineChannelCredentials(channelCreds, jwtSvidCallCredentials(jwt, { audience }))`.
 */
export function jwtSvidCallCredentials(
  source: JwtSvidSource,
  options: JwtSvidCallCredentialsOptions,
): grpc.CallCredentials {
  return grpc.credentials.createFromMetadataGenerator((_params, callback) => {
    source.fetchJwtSvid({ audience: options.audience }).then(
      (svid) => {
        const metadata = new grpc.Metadata();
        metadata.set('authorization', `Bearer ${svid.token}`);
        callback(null, metadata);
      },
      (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
    );
  });
}

export type { JwtSvid, SpiffeId, SpiffeIdAllowlist } from '@spiffe-ts/core';
