import { createPublicKey, type KeyObject, type X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { type X509BundleSource } from '../bundle/source.js';
import { BundleError, SpiffeError, SpiffeIdError, X509SvidError } from '../errors.js';
import {
  type CertificatesInput,
  certificateFacts,
  certificatesToPem,
  issuerNameMatches,
  KEY_USAGE,
  parseCertificates,
  parsePrivateKey,
  privateKeyToPem,
} from '../internal/x509util.js';
import { SpiffeId } from '../spiffeid/id.js';

/** Longest certificate path we will try to build (leaf + intermediates + root). */
const MAX_PATH_LENGTH = 10;

/** certificateFacts, with a malformed extension reported as X509SvidError(X509SVID_INVALID). */
function facts(cert: X509Certificate) {
  return wrapCertErrors(() => certificateFacts(cert));
}

/** The SPIFFE ID in a certificate's single URI SAN. Throws X509SvidError otherwise. */
export function idFromCertificate(cert: X509Certificate): SpiffeId {
  const { uris } = facts(cert);
  if (uris.length === 0) throw new X509SvidError('X509SVID_NO_URI_SAN', 'certificate contains no URI SAN');
  if (uris.length > 1) {
    throw new X509SvidError('X509SVID_MULTIPLE_URI_SANS', 'certificate contains more than one URI SAN');
  }
  try {
    return SpiffeId.parse(uris[0] as string);
  } catch (err) {
    throw new X509SvidError(
      'X509SVID_INVALID',
      `certificate URI SAN is not a valid SPIFFE ID: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/**
 * RFC 5280 §4.2: a certificate with a critical extension we do not process is refused (see
 * PROCESSED_EXTENSIONS in internal/x509util.ts: subjectAltName, basicConstraints, keyUsage, extKeyUsage).
 */
function checkCriticalExtensions(cert: X509Certificate, role: string): void {
  const unknown = facts(cert).unknownCriticalExtensions;
  if (unknown.length > 0) {
    throw new X509SvidError(
      'X509SVID_UNSUPPORTED_CRITICAL_EXTENSION',
      `${role} certificate has an unsupported critical extension: ${unknown.join(', ')}`,
    );
  }
}

/**
 * MD5 and SHA-1 (and older) signatures are refused on every certificate below the trust anchor, including
 * RSASSA-PSS over SHA-1.
 */
function checkSignatureAlgorithm(cert: X509Certificate, role: string): void {
  const { signatureAlgorithm: oid, weakSignature: weak } = facts(cert);
  if (weak !== undefined) {
    throw new X509SvidError('X509SVID_WEAK_SIGNATURE', `${role} certificate is signed with insecure ${weak} (${oid})`);
  }
}

/** X.509-SVID: a leaf's SPIFFE ID must have a path (the trust domain's own ID belongs to its CAs). */
function checkLeafId(id: SpiffeId): void {
  if (id.path === '') {
    throw new X509SvidError('X509SVID_LEAF_NO_PATH', `leaf certificate SPIFFE ID "${id}" has no path`);
  }
}

/**
 * X.509-SVID leaf rules: not a CA, digitalSignature set, keyCertSign and cRLSign not set, no unsupported
 * critical extension.
 */
export function checkLeafCertificate(cert: X509Certificate): void {
  const f = facts(cert);
  checkCriticalExtensions(cert, 'leaf');
  if (f.isCa) throw new X509SvidError('X509SVID_LEAF_IS_CA', 'leaf certificate must not have CA flag set to true');
  if (f.keyUsage === undefined || (f.keyUsage & KEY_USAGE.digitalSignature) === 0) {
    throw new X509SvidError('X509SVID_LEAF_KEY_USAGE', 'leaf certificate must have digitalSignature as key usage');
  }
  if (f.keyUsage & KEY_USAGE.keyCertSign) {
    throw new X509SvidError('X509SVID_LEAF_KEY_USAGE', 'leaf certificate must not have keyCertSign as key usage');
  }
  if (f.keyUsage & KEY_USAGE.cRLSign) {
    throw new X509SvidError('X509SVID_LEAF_KEY_USAGE', 'leaf certificate must not have cRLSign as key usage');
  }
}

/** X.509-SVID signing certificate rules: CA flag set and keyCertSign set, no unsupported critical extension. */
export function checkSigningCertificate(cert: X509Certificate): void {
  const f = facts(cert);
  checkCriticalExtensions(cert, 'signing');
  if (!f.isCa)
    throw new X509SvidError('X509SVID_SIGNING_CERT_NOT_CA', 'signing certificate must have CA flag set to true');
  if (f.keyUsage === undefined || (f.keyUsage & KEY_USAGE.keyCertSign) === 0) {
    throw new X509SvidError(
      'X509SVID_SIGNING_CERT_KEY_USAGE',
      'signing certificate must have keyCertSign as key usage',
    );
  }
}

function sameKey(a: KeyObject, b: KeyObject): boolean {
  return a.equals(b);
}

/** An X.509-SVID: a SPIFFE ID, its certificate chain (leaf first) and the private key of the leaf. */
export class X509Svid {
  /** The SPIFFE ID in the leaf's URI SAN. */
  readonly id: SpiffeId;
  /** The chain: the leaf first, then any intermediates. */
  readonly certificates: readonly X509Certificate[];
  /** The leaf's private key. */
  readonly privateKey: KeyObject;
  /** Operator-supplied hint to tell several SVIDs apart (Workload API `hint`). */
  readonly hint: string;

  private constructor(id: SpiffeId, certificates: X509Certificate[], privateKey: KeyObject, hint: string) {
    this.id = id;
    this.certificates = Object.freeze(certificates);
    this.privateKey = privateKey;
    this.hint = hint;
    Object.freeze(this);
  }

  /**
   * Parses a certificate chain (PEM or DER, leaf first) and private key (PEM, or PKCS#8 DER), enforcing the
   * X.509-SVID rules for the leaf and the signing certificates, and that the key belongs to the leaf.
   * This does not check the chain against a bundle: see verifyX509Svid for peers.
   */
  static parse(
    certificates: CertificatesInput,
    privateKey: string | Uint8Array | KeyObject,
    options: { hint?: string } = {},
  ): X509Svid {
    const certs = wrapCertErrors(() => parseCertificates(certificates));
    const key = wrapCertErrors(() => parsePrivateKey(privateKey));
    const leaf = certs[0] as X509Certificate;
    const id = idFromCertificate(leaf);
    checkLeafCertificate(leaf);
    checkLeafId(id);
    for (const c of certs.slice(1)) checkSigningCertificate(c);
    let leafKey: KeyObject;
    try {
      leafKey = leaf.publicKey;
    } catch (err) {
      throw new X509SvidError(
        'X509SVID_INVALID',
        `cannot read the leaf certificate public key: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    if (!sameKey(leafKey, createPublicKey(key))) {
      throw new X509SvidError('X509SVID_KEY_MISMATCH', 'private key does not match the leaf certificate public key');
    }
    return new X509Svid(id, certs, key, options.hint ?? '');
  }

  /** The leaf certificate (the first of `certificates`). */
  get leaf(): X509Certificate {
    return this.certificates[0] as X509Certificate;
  }

  /** The leaf's notAfter. */
  get expiresAt(): Date {
    return new Date(this.leaf.validTo);
  }

  /** The leaf's notBefore. */
  get notBefore(): Date {
    return new Date(this.leaf.validFrom);
  }

  /** PEM-encoded chain (leaf first) and PKCS#8 private key. */
  toPem(): { certificates: string; privateKey: string } {
    return { certificates: certificatesToPem(this.certificates), privateKey: privateKeyToPem(this.privateKey) };
  }
}

function wrapCertErrors<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof X509SvidError) throw err;
    if (err instanceof SpiffeError) throw new X509SvidError('X509SVID_INVALID', err.message, { cause: err });
    throw err;
  }
}

