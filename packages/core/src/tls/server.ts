import { constants as cryptoConstants, X509Certificate } from 'node:crypto';
import * as tls from 'node:tls';
import { debuglog } from 'node:util';
import { type X509BundleSet } from '../bundle/set.js';
import { AuthorizationError, SpiffeError, TlsVerificationError } from '../errors.js';
import { type SpiffeLogger } from '../observability/logger.js';
import {
  certificateRefusalReason,
  type HandshakeRefusalReason,
  handshakeErrorReason,
  reportHandshakeAccepted,
  reportHandshakeRefusal,
} from '../observability/report.js';
import { type SpiffeId, toSpiffeId } from '../spiffeid/id.js';
import { matchAny, type SpiffeIdAllowlist, toMatcher } from '../spiffeid/match.js';
import { type X509MaterialSource } from '../svid/source.js';
import { MIN_TLS_VERSION, NO_RENEGOTIATION, ownTrustDomainMaterial, tlsMaterial } from './material.js';
import {
  peerCertificateChain,
  peerLeaf,
  pinPeerCertificate,
  verifiedPeers,
  verifyPeer,
  verifyTlsPeer,
} from './peer.js';

const debug = debuglog('spiffe');

/** Options of {@link createSpiffeTlsServer}. */
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
  onReject?: (event: SpiffeRejectEvent) => void;
  /**
   * Where refused handshakes are logged (warnings with reason, peer address and, when verified, SPIFFE ID);
   * `attach(server, { logger })` may give another. NODE_DEBUG=spiffe shows them either way.
   */
  logger?: SpiffeLogger;
}

/** What `onReject` is told about a refused peer. */
export interface SpiffeRejectEvent {
  /** Why: a TlsVerificationError for certificates node:tls refused, else the SPIFFE verification error. */
  error: SpiffeError | Error;
  /** The peer's IP address. */
  remoteAddress: string | undefined;
  /** The stable reason code, as logged and counted. */
  reason: HandshakeRefusalReason;
}

/** Options of `SpiffeTlsServer.attach`. */
export interface SpiffeTlsAttachOptions {
  /** Where refused handshakes are logged on this server (default: the wiring's `logger`). */
  logger?: SpiffeLogger;
}

/** A SPIFFE mTLS server wiring: node:tls options to create a server with, and `attach` to wire it. */
export interface SpiffeTlsServer {
  /** Options for tls.createServer / https.createServer / http2.createSecureServer. */
  readonly options: tls.TlsOptions;
  /**
   * Wires a created server: verifies every connection before the server's own handlers see it, and
   * swaps certificates and bundles live (setSecureContext) when the source changes; every refused handshake
   * is reported (logger, NODE_DEBUG=spiffe, metrics). Returns a detach function.
   */
  attach(server: tls.Server, options?: SpiffeTlsAttachOptions): () => void;
}

// Servers a SPIFFE wiring is attached to: adapters check this to refuse start-up without SPIFFE TLS.
const attachedServers = new WeakSet<object>();

/** Whether `spiffeServerTls(...).attach()` wired this server (verification and reporting in place). */
export function hasSpiffeTls(server: unknown): boolean {
  return typeof server === 'object' && server !== null && attachedServers.has(server);
}

// The property node:tls reads for each new connection (tls.Server sets it from the options).
type RejectSwitch = { rejectUnauthorized?: boolean };

// Every connection gets a full handshake and a fresh SPIFFE verification against the current bundles and
// authorizer: no session tickets (and node keeps no server-side session cache without 'resumeSession').
const NO_RESUMPTION = cryptoConstants.SSL_OP_NO_TICKET;

function noCertificate(): TlsVerificationError {
  return new TlsVerificationError('TLS_NO_PEER_CERTIFICATE', 'peer presented no certificate');
}

// What node:tls reports when the peer's chain does not lead to a CA in OpenSSL's store. An attached server
// gives OpenSSL the CAs of its own trust domain only, so a federated peer's chain ends like this; only such
// a peer is then admitted on SPIFFE verification alone (a full path validation against the bundle of its own
// trust domain, as go-spiffe does). A self-signed leaf, an expired certificate, a bad signature inside the
// chain or any other OpenSSL finding is refused as before.
const ISSUER_NOT_IN_STORE: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
]);

// node:tls's verdict on the peer, which peerSpiffeId and request handlers read.
type Verdict = { authorized: boolean; authorizationError: unknown };

// Subject names of every authority of a bundle set, built on the first refusal that asks (reporting only).
const authoritySubjects = new WeakMap<X509BundleSet, ReadonlySet<string>>();

