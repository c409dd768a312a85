import type { AgentOptions as HttpsAgentOptions, Agent as HttpsAgentType } from 'node:https';
import { Agent as HttpsAgent } from 'node:https';
import { isIP, type Socket } from 'node:net';
import * as tls from 'node:tls';
import { type X509BundleSource } from '../bundle/source.js';
import { TlsVerificationError } from '../errors.js';
import { SpiffeId } from '../spiffeid/id.js';
import { type SpiffeIdAllowlist, toMatcher } from '../spiffeid/match.js';
import { type X509MaterialSource } from '../svid/source.js';
import { clientContext, MIN_TLS_VERSION, NO_RENEGOTIATION, sharesContext, tlsMaterial } from './material.js';
import { derChain, pinPeerCertificate, verifiedPeers, verifyTlsPeer } from './peer.js';

/** Options of the SPIFFE mTLS client helpers (connect options, sockets, https and undici agents). */
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
    // node:tls builds a SecureContext per connection from these PEM strings (key, certificates, trust
    // store: the largest cost of a client handshake, see bench/README.md) unless handed one: connections share one per SVID and bundle set, unless extra options
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
 * handshake, so bundle rotation applies) and authorizes its SPIFFE ID; the hostname is ignored. node:tls calls
 * it only on a handshake OpenSSL verified; a verification of the same leaf against the same bundle is reused.
 */
export function spiffeCheckServerIdentity(
  bundles: X509BundleSource,
  authorize: SpiffeIdAllowlist,
  onVerified?: (id: SpiffeId, leaf: Buffer) => void,
): (host: string, cert: tls.PeerCertificate) => Error | undefined {
  const authorizer = toMatcher(authorize);
  return (_host, cert) => {
    try {
      // node:tls calls checkServerIdentity only on a handshake OpenSSL verified: the verification of this very
      // leaf may be reused (see verifyTlsPeer); the chain is read from `cert` only for a leaf not seen before.
      const leaf = cert?.raw;
      if (!leaf || leaf.length === 0) {
        throw new TlsVerificationError('TLS_NO_PEER_CERTIFICATE', 'peer presented no certificate');
      }
      const id = verifyTlsPeer(leaf, derChain, cert as tls.DetailedPeerCertificate, bundles, authorizer);
      onVerified?.(id, leaf);
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
