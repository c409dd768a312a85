import { isIPv4, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { type SpiffeId } from '../spiffeid/id.js';
import { allows, type SpiffeIdAllowlist, type SpiffeIdMatcher, toMatcher } from '../spiffeid/match.js';
import { peerSpiffeId } from '../tls/peer.js';
import { SpiffeAuthError } from './error.js';
import { type ForwardedPeer, forwardedSpiffeId } from './xfcc.js';

/** The outcome of `authorizeSocketPeer`: the verified ID, or the denial to pass to the framework. */
export type PeerDecision =
  | { ok: true; id: SpiffeId }
  | {
      ok: false;
      /** The verified peer ID (set when the peer was verified but is not allowed), never an unverified one. */
      id: SpiffeId | undefined;
      /** 403 `PEER_NOT_VERIFIED` or 403 `UNAUTHORIZED_SPIFFE_ID`. */
      error: SpiffeAuthError;
    };

/**
 * Checks the verified mTLS peer of a request's socket against an allowlist matcher. The one mTLS decision
 * every adapter makes; a denial is a SpiffeAuthError (403) for the framework's error path.
 */
export function authorizeSocketPeer(socket: Socket | null | undefined, matcher: SpiffeIdMatcher): PeerDecision {
  const id = peerSpiffeId(socket);
  if (!id) {
    return {
      ok: false,
      id: undefined,
      error: new SpiffeAuthError('PEER_NOT_VERIFIED', { statusCode: 403, cause: new Error(unverifiedWhy(socket)) }),
    };
  }
  if (!allows(matcher, id)) {
    return { ok: false, id, error: new SpiffeAuthError('UNAUTHORIZED_SPIFFE_ID', { statusCode: 403, spiffeId: id }) };
  }
  return { ok: true, id };
}

// For the server-side log of a PEER_NOT_VERIFIED denial: most often the server is not wired for SPIFFE mTLS.
function unverifiedWhy(socket: Socket | null | undefined): string {
  if (!socket) return 'the request has no connection to read a peer from';
  if (!(socket instanceof TLSSocket)) {
    return 'the connection is not TLS: this server does not serve SPIFFE mTLS (spiffeServerTls wiring missing)';
  }
  return 'the TLS connection was not verified by SPIFFE TLS wiring: was spiffeServerTls(...).attach(server) called for this server?';
}

/** Where a request's SPIFFE ID came from: the mTLS connection, or a trusted proxy's XFCC header. */
export type SpiffeIdSource = 'connection' | 'proxy';

/**
 * Which direct peers may forward a client's identity in `x-forwarded-client-cert` (Envoy, Istio sidecars),
 * the same option (`trustedProxy`) in every adapter. Off unless given; at least one of `ids` and
 * `localSidecar` is required. The proxy must set the header itself (Envoy `forward_client_cert_details:
 * SANITIZE_SET` or `APPEND_FORWARD`, never `FORWARD_ONLY`): only the last element, the one the nearest proxy
 * added, is read.
 */
export interface SpiffeTrustedProxyOptions {
  /** Proxies identified by their own verified mTLS SPIFFE ID (the proxy connects to this server with mTLS). */
  ids?: SpiffeIdAllowlist;
  /**
   * Trust a direct peer on a loopback address or a unix socket: a sidecar on the same host or pod. Anything
   * that can connect locally is then trusted, so listen only on loopback or a unix socket.
   */
  localSidecar?: boolean;
  /** Header name (default `x-forwarded-client-cert`); gRPC reads the metadata key of the same name. */
  header?: string;
  /**
   * Require the element's `By` to equal the proxy's own verified SPIFFE ID (default false). A peer trusted
   * only as `localSidecar`, without a verified ID, then never passes.
   */
  requireBy?: boolean;
}

interface ProxyRules {
  ids: SpiffeIdMatcher | undefined;
  localSidecar: boolean;
  requireBy: boolean;
}

// The validated rules of each TrustedProxy: kept out of the object so it cannot be forged or edited.
const proxyRules = new WeakMap<TrustedProxy, ProxyRules>();

/** A validated `trustedProxy` option: build it with `trustedProxy(options)`. */
export class TrustedProxy {
  /** The lower-case header name read. */
  readonly header: string;

  private constructor(header: string, rules: ProxyRules) {
    this.header = header;
    proxyRules.set(this, rules);
    Object.freeze(this);
  }

  /** Same as `trustedProxy(options)`. */
  static from(options: SpiffeTrustedProxyOptions): TrustedProxy {
    if (typeof options !== 'object' || options === null) throw new TypeError('trustedProxy must be an object');
    if (options.localSidecar !== undefined && typeof options.localSidecar !== 'boolean') {
      throw new TypeError('trustedProxy.localSidecar must be a boolean');
    }
    if (options.requireBy !== undefined && typeof options.requireBy !== 'boolean') {
      throw new TypeError('trustedProxy.requireBy must be a boolean');
    }
    const header = (options.header ?? 'x-forwarded-client-cert').toLowerCase();
    if (!/^[a-z0-9][a-z0-9-]*$/.test(header) || header === 'authorization' || header.endsWith('-bin')) {
      throw new TypeError(`trustedProxy.header is not a usable header name: ${JSON.stringify(options.header)}`);
    }
    const ids = options.ids === undefined ? undefined : toMatcher(options.ids);
    const localSidecar = options.localSidecar === true;
    if (!ids && !localSidecar) throw new TypeError('trustedProxy needs `ids`, `localSidecar: true`, or both');
    return new TrustedProxy(header, { ids, localSidecar, requireBy: options.requireBy === true });
  }
}

/**
 * Validates a `trustedProxy` option at start-up (TypeError or SpiffeIdError on a bad one): adapters call it
 * when they are built, so a typo never silently trusts or ignores a proxy.
 */
export function trustedProxy(options: SpiffeTrustedProxyOptions): TrustedProxy {
  return TrustedProxy.from(options);
}

/** `trustedProxy(options)`, or undefined when the option is not set; a `TrustedProxy` is passed through. */
export function toTrustedProxy(
  options: SpiffeTrustedProxyOptions | TrustedProxy | undefined,
): TrustedProxy | undefined {
  if (options === undefined) return undefined;
  return options instanceof TrustedProxy ? options : TrustedProxy.from(options);
}

/**
 * Whether the connection is from this host: a loopback peer address, or a unix socket. Decided from the live
 * socket only: a destroyed socket (whose addresses are gone) is never local.
 */
export function isLocalSocket(socket: Socket | null | undefined): boolean {
  // Only a connected, live socket: a socket being set up or torn down has no trustworthy addresses.
  if (!socket || socket.destroyed || socket.pending === true || socket.readyState === 'closed') return false;
  const remote = socket.remoteAddress;
  if (remote === undefined) {
    // A unix socket has neither address; a TCP socket whose peer vanished still has its local address.
    return socket.localAddress === undefined && socket.remotePort === undefined;
  }
  const v4 = isIPv4(remote) ? remote : /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote)?.[1];
  if (v4 !== undefined) return isIPv4(v4) && v4.startsWith('127.');
  return remote === '::1';
}

