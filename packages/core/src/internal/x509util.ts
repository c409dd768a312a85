import { createHash, createPrivateKey, KeyObject, X509Certificate } from 'node:crypto';
import { id_md2, id_md5, id_mgf1, id_RSASSA_PSS, id_sha1, RsaSaPssParams } from '@peculiar/asn1-rsa';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  BasicConstraints,
  Certificate,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_nameConstraints,
  id_ce_subjectAltName,
  KeyUsage,
  Name,
  NameConstraints,
  SubjectAlternativeName,
} from '@peculiar/asn1-x509';
import { CertificateError } from '../errors.js';

// PEM encapsulation boundaries (RFC 7468), found in one linear pass. Blocks are paired afterwards without
// rescanning the text: a single lazy BEGIN...END regex is quadratic on crafted input (a megabyte of BEGIN lines
// without an END took seconds).
const PEM_BOUNDARY = /-----(BEGIN|END) ([A-Z0-9 ]{1,64})-----/g;

/** Input accepted wherever certificates are read: PEM text, DER bytes (one or concatenated), or parsed certs. */
export type CertificatesInput = string | Uint8Array | ReadonlyArray<X509Certificate | Uint8Array | string>;

/** Returns the decoded bodies of the PEM blocks of the given type, in order. */
export function pemBlocks(pem: string, type: string): Buffer[] {
  const marks = [...pem.matchAll(PEM_BOUNDARY)].map((m) => ({
    begin: m[1] === 'BEGIN',
    label: m[2] as string,
    start: m.index,
    end: m.index + m[0].length,
  }));
  // For each BEGIN, the index of the first later END with the same label (-1 if none), right to left.
  const nextEnd: number[] = new Array(marks.length).fill(-1);
  const lastEnd = new Map<string, number>();
  for (let i = marks.length - 1; i >= 0; i--) {
    const m = marks[i] as (typeof marks)[number];
    if (m.begin) nextEnd[i] = lastEnd.get(m.label) ?? -1;
    else lastEnd.set(m.label, i);
  }
  const out: Buffer[] = [];
  for (let i = 0; i < marks.length; ) {
    const m = marks[i] as (typeof marks)[number];
    const j = nextEnd[i] as number;
    if (!m.begin || j === -1) {
      i++;
      continue;
    }
    if (m.label === type) {
      const body = pem.slice(m.end, (marks[j] as (typeof marks)[number]).start);
      out.push(Buffer.from(body.replace(/\s+/g, ''), 'base64'));
    }
    i = j + 1;
  }
  return out;
}

/**
 * Concatenated DER certificates (as the Workload API sends chains and bundles), split by OpenSSL itself: it
 * reads one certificate from the front and leaves what follows, and that certificate's encoding says how
 * many bytes it took. Those bytes must be exactly its encoding (DER has only one), else the input is refused,
 * as are trailing bytes that are not a certificate. Decoding the whole chain with asn1js only to find the
 * boundaries cost more than OpenSSL's own parse, on every rotation (bench/README.md).
 */
function certificatesFromDer(der: Uint8Array): X509Certificate[] {
  const buf = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const out: X509Certificate[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const view = buf.subarray(offset);
    const cert = certFromDer(view);
    const raw = cert.raw;
    if (raw.length === 0 || !view.subarray(0, raw.length).equals(raw)) {
      throw new CertificateError('CERTIFICATE_INVALID', `malformed DER at byte ${offset}: not a DER certificate`);
    }
    out.push(cert);
    offset += raw.length;
  }
  return out;
}

function certFromDer(der: Uint8Array): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (err) {
    throw new CertificateError('CERTIFICATE_INVALID', `invalid certificate: ${(err as Error).message}`, { cause: err });
  }
}

/** Parses one or more certificates from PEM or DER (concatenated DER allowed). Never returns an empty list. */
export function parseCertificates(input: CertificatesInput): X509Certificate[] {
  let certs: X509Certificate[];
  if (typeof input === 'string') {
    const ders = pemBlocks(input, 'CERTIFICATE');
    certs = ders.map(certFromDer);
  } else if (input instanceof Uint8Array) {
    if (input.byteLength === 0) certs = [];
    else if (looksLikePem(input)) return parseCertificates(Buffer.from(input).toString('utf8'));
    else certs = certificatesFromDer(input);
  } else if (Array.isArray(input)) {
    certs = (input as ReadonlyArray<X509Certificate | Uint8Array | string>).flatMap((c) =>
      c instanceof X509Certificate ? [c] : parseCertificates(c),
    );
  } else {
    throw new CertificateError('CERTIFICATE_INVALID', 'certificates must be PEM text, DER bytes or an array');
  }
  if (certs.length === 0) throw new CertificateError('CERTIFICATE_INVALID', 'no certificates found in input');
  return certs;
}

