import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { SpiffeId } from '../spiffeid/id.js';
import { allows, type SpiffeIdMatcher } from '../spiffeid/match.js';
import { peerSpiffeId } from '../tls/peer.js';
import { SpiffeAuthError } from './error.js';

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
