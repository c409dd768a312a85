import type { Socket } from 'node:net';
import { SpiffeId } from '../spiffeid/id.js';
import { allows, type SpiffeIdMatcher } from '../spiffeid/match.js';
import { peerSpiffeId } from '../tls/peer.js';

export type PeerDecision =
  | { ok: true; id: SpiffeId }
  | { ok: false; status: 403; id: SpiffeId | undefined; reason: 'no_verified_peer' | 'not_allowed'; message: string };

/** Checks the verified mTLS peer of a request's socket against an allowlist matcher. */
export function authorizeSocketPeer(socket: Socket | null | undefined, matcher: SpiffeIdMatcher): PeerDecision {
  const id = peerSpiffeId(socket);
  if (!id) {
    return {
      ok: false,
      status: 403,
      id: undefined,
      reason: 'no_verified_peer',
      message: 'no verified SPIFFE ID for this connection',
    };
  }
  if (!allows(matcher, id)) {
    return { ok: false, status: 403, id, reason: 'not_allowed', message: `SPIFFE ID "${id}" is not authorized` };
  }
  return { ok: true, id };
}