/** Whether the top of the peer's chain names an authority of any trusted trust domain as its issuer. */
function issuedByKnownCa(chain: readonly Buffer[], source: X509MaterialSource): boolean {
  try {
    const bundles = source.bundles;
    let subjects = authoritySubjects.get(bundles);
    if (!subjects) {
      subjects = new Set(bundles.allAuthorities().map((c) => c.subject));
      authoritySubjects.set(bundles, subjects);
    }
    return subjects.has(new X509Certificate(chain[chain.length - 1] as Buffer).issuer);
  } catch {
    return false;
  }
}

/** The peer's whole chain (leaf first), empty if node:tls cannot give it. */
function readChain(socket: tls.TLSSocket): Buffer[] {
  try {
    return peerCertificateChain(socket);
  } catch {
    return [];
  }
}

function tryId(id: string): SpiffeId | undefined {
  try {
    return toSpiffeId(id);
  } catch {
    return undefined;
  }
}

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

  const refuse = (
    socket: tls.TLSSocket,
    logger: SpiffeLogger | undefined,
    reason: HandshakeRefusalReason,
    error: Error,
    spiffeId?: SpiffeId,
  ): void => {
    const remoteAddress = socket.remoteAddress;
    socket.destroy();
    const detail = error instanceof TlsVerificationError ? (error.cause as string | undefined) : error.message;
    reportHandshakeRefusal({ reason, remoteAddress, spiffeId, detail }, logger);
    try {
      options.onReject?.({ error, remoteAddress, reason });
    } catch {
      // ignore
    }
  };

  const onSecureConnection = (socket: tls.TLSSocket, logger: SpiffeLogger | undefined): void => {
    let leaf: Buffer | undefined;
    try {
      leaf = peerLeaf(socket);
    } catch {
      leaf = undefined;
    }
    if (!leaf) {
      refuse(socket, logger, 'TLS_NO_PEER_CERTIFICATE', noCertificate());
      return;
    }
    // node:tls checked the chain against the roots it holds; attach() made it leave refusals to us so that
    // they are reported. A certificate it did not verify goes no further, except a federated peer's chain,
    // whose roots an attached server does not give OpenSSL (see ownTrustDomainMaterial).
    if (socket.authorized !== true) {
      onUnauthorized(socket, logger);
      return;
    }
    try {
      // OpenSSL verified this handshake: the verification of this very leaf may be reused (see verifyTlsPeer).
      const id = verifyTlsPeer(leaf, readChain, socket, source, authorizer);
      verifiedPeers.set(socket, id);
      pinPeerCertificate(socket, leaf);
      reportHandshakeAccepted();
    } catch (err) {
      debug('rejecting TLS peer %s: %s', socket.remoteAddress, (err as Error).message);
      const e = err as Error;
      const reason = (e instanceof SpiffeError ? e.code : 'TLS_CERT_INVALID') as HandshakeRefusalReason;
      // AuthorizationError means the chain verified: its ID is a verified one.
      const verifiedId = e instanceof AuthorizationError ? tryId(e.spiffeId) : undefined;
      refuse(socket, logger, reason, e, verifiedId);
    }
  };

  // A peer OpenSSL did not verify: refused, unless its chain ends at an issuer missing from OpenSSL's store and
  // it is a federated peer that SPIFFE verification admits (the whole chain, keyed by its whole DER).
  const onUnauthorized = (socket: tls.TLSSocket, logger: SpiffeLogger | undefined): void => {
    const code = String(socket.authorizationError ?? 'unknown');
    const reason = certificateRefusalReason(code);
    const unverified = new TlsVerificationError(
      'TLS_PEER_UNVERIFIED',
      `peer certificate refused by TLS verification: ${code}`,
      { cause: code },
    );
    if (!ISSUER_NOT_IN_STORE.has(code)) {
      refuse(socket, logger, reason, unverified);
      return;
    }
    const chain = readChain(socket);
    if (chain.length === 0) {
      refuse(socket, logger, 'TLS_NO_PEER_CERTIFICATE', noCertificate());
      return;
    }
    let id: SpiffeId;
    try {
      id = verifyPeer(chain, source, authorizer);
    } catch (err) {
      // A chain that verified against a federated trust domain's bundle, refused by the authorizer, is
      // reported as such; anything else stays what OpenSSL found: an unknown CA.
      const e = err as Error;
      const verifiedId = e instanceof AuthorizationError ? tryId(e.spiffeId) : undefined;
      if (verifiedId && !isOwnTrustDomain(verifiedId)) {
        refuse(socket, logger, (e as SpiffeError).code as HandshakeRefusalReason, e, verifiedId);
      } else if (e instanceof SpiffeError && !verifiedId && issuedByKnownCa(chain, source)) {
        // A CA of some trust domain we trust, used where it may not be (e.g. another trust domain's ID):
        // the SPIFFE finding, as when OpenSSL held every trust domain's CAs.
        refuse(socket, logger, e.code as HandshakeRefusalReason, e);
      } else refuse(socket, logger, reason, unverified);
      return;
    }
    // Our own trust domain's CAs are in OpenSSL's store: a peer of ours that OpenSSL could not verify is
    // refused whatever SPIFFE verification says.
    if (isOwnTrustDomain(id)) {
      refuse(socket, logger, reason, unverified);
      return;
    }
    const verdict = socket as unknown as Verdict;
    verdict.authorized = true;
    verdict.authorizationError = null;
    verifiedPeers.set(socket, id);
    pinPeerCertificate(socket, chain[0] as Buffer);
    reportHandshakeAccepted();
  };

  // Fails closed: with no usable SVID every peer counts as ours, so OpenSSL's verdict stands.
  const isOwnTrustDomain = (id: SpiffeId): boolean => {
    try {
      return source.getX509Svid().id.trustDomain.equals(id.trustDomain);
    } catch {
      return true;
    }
  };

  // What an attached server gives OpenSSL: its own trust domain's CAs only (federated peers are verified by
  // onSecureConnection), so the store does not grow with federation.
  const attachedOptions = (): tls.TlsOptions => ({ ...base, ...ownTrustDomainMaterial(source) });

  return {
    options: serverOptions,
    attach(server: tls.Server, attachOptions: SpiffeTlsAttachOptions = {}): () => void {
      const logger = attachOptions.logger ?? options.logger;
      const onSecure = (socket: tls.TLSSocket) => onSecureConnection(socket, logger);
      // Handshakes that fail inside node:tls (plain text, protocol version, resets, alerts from the client).
      const onClientError = (err: Error, socket: tls.TLSSocket) => {
        reportHandshakeRefusal(
          {
            reason: handshakeErrorReason(err),
            remoteAddress: socket?.remoteAddress,
            detail: (err as { code?: string }).code ?? err.message,
          },
          logger,
        );
      };
      // Prepended so that the rejection happens before http/https/http2 set up request parsing.
      server.prependListener('secureConnection', onSecure);
      server.on('tlsClientError', onClientError);
      // With rejectUnauthorized, node:tls drops a client whose certificate it did not verify without any
      // event, so nothing could say why. Attached, the server leaves that refusal to onSecure (which runs
      // before any other listener and checks socket.authorized first); the options object itself keeps
      // rejectUnauthorized: true, so a server built from it but never attached still refuses such clients.
      const sw = server as unknown as RejectSwitch;
      const previousReject = sw.rejectUnauthorized;
      sw.rejectUnauthorized = false;
      attachedServers.add(server);
      let last: tls.TlsOptions = serverOptions;
      const swap = (next: tls.TlsOptions): void => {
        // Material is shared while the SVID and the trust store's content are unchanged (tls/material.ts):
        // an update that changed neither does not rebuild the OpenSSL context (loading every CA again).
        if (next.key === last.key && next.cert === last.cert && next.ca === last.ca) return;
        last = next;
        server.setSecureContext(next);
      };
      try {
        swap(attachedOptions());
      } catch (err) {
        debug('keeping the TLS material of the options: %s', (err as Error).message);
      }
      const unsubscribe = source.onUpdate?.(() => {
        let next: tls.TlsOptions;
        try {
          next = attachedOptions();
        } catch (err) {
          debug('keeping previous TLS material: %s', (err as Error).message);
          return;
        }
        swap(next);
      });
      return () => {
        sw.rejectUnauthorized = previousReject;
        attachedServers.delete(server);
        server.removeListener('secureConnection', onSecure);
        server.removeListener('tlsClientError', onClientError);
        unsubscribe?.();
        // Detached, OpenSSL alone verifies peers again: it needs every trust domain's CAs back.
        try {
          server.setSecureContext(current());
        } catch (err) {
          debug('keeping the attached TLS material: %s', (err as Error).message);
        }
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
  /** Where refused handshakes are logged (see `SpiffeTlsServerOptions.logger`). */
  logger?: SpiffeLogger;
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
