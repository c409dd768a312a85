import { constants as cryptoConstants } from 'node:crypto';
import type { AgentOptions as HttpsAgentOptions, Agent as HttpsAgentType } from 'node:https';
import { Agent as HttpsAgent } from 'node:https';
import { isIP, type Socket } from 'node:net';
import * as tls from 'node:tls';
import { debuglog } from 'node:util';
import type { X509Bundle, X509BundleSet, X509BundleSource } from './bundle.js';
import { AuthorizationError, type SpiffeError, TlsVerificationError } from './errors.js';
import { allows, type SpiffeIdAllowlist, type SpiffeIdMatcher, toMatcher } from './match.js';
import type { X509MaterialSource, X509SvidSource } from './source.js';
import type { SpiffeId } from './spiffeid.js';
import { verifyX509Svid, type X509Svid } from './x509svid.js';
import { certificatesToPem, partsKey, privateKeyToPem } from './x509util.js';

const debug = debuglog('spiffe');

// IDs of peers that passed SPIFFE verification on this socket. Nothing else ever populates it.
const verifiedPeers = new WeakMap<tls.TLSSocket, SpiffeId>();

/**
 * The SPIFFE ID of a TLS peer that passed SPIFFE verification (chain against the bundle of the peer's own
 * trust domain, plus the authorizer). Undefined for any other socket: a certificate that was merely
 * presented is never turned into an identity.
 */
export function peerSpiffeId(socket: Socket | tls.TLSSocket | null | undefined): SpiffeId | undefined {
  if (!socket || !(socket instanceof tls.TLSSocket)) return undefined;
  const id = verifiedPeers.get(socket);
  if (!id || socket.authorized !== true) return undefined;
  return id;
}

/**
 * The DER chain (leaf first) the peer presented, as node:tls exposes it (with the issuer node:tls found in
 * our trust store appended, as `getPeerCertificate(true)` does). Read through `X509Certificate`: building
 * `getPeerCertificate(true)`'s objects (names, fingerprints, extensions of every certificate) cost ~200 µs
 * per handshake, more than the rest of the SPIFFE checks together.
 */
export function peerCertificateChain(socket: tls.TLSSocket): Buffer[] {
  return derChain(socket.getPeerX509Certificate());
}

/** A certificate as node:tls links it to its issuer: X509Certificate, or getPeerCertificate(true)'s objects. */
interface LinkedCertificate<C> {
  readonly raw?: Buffer;
  readonly issuerCertificate?: C;
}

/** DER of `leaf` and its issuers, leaf first, up to a self-issued one (at most 16). */
function derChain<C extends LinkedCertificate<C>>(leaf: C | undefined): Buffer[] {
  const out: Buffer[] = [];
  let cur = leaf;
  let raw = cur?.raw; // a getter that copies, on X509Certificate: read once per certificate
  while (cur && raw && out.length < 16) {
    out.push(raw);
    const issuer: C | undefined = cur.issuerCertificate;
    const issuerRaw = issuer?.raw;
    if (!issuer || issuer === cur || !issuerRaw || issuerRaw.equals(raw)) break;
    cur = issuer;
    raw = issuerRaw;
  }
  return out;
}

/**
 * The one verification path every adapter uses: the peer's chain must chain to an authority of the bundle
 * of the **leaf's own trust domain** (X.509-SVID rules enforced) and the authorizer must accept its ID.
 * Throws X509SvidError, AuthorizationError or TlsVerificationError.
 */
export function verifyPeer(chain: readonly Buffer[], bundles: X509BundleSource, authorizer: SpiffeIdMatcher): SpiffeId {
  if (chain.length === 0) throw new TlsVerificationError('TLS_NO_PEER_CERTIFICATE', 'peer presented no certificate');
  const id = verifyChainCached(chain, bundles);
  if (!allows(authorizer, id)) throw new AuthorizationError(id.toString(), `peer SPIFFE ID "${id}" is not authorized`);
  return id;
}

// Peers reconnect with the same SVID for its whole lifetime, and a full verification (certificate parsing,
// extension decoding, signatures) costs more than the rest of a handshake's SPIFFE work. A chain that verified
// is remembered by its exact DER, tied to the very bundle object that verified it (bundles are immutable, so
// any bundle change is a new object and a miss) and to the chain's validity window. Failures are never cached;
// the authorizer always runs.
interface CachedVerification {
  id: SpiffeId;
  bundle: X509Bundle;
  notBefore: number;
  notAfter: number;
}
const VERIFY_CACHE_MAX = 1024;
const verifyCache = new Map<string, CachedVerification>();