function looksLikePem(bytes: Uint8Array): boolean {
  // DER certificates start with a SEQUENCE tag (0x30); PEM with text, which may carry explanatory text of any
  // length before the first block (openssl -text output, "Bag Attributes", CA bundle headers).
  return bytes[0] !== 0x30 && Buffer.from(bytes).toString('latin1').includes('-----BEGIN');
}

/** Parses a private key from PEM (PKCS#8, SEC1 or PKCS#1) or DER (PKCS#8). */
export function parsePrivateKey(input: string | Uint8Array | KeyObject): KeyObject {
  if (input instanceof KeyObject) {
    if (input.type !== 'private') throw new CertificateError('PRIVATE_KEY_INVALID', 'key object is not a private key');
    return input;
  }
  try {
    if (typeof input === 'string') return createPrivateKey({ key: input, format: 'pem' });
    if (looksLikePem(input)) return createPrivateKey({ key: Buffer.from(input).toString('utf8'), format: 'pem' });
    return createPrivateKey({ key: Buffer.from(input), format: 'der', type: 'pkcs8' });
  } catch (err) {
    throw new CertificateError('PRIVATE_KEY_INVALID', `invalid private key: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

export function toPem(der: Uint8Array, type: string): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${type}-----\n${lines.join('\n')}\n-----END ${type}-----\n`;
}

/** Certificates as concatenated PEM blocks, in the order given. */
export function certificatesToPem(certs: readonly X509Certificate[]): string {
  return certs.map((c) => toPem(c.raw, 'CERTIFICATE')).join('');
}

/** A private key as unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). */
export function privateKeyToPem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}

/** The extension facts X.509-SVID rules need, read with a schema-driven ASN.1 library. */
export interface CertificateFacts {
  /** URI subject alternative names, in order. */
  readonly uris: readonly string[];
  /** basicConstraints cA (false when the extension is absent). */
  readonly isCa: boolean;
  /** basicConstraints pathLenConstraint, when present. */
  readonly pathLen: number | undefined;
  /** Key usage flags bitmask (see KEY_USAGE), or undefined when the extension is absent. */
  readonly keyUsage: number | undefined;
  /** OIDs of critical extensions not in PROCESSED_EXTENSIONS (RFC 5280 §4.2: such a certificate is refused). */
  readonly unknownCriticalExtensions: readonly string[];
  /** OID of the certificate's signatureAlgorithm. */
  readonly signatureAlgorithm: string;
  /** Name of the signature algorithm when it rests on a broken digest (see weakSignatureName), else undefined. */
  readonly weakSignature: string | undefined;
  /** URI name constraints (RFC 5280 §4.2.1.10), when the certificate has a nameConstraints extension. */
  readonly nameConstraints: UriNameConstraints | undefined;
}

/** The URI subtrees of a nameConstraints extension; `otherForms` when it also constrains other name forms. */
export interface UriNameConstraints {
  readonly permittedUris: readonly string[];
  readonly excludedUris: readonly string[];
  readonly otherForms: boolean;
  readonly critical: boolean;
}

/**
 * The extensions the X.509-SVID checks process, so they may be critical: subjectAltName (URI SAN),
 * basicConstraints (cA, pathLenConstraint), keyUsage, and extKeyUsage (recognised; the X.509-SVID profile
 * allows it to be critical, and, as in go-spiffe, no particular purpose is required of it), and nameConstraints
 * (URI subtrees; a critical one constraining other name forms is refused when the path is validated).
 */
export const PROCESSED_EXTENSIONS: ReadonlySet<string> = new Set([
  id_ce_subjectAltName,
  id_ce_basicConstraints,
  id_ce_keyUsage,
  id_ce_extKeyUsage,
  id_ce_nameConstraints,
]);

/** Signature algorithms refused on every certificate below the trust anchor (MD2, MD4, MD5 and SHA-1 digests). */
export const WEAK_SIGNATURE_ALGORITHMS: ReadonlyMap<string, string> = new Map([
  ['1.2.840.113549.1.1.2', 'md2WithRSAEncryption'],
  ['1.2.840.113549.1.1.3', 'md4WithRSAEncryption'],
  ['1.2.840.113549.1.1.4', 'md5WithRSAEncryption'],
  ['1.2.840.113549.1.1.5', 'sha1WithRSAEncryption'],
  ['1.3.14.3.2.29', 'sha1WithRSASignature'],
  ['1.2.840.10045.4.1', 'ecdsa-with-SHA1'],
  ['1.2.840.10040.4.3', 'dsa-with-sha1'],
]);

const WEAK_DIGESTS: ReadonlySet<string> = new Set([id_md2, '1.2.840.113549.2.4', id_md5, id_sha1]);

/**
 * The name of a signature algorithm that rests on a broken digest, or undefined. RSASSA-PSS names its digests
 * in its parameters, and both default to SHA-1 when absent (RFC 4055 §3.1), so they are read from there.
 */
function weakSignatureName(alg: { algorithm: string; parameters?: ArrayBuffer | null }): string | undefined {
  const weak = WEAK_SIGNATURE_ALGORITHMS.get(alg.algorithm);
  if (weak !== undefined || alg.algorithm !== id_RSASSA_PSS) return weak;
  if (!alg.parameters) return 'RSASSA-PSS with default (SHA-1) parameters';
  const pss = AsnConvert.parse(alg.parameters, RsaSaPssParams);
  if (WEAK_DIGESTS.has(pss.hashAlgorithm.algorithm)) return `RSASSA-PSS with ${pss.hashAlgorithm.algorithm}`;
  const mgf = pss.maskGenAlgorithm;
  if (mgf.algorithm === id_mgf1 && mgf.parameters) {
    const mgfHash = AsnConvert.parse(mgf.parameters, AlgorithmIdentifier).algorithm;
    if (WEAK_DIGESTS.has(mgfHash)) return `RSASSA-PSS with MGF1 over ${mgfHash}`;
  }
  return undefined;
}

export const KEY_USAGE = {
  digitalSignature: 1,
  nonRepudiation: 2,
  keyEncipherment: 4,
  dataEncipherment: 8,
  keyAgreement: 16,
  keyCertSign: 32,
  cRLSign: 64,
} as const;

// One schema parse per certificate object serves both its extension facts and its names: a full ASN.1 parse
// costs about as much as OpenSSL's own (bench/README.md), and verifying a new chain needs both for every
// certificate. The outcome is kept per X509Certificate (immutable bytes, so the same answer every time).
interface Decoded {
  /** The facts, or why they cannot be read (a fresh CertificateError is thrown from it on each call). */
  readonly facts: CertificateFacts | { readonly message: string; readonly cause: unknown };
  /** The parsed subject and issuer Names, until `namesDer` is built from them; null when it does not parse. */
  names: { readonly subject: Name; readonly issuer: Name } | null;
  /** The Names as DER, built on first use (most certificates' names are compared once per path step). */
  namesDer?: NamesDer | null;
}
type NamesDer = { readonly subject: Buffer; readonly issuer: Buffer };
const decodedCache = new WeakMap<X509Certificate, Decoded>();

function decoded(cert: X509Certificate): Decoded {
  let result = decodedCache.get(cert);
  if (!result) {
    result = decode(cert);
    decodedCache.set(cert, result);
  }
  return result;
}

function decode(cert: X509Certificate): Decoded {
  let parsed: Certificate;
  try {
    parsed = AsnConvert.parse(cert.raw, Certificate);
  } catch (err) {
    return { facts: { message: `cannot parse certificate: ${(err as Error).message}`, cause: err }, names: null };
  }
  const names = { subject: parsed.tbsCertificate.subject, issuer: parsed.tbsCertificate.issuer };
  try {
    return { facts: factsOf(parsed), names };
  } catch (err) {
    if (!(err instanceof CertificateError)) throw err;
    return { facts: { message: err.message, cause: err.cause }, names };
  }
}

function isFacts(f: Decoded['facts']): f is CertificateFacts {
  return 'uris' in f;
}

/** The extension facts of a certificate (throws CertificateError when it or an extension is malformed). */
export function certificateFacts(cert: X509Certificate): CertificateFacts {
  const { facts } = decoded(cert);
  if (isFacts(facts)) return facts;
  throw new CertificateError('CERTIFICATE_INVALID', facts.message, { cause: facts.cause });
}

function factsOf(parsed: Certificate): CertificateFacts {
  const uris: string[] = [];
  let isCa = false;
  let pathLen: number | undefined;
  let keyUsage: number | undefined;
  const unknownCriticalExtensions: string[] = [];
  let nameConstraints: UriNameConstraints | undefined;
  for (const ext of parsed.tbsCertificate.extensions ?? []) {
    if (ext.critical && !PROCESSED_EXTENSIONS.has(ext.extnID)) unknownCriticalExtensions.push(ext.extnID);
    try {
      if (ext.extnID === id_ce_subjectAltName) {
        const san = AsnConvert.parse(ext.extnValue, SubjectAlternativeName);
        for (const name of san) {
          if (name.uniformResourceIdentifier !== undefined) uris.push(name.uniformResourceIdentifier);
        }
      } else if (ext.extnID === id_ce_basicConstraints) {
        const bc = AsnConvert.parse(ext.extnValue, BasicConstraints);
        isCa = bc.cA === true;
        pathLen = bc.pathLenConstraint;
      } else if (ext.extnID === id_ce_keyUsage) {
        keyUsage = AsnConvert.parse(ext.extnValue, KeyUsage).toNumber();
      } else if (ext.extnID === id_ce_nameConstraints) {
        const nc = AsnConvert.parse(ext.extnValue, NameConstraints);
        let otherForms = false;
        const uris = (subtrees: Iterable<{ base: { uniformResourceIdentifier?: string } }> | undefined) => {
          const out: string[] = [];
          for (const t of subtrees ?? []) {
            if (t.base.uniformResourceIdentifier !== undefined) out.push(t.base.uniformResourceIdentifier);
            else otherForms = true;
          }
          return Object.freeze(out);
        };
        const permittedUris = uris(nc.permittedSubtrees);
        const excludedUris = uris(nc.excludedSubtrees);
        nameConstraints = Object.freeze({ permittedUris, excludedUris, otherForms, critical: ext.critical === true });
      }
    } catch (err) {
      throw new CertificateError('CERTIFICATE_INVALID', `malformed certificate extension ${ext.extnID}`, {
        cause: err,
      });
    }
  }
  let weakSignature: string | undefined;
  try {
    weakSignature = weakSignatureName(parsed.signatureAlgorithm);
  } catch (err) {
    throw new CertificateError('CERTIFICATE_INVALID', 'malformed signature algorithm parameters', { cause: err });
  }
  return Object.freeze({
    uris: Object.freeze(uris),
    isCa,
    pathLen,
    keyUsage,
    unknownCriticalExtensions: Object.freeze(unknownCriticalExtensions),
    signatureAlgorithm: parsed.signatureAlgorithm.algorithm,
    weakSignature,
    nameConstraints,
  });
}

function nameDer(name: Name): Buffer {
  return Buffer.from(AsnConvert.serialize(name));
}

/**
 * Whether `child` names `issuer` as its issuer: child's issuer Name equal to issuer's subject Name, compared
 * as DER (as Go's path builder does). Key identifiers are not consulted (RFC 5280 path validation does not use
 * them). False when either certificate cannot be parsed.
 */
export function issuerNameMatches(child: X509Certificate, issuer: X509Certificate): boolean {
  const c = certificateNames(child);
  const i = certificateNames(issuer);
  return c !== null && i !== null && c.issuer.equals(i.subject);
}

function certificateNames(cert: X509Certificate): NamesDer | null {
  const d = decoded(cert);
  if (d.namesDer === undefined) {
    d.namesDer = d.names ? namesAsDer(d.names) : null;
    d.names = null; // the parsed trees are not needed once serialized
  }
  return d.namesDer;
}

function namesAsDer(names: { readonly subject: Name; readonly issuer: Name }): NamesDer | null {
  try {
    return { subject: nameDer(names.subject), issuer: nameDer(names.issuer) };
  } catch {
    return null;
  }
}

/**
 * A cache key for a sequence of byte strings: SHA-256 over each part with its length in front, so no two
 * different sequences share a key. Used by the caches of verified chains and parsed Workload API material.
 * @internal
 */
export function partsKey(parts: Iterable<Uint8Array | string>): string {
  const h = createHash('sha256');
  const len = Buffer.alloc(4);
  for (const p of parts) {
    const b = typeof p === 'string' ? Buffer.from(p) : p;
    len.writeUInt32BE(b.length);
    h.update(len).update(b);
  }
  return h.digest('base64');
}
