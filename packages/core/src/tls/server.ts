import { constants as cryptoConstants } from 'node:crypto';
import * as tls from 'node:tls';
import { debuglog } from 'node:util';
import { SpiffeError } from '../errors.js';
import { matchAny, type SpiffeIdAllowlist, toMatcher } from '../spiffeid/match.js';
import { type X509MaterialSource } from '../svid/source.js';
import { MIN_TLS_VERSION, NO_RENEGOTIATION, tlsMaterial } from './material.js';
import { peerCertificateChain, pinPeerCertificate, verifiedPeers, verifyPeer } from './peer.js';

const debug = debuglog('spiffe');

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

/** Options of `spiffeServerTls`: who may connect, extra node:tls options, a rejection hook. */
export interface SpiffeServerTlsOptions {
  /**
   * Which peers may connect at all (checked on every connection, before any request is read). Default: any
   * verified peer, so routes or methods authorize with `allow`.
   */
  authorize?: SpiffeIdAllowlist;
  /** Extra node:tls options (ciphers, ALPNProtocols, ...). Certificate options are managed here. */
  tlsOptions?: tls.TlsOptions;
  /** Told about every rejected peer (the connection is already being destroyed). */
  onReject?: SpiffeTlsServerOptions['onReject'];
}

/**
 * The server TLS wiring every adapter uses: `options` for https/tls/http2 servers (client certificates
 * required, each peer verified against its own trust domain's bundle, no resumption) and `attach(server)`
 * for verification and live rotation. Fastify and Nest pass `.options` as `https`; Express wraps it in
 * `createSpiffeHttpsServer`; gRPC's `listenSpiffe(server, tls, { host, port })` takes it.
 */
export function spiffeServerTls(source: X509MaterialSource, options: SpiffeServerTlsOptions = {}): SpiffeTlsServer {
  return createSpiffeTlsServer({ ...options, source, authorize: options.authorize ?? matchAny() });
}