/** The outcome of `resolveRequestPeer`. */
export type RequestPeerDecision =
  | {
      ok: true;
      /** The request's SPIFFE ID, or undefined when it has none (allowed only without an allowlist). */
      id: SpiffeId | undefined;
      /** Where `id` came from (undefined with no ID). */
      source: SpiffeIdSource | undefined;
    }
  | {
      ok: false;
      /** A verified ID (of the connection, or forwarded by a trusted proxy), never an unverified one. */
      id: SpiffeId | undefined;
      /** Where `id` came from. */
      source: SpiffeIdSource | undefined;
      /** 403 PEER_NOT_VERIFIED, UNAUTHORIZED_SPIFFE_ID, XFCC_UNTRUSTED_PEER or XFCC_MALFORMED. */
      error: SpiffeAuthError;
    };

/** Options of `resolveRequestPeer`. */
export interface ResolveRequestPeerOptions {
  /** The allowlist to enforce; without it no ID is required and only XFCC failures deny. */
  allow?: SpiffeIdMatcher;
  /** The validated `trustedProxy` option; without it forwarded headers are never read. */
  proxy?: TrustedProxy;
}

/**
 * The request identity decision every adapter makes. Without `proxy`, it is the connection's verified mTLS
 * peer (as `authorizeSocketPeer`). With `proxy`, a request carrying the proxy header is accepted only from a
 * trusted proxy (else 403 XFCC_UNTRUSTED_PEER, even on routes without an allowlist: fail closed), and its
 * identity is the SPIFFE ID of the header's last element (403 XFCC_MALFORMED when it has none), checked
 * against the same allowlist. A request without the header keeps its connection identity.
 * `header` is the raw header value (or gRPC metadata values).
 */
