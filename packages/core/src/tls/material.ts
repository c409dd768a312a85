import { constants as cryptoConstants, type X509Certificate } from 'node:crypto';
import * as tls from 'node:tls';
import { X509BundleSet } from '../bundle/set.js';
import { type X509Bundle } from '../bundle/x509.js';
import { certificatesToPem, privateKeyToPem } from '../internal/x509util.js';
import { type X509SvidSource } from '../svid/source.js';
import { X509Svid } from '../svid/x509.js';

/** PEM strings node:tls needs to present our SVID and trust every bundle authority. */
export interface TlsMaterial {
  /** The SVID's private key, PKCS#8 PEM. */
  key: string;
  /** The SVID's chain, leaf first, as PEM. */
  cert: string;
  /** Every bundle authority, one PEM certificate per entry. */
  ca: string[];
}

// Rebuilding PEM on every handshake is wasteful; cache by the identity of the immutable svid and of the
// trust store's content (see caPems), so that an update that changes neither yields the very same material
// object: node:tls contexts built from it (clients) are reused and servers skip setSecureContext. Loading
// CAs into an OpenSSL context (OpenSSL 3 decoding) is, with a thousand federated trust domains, most of a
// rotation (bench/README.md).
const materialCache = new WeakMap<X509Svid, WeakMap<readonly string[], TlsMaterial>>();

export function material(svid: X509Svid, bundles: X509BundleSet): TlsMaterial {
  let ca = storeOf.get(bundles);
  if (!ca) {
    ca = caPems(bundles.allAuthorities());
    storeOf.set(bundles, ca);
  }
  return materialFor(svid, ca);
}

function materialFor(svid: X509Svid, ca: readonly string[]): TlsMaterial {
  let byCa = materialCache.get(svid);
  if (!byCa) {
    byCa = new WeakMap();
    materialCache.set(svid, byCa);
  }
  let m = byCa.get(ca);
  if (!m) {
    m = { key: privateKeyToPem(svid.privateKey), cert: certificatesToPem(svid.certificates), ca: ca as string[] };
    byCa.set(ca, m);
  }
  return m;
}

const pemOf = new WeakMap<X509Certificate, string>();

// Recent trust stores: the authorities (the very certificate objects, which the Workload API parse cache keeps
// for unchanged bundles) and their PEM list. Authorities that are the same objects in the same order, e.g. in
// an update that only rotated the SVID, get the same array back. A few entries: a couple per source.
interface TrustStore {
  readonly certs: readonly X509Certificate[];
  readonly pems: readonly string[];
}
const recentStores: TrustStore[] = [];
const RECENT_STORES_MAX = 8;
const storeOf = new WeakMap<X509BundleSet | X509Bundle, readonly string[]>();

function caPems(certs: readonly X509Certificate[]): readonly string[] {
  let store = recentStores.find((s) => s.certs.length === certs.length && s.certs.every((c, i) => c === certs[i]));
  if (!store) {
    const pems = certs.map((c) => {
      let pem = pemOf.get(c);
      if (pem === undefined) {
        pem = c.toString();
        pemOf.set(c, pem);
      }
      return pem;
    });
    store = { certs, pems: Object.freeze(pems) };
    recentStores.unshift(store);
    if (recentStores.length > RECENT_STORES_MAX) recentStores.pop();
  } else if (recentStores[0] !== store) {
    recentStores.splice(recentStores.indexOf(store), 1);
    recentStores.unshift(store);
  }
  return store.pems;
}

/**
 * What an attached server hands OpenSSL: our SVID, and the authorities of **our own trust domain** only.
 * Peers of federated trust domains are verified by SPIFFE verification alone (server.ts): OpenSSL loads
 * every CA of its store into each context (an OpenSSL 3 decode each) and names each one in every
 * CertificateRequest, so a store of a thousand federated CAs halved the handshake rate and made a rotation
 * take half a second (bench/README.md).
 */
export function ownTrustDomainMaterial(source: X509SvidSource & { readonly bundles: X509BundleSet }): TlsMaterial {
  const svid = source.getX509Svid();
  const own = source.bundles.get(svid.id.trustDomain);
  if (!own) return material(svid, new X509BundleSet([])); // nothing trusted: every peer is refused
  let ca = storeOf.get(own);
  if (!ca) {
    ca = caPems(own.authorities);
    storeOf.set(own, ca);
  }
  return materialFor(svid, ca);
}

// Our default floor, for servers, client connect options and the shared client context alike. TLS 1.3 has
// no renegotiation at all; users who need TLS 1.2 peers opt in with `tlsOptions.minVersion`.
export const MIN_TLS_VERSION = 'TLSv1.3';

// A TLS 1.2 renegotiation is a second handshake on the same connection: it could bring a certificate that only
// OpenSSL checked (against every trust domain's authorities lumped together), after SPIFFE verification ran.
// Refused on both sides, whatever the version; pinPeerCertificate is the second line of defence.
export const NO_RENEGOTIATION = cryptoConstants.SSL_OP_NO_RENEGOTIATION;

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

export function sharesContext(extra: tls.ConnectionOptions | undefined): boolean {
  return !extra || CONTEXT_OPTIONS.every((k) => extra[k] === undefined);
}

const clientContexts = new WeakMap<TlsMaterial, tls.SecureContext>();

export function clientContext(m: TlsMaterial): tls.SecureContext {
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
export function tlsMaterial(source: X509SvidSource & { readonly bundles: X509BundleSet }): TlsMaterial {
  return material(source.getX509Svid(), source.bundles);
}
