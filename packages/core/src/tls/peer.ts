import { type Socket } from 'node:net';
import * as tls from 'node:tls';
import { debuglog } from 'node:util';
import { type X509BundleSource } from '../bundle/source.js';
import { AuthorizationError, TlsVerificationError } from '../errors.js';
import { type ReusableVerification, stillVerified, verifyForReuse } from '../internal/reusable-verification.js';
import { partsKey } from '../internal/x509util.js';
import { SpiffeId } from '../spiffeid/id.js';
import { allows, type SpiffeIdMatcher } from '../spiffeid/match.js';

const debug = debuglog('spiffe');

// IDs of peers that passed SPIFFE verification on this socket. Nothing else ever populates it.
export const verifiedPeers = new WeakMap<tls.TLSSocket, SpiffeId>();

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
 * `getPeerCertificate(true)`'s objects (names, fingerprints, extensions of every certificate) costs more per
 * handshake than the rest of the SPIFFE checks together (figures in bench/README.md).
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
export function derChain<C extends LinkedCertificate<C>>(leaf: C | undefined): Buffer[] {
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
  const key = partsKey(chain);
  const now = Date.now();
  return authorized(
    reused(chainCache, key, bundles, now) ?? verifyAndKeep(chainCache, key, chain, bundles, now),
    authorizer,
  );
}

/** `id` if the authorizer accepts it; else throws AuthorizationError. Runs on every verification, cached or not. */
function authorized(id: SpiffeId, authorizer: SpiffeIdMatcher): SpiffeId {
  if (!allows(authorizer, id)) throw new AuthorizationError(id.toString(), `peer SPIFFE ID "${id}" is not authorized`);
  return id;
}

// Peers reconnect with the same SVID for its whole lifetime, and a full verification (certificate parsing,
// extension decoding, signatures) costs more than the rest of a handshake's SPIFFE work. A chain that verified
// is remembered, tied to the very bundle object that verified it (bundles are immutable, so any bundle change
// is a new object and a miss) and to the chain's validity window. Failures are never cached; the authorizer
// always runs.
const VERIFY_CACHE_MAX = 1024;

// verifyPeer: keyed by the whole chain's exact DER (the public function, and the federated path of the server,
// where OpenSSL did not verify the chain).
const chainCache = new Map<string, ReusableVerification>();

// verifyTlsPeer: keyed by the leaf's exact DER alone, used only where OpenSSL has verified the handshake. A
// kept entry records that this very leaf chained, through a path whose every certificate was valid over
// [notBefore, notAfter], to the roots of the bundle object the source still hands out for its trust domain.
// The leaf's signature is by that path's issuer whatever intermediates the peer sends this time, and SPIFFE
// has no revocation, so verifying again would give the same answer; OpenSSL checks the TLS CertificateVerify
// (possession of the leaf's key) on every handshake; the window and the bundle identity are checked on every
// hit (stillVerified). A leaf not seen before is verified in full with the chain the peer sent.
const leafCache = new Map<string, ReusableVerification>();

function remember(cache: Map<string, ReusableVerification>, key: string, kept: ReusableVerification): void {
  if (cache.size >= VERIFY_CACHE_MAX) cache.delete(cache.keys().next().value as string);
  cache.set(key, kept);
}

/** The kept verification under `key` while it still holds, else undefined. */
function reused(
  cache: Map<string, ReusableVerification>,
  key: string,
  bundles: X509BundleSource,
  now: number,
): SpiffeId | undefined {
  const hit = cache.get(key);
  return hit && stillVerified(hit, bundles, now) ? hit.id : undefined;
}

/** A full verification of `chain`, kept under `key` when it may be reused. */
function verifyAndKeep(
  cache: Map<string, ReusableVerification>,
  key: string,
  chain: readonly Buffer[],
  bundles: X509BundleSource,
  now: number,
): SpiffeId {
  const { id, kept } = verifyForReuse(chain, bundles, now);
  if (kept) remember(cache, key, kept);
  return id;
}

/**
 * verifyPeer for a peer whose handshake OpenSSL verified (chain to a CA of its store, CertificateVerify):
 * `leaf` is the DER of the certificate the peer presented, and `readChain(from)` gives the whole chain (leaf
 * first); it is called only when this leaf has no verification to reuse (reading it costs more than the rest;
 * see bench/README.md). A function and its argument rather than a closure: this runs on every handshake, and
 * the build's keepNames turns each closure created into a property definition. Throws as verifyPeer does.
 */
export function verifyTlsPeer<T>(
  leaf: Buffer,
  readChain: (from: T) => readonly Buffer[],
  from: T,
  bundles: X509BundleSource,
  authorizer: SpiffeIdMatcher,
): SpiffeId {
  // The exact DER as the key: no digest to compute, and equal keys are equal certificates.
  const key = leaf.toString('latin1');
  const now = Date.now();
  const hit = reused(leafCache, key, bundles, now);
  if (hit) return authorized(hit, authorizer);
  const chain = readChain(from);
  if (chain.length === 0) throw new TlsVerificationError('TLS_NO_PEER_CERTIFICATE', 'peer presented no certificate');
  if (!leaf.equals(chain[0] as Buffer)) {
    throw new TlsVerificationError('TLS_PEER_UNVERIFIED', 'the peer chain does not start with the peer certificate');
  }
  return authorized(verifyAndKeep(leafCache, key, chain, bundles, now), authorizer);
}

/**
 * The DER of the certificate a TLS peer presented (the leaf), or undefined. Read with the leaf-only
 * `getPeerCertificate()`: the first `getPeerX509Certificate()` on a socket copies the next certificate of the
 * chain node:tls holds (X509_dup, a full OpenSSL 3 decode) and costs 2–3 times more (bench/README.md).
 */
export function peerLeaf(socket: tls.TLSSocket): Buffer | undefined {
  // null once the socket is destroyed, {} without a peer certificate.
  const raw = (socket.getPeerCertificate() as tls.PeerCertificate | null)?.raw as Buffer | undefined;
  return raw && raw.length > 0 ? raw : undefined;
}

/**
 * Ends a verified connection whose peer certificate ever changes (node:tls emits 'secure' again after every
 * later handshake), and forgets its verified ID first: a connection never carries a certificate other than
 * the one that was verified.
 */
export function pinPeerCertificate(socket: tls.TLSSocket, leaf: Buffer): void {
  pinnedLeaf.set(socket, leaf);
  socket.on('secure', checkPinnedLeaf);
}

// The leaf each verified connection was verified with, read by one shared 'secure' listener (called with the
// socket as `this`): no closure per connection.
const pinnedLeaf = new WeakMap<tls.TLSSocket, Buffer>();

function checkPinnedLeaf(this: tls.TLSSocket): void {
  let now: Buffer | undefined;
  try {
    now = peerLeaf(this);
  } catch {
    now = undefined;
  }
  if (now?.equals(pinnedLeaf.get(this) as Buffer)) return;
  verifiedPeers.delete(this);
  debug('peer certificate changed on a verified connection from %s: closing it', this.remoteAddress);
  this.destroy(new TlsVerificationError('TLS_PEER_UNVERIFIED', 'the peer certificate changed after verification'));
}