function verifyChainCached(chain: readonly Buffer[], bundles: X509BundleSource): SpiffeId {
  const key = partsKey(chain);
  const now = Date.now();
  const hit = verifyCache.get(key);
  if (hit && now >= hit.notBefore && now <= hit.notAfter) {
    let current: X509Bundle | undefined;
    try {
      current = bundles.getX509BundleForTrustDomain(hit.id.trustDomain);
    } catch {
      current = undefined;
    }
    if (current === hit.bundle) return hit.id;
  }
  // Record the bundle the verification actually used (the source may rotate concurrently).
  let used: X509Bundle | undefined;
  const recording: X509BundleSource = {
    getX509BundleForTrustDomain(td) {
      used = bundles.getX509BundleForTrustDomain(td);
      return used;
    },
  };
  const { id, verifiedChain } = verifyX509Svid(chain, recording, { now: new Date(now) });
  if (used) {
    if (verifyCache.size >= VERIFY_CACHE_MAX) verifyCache.delete(verifyCache.keys().next().value as string);
    verifyCache.set(key, {
      id,
      bundle: used,
      notBefore: Math.max(...verifiedChain.map((c) => Date.parse(c.validFrom))),
      notAfter: Math.min(...verifiedChain.map((c) => Date.parse(c.validTo))),
    });
  }
  return id;
}

interface Material {
  key: string;
  cert: string;
  ca: string[];
}

// Rebuilding PEM on every handshake is wasteful; cache by the identity of the immutable svid/bundle objects.
const materialCache = new WeakMap<X509Svid, WeakMap<X509BundleSet, Material>>();
function material(svid: X509Svid, bundles: X509BundleSet): Material {
  let byBundles = materialCache.get(svid);
  if (!byBundles) {
    byBundles = new WeakMap();
    materialCache.set(svid, byBundles);
  }
  let m = byBundles.get(bundles);
  if (!m) {
    m = {
      key: privateKeyToPem(svid.privateKey),
      cert: certificatesToPem(svid.certificates),
      ca: bundles.allAuthorities().map((c) => c.toString()),
    };
    byBundles.set(bundles, m);
  }
  return m;
}

// Our default floor, for servers, client connect options and the shared client context alike. TLS 1.3 has
// no renegotiation at all; users who need TLS 1.2 peers opt in with `tlsOptions.minVersion`.
const MIN_TLS_VERSION = 'TLSv1.3';

// A TLS 1.2 renegotiation is a second handshake on the same connection: it could bring a certificate that only
// OpenSSL checked (against every trust domain's authorities lumped together), after SPIFFE verification ran.
// Refused on both sides, whatever the version; pinPeerCertificate is the second line of defence.
const NO_RENEGOTIATION = cryptoConstants.SSL_OP_NO_RENEGOTIATION;

/**
 * Ends a verified connection whose peer certificate ever changes (node:tls emits 'secure' again after every
 * later handshake), and forgets its verified ID first: a connection never carries a certificate other than
 * the one that was verified.
 */
function pinPeerCertificate(socket: tls.TLSSocket, leaf: Buffer): void {
  socket.on('secure', () => {
    const now = socket.getPeerX509Certificate()?.raw;
    if (now?.equals(leaf)) return;
    verifiedPeers.delete(socket);
    debug('peer certificate changed on a verified connection from %s: closing it', socket.remoteAddress);
    socket.destroy(new TlsVerificationError('TLS_PEER_UNVERIFIED', 'the peer certificate changed after verification'));
  });
}

// The connect options node:tls reads when it builds a SecureContext (tls.createSecureContext).
const CONTEXT_OPTIONS = [
  'ca',
  'cert',
  'key',
  'pfx',
  'passphrase',
  'ciphers',
  'sigalgs',
  'ecdhCurve',
  'dhparam',
  'crl',
  'minVersion',
  'maxVersion',
  'secureProtocol',
  'secureOptions',
  'honorCipherOrder',
  'sessionIdContext',
  'ticketKeys',
  'sessionTimeout',
  'privateKeyEngine',
  'privateKeyIdentifier',
  'clientCertEngine',
  'secureContext',
] as const;

function sharesContext(extra: tls.ConnectionOptions | undefined): boolean {
  return !extra || CONTEXT_OPTIONS.every((k) => extra[k] === undefined);
}

const clientContexts = new WeakMap<Material, tls.SecureContext>();
function clientContext(m: Material): tls.SecureContext {
  let ctx = clientContexts.get(m);
  if (!ctx) {
    ctx = tls.createSecureContext({
      minVersion: MIN_TLS_VERSION,
      secureOptions: NO_RENEGOTIATION,
      key: m.key,
      cert: m.cert,
      ca: m.ca,
    });
    clientContexts.set(m, ctx);
  }
  return ctx;
}