/** Options of {@link verifyX509Svid}. */
export interface VerifyX509SvidOptions {
  /** Verification time (default: now). */
  now?: Date;
}

/** What {@link verifyX509Svid} returns for a chain that verified: the peer's ID and the chain it was verified by. */
export interface VerifiedX509Svid {
  /** The verified SPIFFE ID of the leaf. */
  id: SpiffeId;
  /** leaf, intermediates..., root (the root is one of the trust domain's bundle authorities). */
  verifiedChain: X509Certificate[];
}

/**
 * RFC 5280 §4.2.1.10 URI constraint on a URI's host: "host" matches that host only, ".host" matches its
 * subdomains only. A URI without a host name, or with an IP address as host, never matches.
 */
function uriMatches(uri: string, constraint: string): boolean {
  let host: string;
  try {
    host = new URL(uri).hostname.toLowerCase();
  } catch {
    return false;
  }
  if (host === '' || isIP(host) !== 0 || host.startsWith('[')) return false;
  const c = constraint.toLowerCase();
  if (c === '') return true;
  return c.startsWith('.') ? host.endsWith(c) && host.length > c.length : host === c;
}

/** The URI name constraints of `ca` applied to the URI SANs of every certificate below it in `path`. */
function checkNameConstraints(ca: X509Certificate, path: readonly X509Certificate[], role: string): void {
  const nc = facts(ca).nameConstraints;
  if (nc === undefined) return;
  if (nc.otherForms && nc.critical) {
    throw new X509SvidError(
      'X509SVID_UNSUPPORTED_CRITICAL_EXTENSION',
      `${role} certificate has name constraints on name forms other than URI, which are not supported`,
    );
  }
  for (const cert of path) {
    for (const uri of facts(cert).uris) {
      const excluded = nc.excludedUris.some((c) => uriMatches(uri, c));
      const permitted = nc.permittedUris.length === 0 || nc.permittedUris.some((c) => uriMatches(uri, c));
      if (excluded || !permitted) {
        throw new X509SvidError(
          'X509SVID_NAME_NOT_PERMITTED',
          `${role} certificate name constraints do not permit URI "${uri}"`,
        );
      }
    }
  }
}

