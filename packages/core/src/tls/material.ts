import { constants as cryptoConstants } from 'node:crypto';
import * as tls from 'node:tls';
import { X509BundleSet } from '../bundle/set.js';
import { certificatesToPem, privateKeyToPem } from '../internal/x509util.js';
import { type X509SvidSource } from '../svid/source.js';
import { X509Svid } from '../svid/x509.js';

/** PEM strings node:tls needs to present our SVID and trust every bundle authority. */
export interface TlsMaterial {
  key: string;
  cert: string;
  ca: string[];
}

// Rebuilding PEM on every handshake is wasteful; cache by the identity of the immutable svid/bundle objects.
const materialCache = new WeakMap<X509Svid, WeakMap<X509BundleSet, TlsMaterial>>();

export function material(svid: X509Svid, bundles: X509BundleSet): TlsMaterial {
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