/** node:tls options that present our SVID and trust every bundle authority (SPIFFE checks come on top). */
export function tlsMaterial(source: X509SvidSource & { readonly bundles: X509BundleSet }): Material {
  return material(source.getX509Svid(), source.bundles);
}

export interface SpiffeTlsServerOptions {
  /** Our SVID and the bundles we trust. */
  source: X509MaterialSource;
  /**
   * Which peers may connect at all (checked on every connection, before any request is read). Use
   * `matchAny()` to admit every verified peer and authorize per route instead.
   */
  authorize: SpiffeIdAllowlist;
  /** Extra node:tls options (ciphers, ALPNProtocols, ...). Certificate options are managed here. */
  tlsOptions?: tls.TlsOptions;
  /** Told about every rejected peer (the connection is already being destroyed). */
  onReject?: (event: { error: SpiffeError | Error; remoteAddress: string | undefined }) => void;
}

export interface SpiffeTlsServer {
  /** Options for tls.createServer / https.createServer / http2.createSecureServer. */
  readonly options: tls.TlsOptions;
  /**
   * Wires a created server: verifies every connection before the server's own handlers see it, and
   * swaps certificates and bundles live (setSecureContext) when the source changes. Returns a detach function.
   */
  attach(server: tls.Server): () => void;
}

// Every connection gets a full handshake and a fresh SPIFFE verification against the current bundles and
// authorizer: no session tickets (and node keeps no server-side session cache without 'resumeSession').
const NO_RESUMPTION = cryptoConstants.SSL_OP_NO_TICKET;

/** Builds node:tls server options for SPIFFE mTLS from a live source. */
export function createSpiffeTlsServer(options: SpiffeTlsServerOptions): SpiffeTlsServer {
  const { source } = options;
  const authorizer = toMatcher(options.authorize);
  const base: tls.TlsOptions = {
    minVersion: MIN_TLS_VERSION,
    ...options.tlsOptions,
    requestCert: true,
    rejectUnauthorized: true,
    secureOptions: (options.tlsOptions?.secureOptions ?? 0) | NO_RESUMPTION | NO_RENEGOTIATION,
  };
  const current = (): tls.TlsOptions => ({ ...base, ...tlsMaterial(source) });
  const serverOptions = current();

  const onSecureConnection = (socket: tls.TLSSocket): void => {
    try {
      const chain = peerCertificateChain(socket);
      const id = verifyPeer(chain, source, authorizer);
      verifiedPeers.set(socket, id);
      pinPeerCertificate(socket, chain[0] as Buffer);
    } catch (err) {
      debug('rejecting TLS peer %s: %s', socket.remoteAddress, (err as Error).message);
      socket.destroy();
      try {
        options.onReject?.({ error: err as Error, remoteAddress: socket.remoteAddress });
      } catch {
        // ignore
      }
    }
  };

  return {
    options: serverOptions,
    attach(server: tls.Server): () => void {
      // Prepended so that the rejection happens before http/https/http2 set up request parsing.
      server.prependListener('secureConnection', onSecureConnection);
      let lastKey: string | undefined = serverOptions.key as string;
      let lastCa: string[] | undefined = serverOptions.ca as string[];
      const unsubscribe = source.onUpdate?.(() => {
        let next: tls.TlsOptions;
        try {
          next = current();
        } catch (err) {
          debug('keeping previous TLS material: %s', (err as Error).message);
          return;
        }
        if (next.key === lastKey && next.ca === lastCa) return;
        lastKey = next.key as string;
        lastCa = next.ca as string[];
        server.setSecureContext(next);
      });
      return () => {
        server.removeListener('secureConnection', onSecureConnection);
        unsubscribe?.();
      };
    },
  };
}

export interface SpiffeTlsClientOptions {
  /** Our SVID (presented to the server) and the bundles we trust. */
  source: X509MaterialSource;
  /** Which server SPIFFE IDs we accept (hostnames are not checked). Required: deny by default. */
  authorize: SpiffeIdAllowlist;
  /** Extra node:tls options. */
  tlsOptions?: tls.ConnectionOptions;
}

/**
 * node:tls connect options for a SPIFFE mTLS client, built fresh from the source (so rotations apply to
 * new connections). The server's chain is verified against the bundle of the server's trust domain and its
 * ID checked with the authorizer inside the handshake, instead of a hostname check.
 */