export function resolveRequestPeer(
  socket: Socket | null | undefined,
  header: string | readonly string[] | undefined,
  options: ResolveRequestPeerOptions,
): RequestPeerDecision {
  return decide(peerSpiffeId(socket), socket, socketFacts, header, options);
}

/** What `decideRequestPeer` needs to know about a request's connection (for transports without a Socket). */
export interface RequestConnection {
  /** The connection's verified mTLS SPIFFE ID, never an unverified one. */
  readonly id: SpiffeId | undefined;
  /** Whether the connection is loopback or a unix socket, decided from the live connection. */
  isLocal(): boolean;
  /** For the server-side log of a PEER_NOT_VERIFIED denial. */
  unverifiedWhy?(): string;
}

/** `resolveRequestPeer` for transports that describe the connection themselves (gRPC). */
export function decideRequestPeer(
  conn: RequestConnection,
  header: string | readonly string[] | undefined,
  options: ResolveRequestPeerOptions,
): RequestPeerDecision {
  return decide(conn.id, conn, connectionFacts, header, options);
}

// How the decision asks about a connection on its rare paths (XFCC from a local sidecar, a denial's log
// line). Shared objects, not closures over the request: this runs on every request, and a closure per call
// (each also renamed by the build's keepNames) cost more than the rest of the decision.
interface ConnectionFacts<C> {
  isLocal(conn: C): boolean;
  unverifiedWhy(conn: C): string;
}
const socketFacts: ConnectionFacts<Socket | null | undefined> = { isLocal: isLocalSocket, unverifiedWhy };
const connectionFacts: ConnectionFacts<RequestConnection> = {
  isLocal: (conn) => conn.isLocal(),
  unverifiedWhy: (conn) => conn.unverifiedWhy?.() ?? 'the connection has no verified SPIFFE ID',
};

function decide<C>(
  id: SpiffeId | undefined,
  conn: C,
  facts: ConnectionFacts<C>,
  header: string | readonly string[] | undefined,
  options: ResolveRequestPeerOptions,
): RequestPeerDecision {
  const { allow, proxy } = options;
  const present = header !== undefined && (typeof header === 'string' || header.length > 0);
  if (proxy && present) {
    const p = proxyRules.get(proxy);
    if (!p) throw new TypeError('trustedProxy: not built by trustedProxy(options)');
    const byId = id !== undefined && p.ids !== undefined && allows(p.ids, id);
    if (!byId && !(p.localSidecar && facts.isLocal(conn))) {
      const why = 'x-forwarded-client-cert came from a direct peer that is not a trusted proxy';
      return deniedPeer('XFCC_UNTRUSTED_PEER', id, id && 'connection', new Error(why));
    }
    let forwarded: ForwardedPeer;
    try {
      forwarded = forwardedSpiffeId(header);
    } catch (err) {
      return deniedPeer('XFCC_MALFORMED', id, id && 'connection', err);
    }
    if (p.requireBy && (!byId || forwarded.element.by !== id?.toString())) {
      const why = "x-forwarded-client-cert's By is not the proxy's own SPIFFE ID";
      return deniedPeer('XFCC_UNTRUSTED_PEER', id, id && 'connection', new Error(why));
    }
    if (allow && !allows(allow, forwarded.id)) return deniedPeer('UNAUTHORIZED_SPIFFE_ID', forwarded.id, 'proxy');
    return { ok: true, id: forwarded.id, source: 'proxy' };
  }
  if (!id) {
    if (!allow) return { ok: true, id: undefined, source: undefined };
    return deniedPeer('PEER_NOT_VERIFIED', undefined, undefined, new Error(facts.unverifiedWhy(conn)));
  }
  if (allow && !allows(allow, id)) return deniedPeer('UNAUTHORIZED_SPIFFE_ID', id, 'connection');
  return { ok: true, id, source: 'connection' };
}

function deniedPeer(
  code: 'PEER_NOT_VERIFIED' | 'UNAUTHORIZED_SPIFFE_ID' | 'XFCC_UNTRUSTED_PEER' | 'XFCC_MALFORMED',
  id: SpiffeId | undefined,
  source: SpiffeIdSource | undefined,
  cause?: unknown,
): RequestPeerDecision {
  return { ok: false, id, source, error: new SpiffeAuthError(code, { statusCode: 403, spiffeId: id, cause }) };
}