function checkTime(cert: X509Certificate, now: Date, role: string): void {
  if (now < new Date(cert.validFrom)) {
    throw new X509SvidError('X509SVID_NOT_YET_VALID', `${role} certificate is not valid before ${cert.validFrom}`);
  }
  if (now > new Date(cert.validTo)) {
    throw new X509SvidError('X509SVID_EXPIRED', `${role} certificate expired at ${cert.validTo}`);
  }
}

/**
 * RFC 5280 path step: `issuer`'s subject is `child`'s issuer name and `issuer`'s key verifies `child`'s
 * signature. Key identifiers are not compared (OpenSSL's checkIssued refuses an authority key identifier that
 * does not match the issuer's subject key identifier; RFC 5280 path validation does not use them).
 */
function issued(child: X509Certificate, issuer: X509Certificate): boolean {
  return issuerNameMatches(child, issuer) && signedBy(child, issuer);
}

function signedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/**
 * Verifies a peer's X.509-SVID chain (leaf first, then any intermediates) against the bundle of the
 * **leaf's own trust domain** only, and enforces the X.509-SVID rules. A certificate for trust domain A that
 * chains to B's CA is rejected even when B is trusted for B. Signatures, names and validity use node:crypto.
 */
export function verifyX509Svid(
  chain: CertificatesInput,
  bundles: X509BundleSource,
  options: VerifyX509SvidOptions = {},
): VerifiedX509Svid {
  const now = options.now ?? new Date();
  const certs = wrapCertErrors(() => parseCertificates(chain));
  const leaf = certs[0] as X509Certificate;
  const id = idFromCertificate(leaf);
  checkLeafCertificate(leaf);
  checkLeafId(id);
  checkSignatureAlgorithm(leaf, 'leaf');
  checkTime(leaf, now, 'leaf');

  let roots: readonly X509Certificate[];
  try {
    roots = bundles.getX509BundleForTrustDomain(id.trustDomain).authorities;
  } catch (err) {
    if (err instanceof BundleError) {
      throw new X509SvidError('X509SVID_UNTRUSTED', `no X.509 bundle for trust domain "${id.trustDomain.name}"`, {
        cause: err,
      });
    }
    throw err;
  }
  const intermediates = certs.slice(1);
  // Remember the most specific reason a candidate path failed, to report something better than "untrusted".
  let reason: X509SvidError | undefined;

  const extend = (path: X509Certificate[]): X509Certificate[] | undefined => {
    const child = path[path.length - 1] as X509Certificate;
    // intermediates below the next certificate (for pathLenConstraint): path minus the leaf
    const below = path.length - 1;
    for (const root of roots) {
      if (!issued(child, root)) continue;
      try {
        checkTime(root, now, 'root');
        const f = facts(root);
        if (!f.isCa) throw new X509SvidError('X509SVID_SIGNING_CERT_NOT_CA', 'root certificate is not a CA');
        if (f.keyUsage !== undefined && (f.keyUsage & KEY_USAGE.keyCertSign) === 0) {
          throw new X509SvidError('X509SVID_SIGNING_CERT_KEY_USAGE', 'root certificate lacks keyCertSign');
        }
        if (f.pathLen !== undefined && below > f.pathLen) {
          throw new X509SvidError('X509SVID_PATH_LEN_EXCEEDED', 'root certificate path length constraint exceeded');
        }
        checkNameConstraints(root, path, 'root');
        return [...path, root];
      } catch (err) {
        if (err instanceof X509SvidError) reason = err;
        else throw err;
      }
    }
    if (path.length >= MAX_PATH_LENGTH - 1) return undefined;
    for (const inter of intermediates) {
      if (path.includes(inter)) continue;
      if (!issued(child, inter)) {
        // The signature matches but the names do not: report a signing-certificate rule it breaks, if any,
        // rather than a bare "untrusted".
        if (signedBy(child, inter)) {
          try {
            checkSigningCertificate(inter);
          } catch (err) {
            if (err instanceof X509SvidError) reason = err;
            else throw err;
          }
        }
        continue;
      }
      try {
        checkSigningCertificate(inter);
        checkSignatureAlgorithm(inter, 'intermediate');
        checkTime(inter, now, 'intermediate');
        const f = facts(inter);
        if (f.pathLen !== undefined && below > f.pathLen) {
          throw new X509SvidError('X509SVID_PATH_LEN_EXCEEDED', 'intermediate path length constraint exceeded');
        }
        checkNameConstraints(inter, path, 'intermediate');
      } catch (err) {
        if (err instanceof X509SvidError) {
          reason = err;
          continue;
        }
        throw err;
      }
      const found = extend([...path, inter]);
      if (found) return found;
    }
    return undefined;
  };

  const verifiedChain = extend([leaf]);
  if (!verifiedChain) {
    throw (
      reason ??
      new X509SvidError(
        'X509SVID_UNTRUSTED',
        `certificate is not signed by an authority of trust domain "${id.trustDomain.name}"`,
      )
    );
  }
  return { id, verifiedChain };
}

/** Like idFromCertificate, but returns undefined instead of throwing. */
export function tryIdFromCertificate(cert: X509Certificate): SpiffeId | undefined {
  try {
    return idFromCertificate(cert);
  } catch (err) {
    if (err instanceof X509SvidError || err instanceof SpiffeIdError) return undefined;
    throw err;
  }
}