export function spiffeTlsConnectOptions(
  options: SpiffeTlsClientOptions,
  onVerified?: (id: SpiffeId, leaf: Buffer) => void,
): tls.ConnectionOptions {
  const material = tlsMaterial(options.source);
  const extra = options.tlsOptions;
  return {
    minVersion: MIN_TLS_VERSION,
    ...extra,
    ...material,
    // node:tls builds a SecureContext per connection from these PEM strings (~0.9 ms: key, certificates,
    // trust store) unless handed one: connections share one per SVID and bundle set, unless extra options
    // shape the context (those still get their own, built by node:tls from all the options).
    ...(sharesContext(extra) ? { secureContext: clientContext(material) } : {}),
    secureOptions: (extra?.secureOptions ?? 0) | NO_RENEGOTIATION,
    rejectUnauthorized: true,
    // Never resume: node skips checkServerIdentity (our SPIFFE check) on a resumed session and OpenSSL does
    // not re-verify the chain, so a session from before a bundle or allowlist change would bypass both.
    session: undefined,
    checkServerIdentity: spiffeCheckServerIdentity(options.source, options.authorize, onVerified),
  };
}

/**
 * A `checkServerIdentity` for node:tls (and libraries that take one, like @grpc/grpc-js): verifies the
 * server's chain against the bundle of the server's own trust domain (read from the source at each
 * handshake, so bundle rotation applies) and authorizes its SPIFFE ID; the hostname is ignored.
 */
export function spiffeCheckServerIdentity(
  bundles: X509BundleSource,
  authorize: SpiffeIdAllowlist,
  onVerified?: (id: SpiffeId, leaf: Buffer) => void,
): (host: string, cert: tls.PeerCertificate) => Error | undefined {
  const authorizer = toMatcher(authorize);
  return (_host, cert) => {
    try {
      const chain = derChain(cert as tls.DetailedPeerCertificate);
      const id = verifyPeer(chain, bundles, authorizer);
      onVerified?.(id, chain[0] as Buffer);
      return undefined;
    } catch (err) {
      return err instanceof Error ? err : new TlsVerificationError('TLS_PEER_UNVERIFIED', String(err));
    }
  };
}

/** Opens a SPIFFE mTLS connection; resolves once the server is verified and authorized. */
export function connectSpiffeTls(
  options: SpiffeTlsClientOptions & { host: string; port: number; servername?: string },
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = createSpiffeTlsSocket(options);
    socket.once('secureConnect', () => {
      if (!socket.destroyed) resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Like tls.connect, with SPIFFE verification; `peerSpiffeId(socket)` works once connected. */
export function createSpiffeTlsSocket(
  options: SpiffeTlsClientOptions & { host: string; port: number; servername?: string },
): tls.TLSSocket {
  let verified: SpiffeId | undefined;
  let verifiedLeaf: Buffer | undefined;
  const connectOptions = spiffeTlsConnectOptions(options, (id, leaf) => {
    verified = id;
    verifiedLeaf = leaf;
  });
  const servername = options.servername ?? (isIP(options.host) ? undefined : options.host);
  const socket = tls.connect({ ...connectOptions, host: options.host, port: options.port, servername });
  socket.prependOnceListener('secureConnect', () => {
    if (socket.isSessionReused()) {
      // Defence in depth (see spiffeTlsConnectOptions): a resumed session was never SPIFFE-verified.
      socket.destroy(new TlsVerificationError('TLS_PEER_UNVERIFIED', 'TLS session resumption is not allowed'));
      return;
    }
    if (verified && verifiedLeaf && socket.authorized) {
      verifiedPeers.set(socket, verified);
      pinPeerCertificate(socket, verifiedLeaf);
    }
  });
  return socket;
}

/** An https.Agent for node:https requests that presents our SVID and requires an authorized server ID. */
export function createSpiffeHttpsAgent(
  options: SpiffeTlsClientOptions & { agentOptions?: HttpsAgentOptions },
): HttpsAgentType {
  class SpiffeHttpsAgent extends HttpsAgent {
    override createConnection(opts: tls.ConnectionOptions & { host?: string; port?: number }): Socket {
      return createSpiffeTlsSocket({
        ...options,
        tlsOptions: { ...options.tlsOptions, ...pickSocketOptions(opts) },
        host: opts.host ?? 'localhost',
        port: Number(opts.port ?? 443),
        servername: opts.servername || undefined,
      });
    }
  }
  // Sessions are not reused: every connection is verified against the current bundles.
  return new SpiffeHttpsAgent({ keepAlive: true, maxCachedSessions: 0, ...options.agentOptions });
}

function pickSocketOptions(opts: tls.ConnectionOptions): tls.ConnectionOptions {
  const out: tls.ConnectionOptions = {};
  if (opts.ALPNProtocols) out.ALPNProtocols = opts.ALPNProtocols;
  if (opts.timeout !== undefined) out.timeout = opts.timeout;
  return out;
}
