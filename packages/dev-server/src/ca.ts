// @peculiar/x509 builds certificates through tsyringe, which needs the Reflect metadata polyfill.
import 'reflect-metadata';
import { KeyObject, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';

type WC = typeof webcrypto;

type EcKeyGenParams = webcrypto.EcKeyGenParams;
type RsaHashedKeyGenParams = webcrypto.RsaHashedKeyGenParams;
type Algorithm = webcrypto.Algorithm;
type EcdsaParams = webcrypto.EcdsaParams;

import {
  JwtBundle,
  JwtSvid,
  SpiffeBundle,
  type SpiffeId,
  type TrustDomain,
  toSpiffeId,
  toTrustDomain,
  X509Bundle,
  X509Svid,
} from '@spiffe-ts/core';
import { SignJWT } from 'jose';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0] & WC);

/** Key algorithm for generated keys: ECDSA P-256 or P-384, or RSA 2048-bit. */
export type KeyType = 'ec-p256' | 'ec-p384' | 'rsa-2048';

const KEY_ALGS: Record<KeyType, { gen: EcKeyGenParams | RsaHashedKeyGenParams; sign: Algorithm | EcdsaParams }> = {
  'ec-p256': {
    gen: { name: 'ECDSA', namedCurve: 'P-256' } as EcKeyGenParams,
    sign: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams,
  },
  'ec-p384': {
    gen: { name: 'ECDSA', namedCurve: 'P-384' } as EcKeyGenParams,
    sign: { name: 'ECDSA', hash: 'SHA-384' } as EcdsaParams,
  },
  'rsa-2048': {
    gen: {
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    } as RsaHashedKeyGenParams,
    sign: { name: 'RSASSA-PKCS1-v1_5' },
  },
};

/** A generated key pair and its type. */
export interface KeyPair {
  /** The key algorithm. */
  type: KeyType;
  /** The WebCrypto key pair (extractable). */
  keys: webcrypto.CryptoKeyPair;
}

async function generateKeyPair(type: KeyType): Promise<KeyPair> {
  const spec = KEY_ALGS[type];
  const keys = (await webcrypto.subtle.generateKey(spec.gen, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  return { type, keys };
}

/** A certificate authority: its certificate and key. */
export interface Authority {
  /** The CA certificate. */
  readonly certificate: X509Certificate;
  /** The CA's key pair (its private key signs what it issues). */
  readonly keyPair: KeyPair;
}

/** An extra extension to add to a crafted certificate (value: the DER inside extnValue). */
export interface ExtraExtension {
  /** The extension's OID, dotted (e.g. `1.2.3.4`). */
  oid: string;
  /** Whether the extension is marked critical. */
  critical: boolean;
  /** The DER inside extnValue. */
  value: Uint8Array;
}

/** Options shared by leaves and authorities to craft defects for tests. */
export interface CraftOptions {
  /** Extra extensions (e.g. an unknown critical one). */
  extraExtensions?: ExtraExtension[];
  /** Signature digest (default: the signer key's usual one); 'SHA-1' crafts a weak signature. */
  signatureHash?: 'SHA-1' | 'SHA-256' | 'SHA-384' | 'SHA-512';
  /** Authority key identifier (hex) instead of the signer's key identifier; null omits the extension. */
  authorityKeyId?: string | null;
}

function signingAlgorithm(type: KeyType, hash: CraftOptions['signatureHash']): Algorithm | EcdsaParams {
  const sign = KEY_ALGS[type].sign;
  if (!hash) return sign;
  // RSASSA-PKCS1-v1_5 takes its hash from the key; @peculiar/x509 reads `hash` from the algorithm too.
  return { ...sign, hash } as EcdsaParams;
}

async function craftedExtensions(signer: KeyPair, options: CraftOptions): Promise<x509.Extension[]> {
  const out: x509.Extension[] = [];
  if (options.authorityKeyId === undefined) {
    out.push(await x509.AuthorityKeyIdentifierExtension.create(signer.keys.publicKey));
  } else if (options.authorityKeyId !== null) {
    out.push(new x509.AuthorityKeyIdentifierExtension(options.authorityKeyId));
  }
  for (const e of options.extraExtensions ?? []) out.push(new x509.Extension(e.oid, e.critical, e.value));
  return out;
}

/** Options to craft certificates, including deliberately defective ones for tests. */
export interface IssueX509Options extends CraftOptions {
  /** Lifetime from `notBefore` (default: the CA's svidTtlSeconds). */
  ttlSeconds?: number;
  /** Start of validity (default: 30 s ago). */
  notBefore?: Date;
  /** End of validity (default: `notBefore` + `ttlSeconds` + 30 s). */
  notAfter?: Date;
  /** Key type of the leaf (default 'ec-p256'). */
  keyType?: KeyType;
  /** Override the URI SANs (default: the one SPIFFE ID). */
  uris?: string[];
  /** Also add DNS SANs. */
  dnsNames?: string[];
  /** basicConstraints cA (default false for leaves). */
  isCa?: boolean;
  /** Key usage flags (@peculiar/x509 KeyUsageFlags; default digitalSignature|keyEncipherment|keyAgreement). */
  keyUsage?: number | null;
  /** Sign with this authority instead of the CA's current one (e.g. an intermediate or a foreign CA). */
  signer?: Authority;
  /** Chain certificates to append after the leaf (intermediates). */
  chain?: X509Certificate[];
}

/** Options of {@link createAuthority}. */
export interface CreateAuthorityOptions extends CraftOptions {
  /** Subject DN, e.g. `CN=my CA, O=acme` (default: a generated `CN=spiffe-ts dev CA …`). */
  subject?: string;
  /** Key type of the CA (default 'ec-p256'). */
  keyType?: KeyType;
  /** Lifetime from `notBefore` in seconds (default 86400). */
  ttlSeconds?: number;
  /** Start of validity (default: one minute ago). */
  notBefore?: Date;
  /** End of validity (default: `notBefore` + `ttlSeconds`). */
  notAfter?: Date;
  /** Set to false to create a "CA" without the cA flag. */
  isCa?: boolean;
  /** Key usage flags; default keyCertSign|cRLSign|digitalSignature. Null omits the extension. */
  keyUsage?: number | null;
  /** basicConstraints pathLenConstraint (default: none). */
  pathLength?: number;
  /** SPIFFE ID for the URI SAN (trust domain ID by default). */
  uri?: string | null;
  /** Parent authority; self-signed when absent. */
  parent?: Authority;
}

/** Key usage bit flags (@peculiar/x509 `KeyUsageFlags`), OR-ed together for the `keyUsage` options. */
export const KeyUsage = x509.KeyUsageFlags;

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] as number) & 0x7f; // positive
  return b.toString('hex');
}

/** Creates a certificate authority (self-signed root, or an intermediate when `parent` is given). */
export async function createAuthority(options: CreateAuthorityOptions = {}): Promise<Authority> {
  const keyType = options.keyType ?? 'ec-p256';
  const keyPair = await generateKeyPair(keyType);
  const notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = options.notAfter ?? new Date(notBefore.getTime() + (options.ttlSeconds ?? 86400) * 1000);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(options.isCa ?? true, options.pathLength, true),
    await x509.SubjectKeyIdentifierExtension.create(keyPair.keys.publicKey),
  ];
  const ku =
    options.keyUsage === undefined
      ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature
      : options.keyUsage;
  if (ku !== null) extensions.push(new x509.KeyUsagesExtension(ku, true));
  if (options.uri) extensions.push(new x509.SubjectAlternativeNameExtension([{ type: 'url', value: options.uri }]));
  const subject = options.subject ?? `CN=spiffe-ts dev CA ${serial().slice(0, 8)}, O=spiffe-ts`;
  let raw: ArrayBuffer;
  if (options.parent) {
    extensions.push(...(await craftedExtensions(options.parent.keyPair, options)));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject,
      issuer: options.parent.certificate.subject.split('\n').join(', '),
      notBefore,
      notAfter,
      signingAlgorithm: signingAlgorithm(options.parent.keyPair.type, options.signatureHash),
      publicKey: keyPair.keys.publicKey,
      signingKey: options.parent.keyPair.keys.privateKey,
      extensions,
    });
    raw = cert.rawData;
  } else {
    for (const e of options.extraExtensions ?? []) extensions.push(new x509.Extension(e.oid, e.critical, e.value));
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: subject,
      notBefore,
      notAfter,
      signingAlgorithm: signingAlgorithm(keyType, options.signatureHash),
      keys: keyPair.keys,
      extensions,
    });
    raw = cert.rawData;
  }
  return { certificate: new X509Certificate(Buffer.from(raw)), keyPair };
}

/** Issues a leaf certificate and key for the given SPIFFE ID, signed by `signer`. */
export async function issueX509SvidWith(
  signer: Authority,
  id: SpiffeId | string,
  options: IssueX509Options = {},
): Promise<X509Svid> {
  const keyPair = await generateKeyPair(options.keyType ?? 'ec-p256');
  const notBefore = options.notBefore ?? new Date(Date.now() - 30_000);
  const notAfter = options.notAfter ?? new Date(notBefore.getTime() + (options.ttlSeconds ?? 3600) * 1000 + 30_000);
  const names: x509.JsonGeneralName[] = (options.uris ?? [String(id)]).map((value) => ({ type: 'url', value }));
  for (const dns of options.dnsNames ?? []) names.push({ type: 'dns', value: dns });
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(options.isCa ?? false, undefined, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    await x509.SubjectKeyIdentifierExtension.create(keyPair.keys.publicKey),
    ...(await craftedExtensions(signer.keyPair, options)),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  const ku =
    options.keyUsage === undefined
      ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.keyAgreement
      : options.keyUsage;
  if (ku !== null) extensions.push(new x509.KeyUsagesExtension(ku, true));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'O=SPIRE, C=US',
    issuer: signer.certificate.subject.split('\n').join(', '),
    notBefore,
    notAfter,
    signingAlgorithm: signingAlgorithm(signer.keyPair.type, options.signatureHash),
    publicKey: keyPair.keys.publicKey,
    signingKey: signer.keyPair.keys.privateKey,
    extensions,
  });
  const leaf = new X509Certificate(Buffer.from(cert.rawData));
  const privateKey = KeyObject.from(keyPair.keys.privateKey);
  const chain = [leaf, ...(options.chain ?? [])];
  return unsafeX509Svid(chain, privateKey);
}

/**
 * Builds an X509Svid without enforcing the SVID rules, so tests can present defective certificates.
 * Valid inputs go through X509Svid.parse.
 */
function unsafeX509Svid(chain: X509Certificate[], privateKey: KeyObject): X509Svid {
  try {
    return X509Svid.parse(chain, privateKey);
  } catch {
    // Shape-compatible object for tests that need to present a defective chain.
    const leaf = chain[0] as X509Certificate;
    return Object.freeze({
      id: undefined as unknown as SpiffeId,
      certificates: chain,
      privateKey,
      hint: '',
      leaf,
      expiresAt: new Date(leaf.validTo),
      notBefore: new Date(leaf.validFrom),
      toPem: () => ({
        certificates: chain.map((c) => c.toString()).join(''),
        privateKey: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      }),
    }) as unknown as X509Svid;
  }
}

/** Options for {@link DevCa.create}. */
export interface DevCaOptions {
  /** The trust domain the CA issues for (a string is parsed; throws a SpiffeIdError if invalid). */
  trustDomain: TrustDomain | string;
  /** X.509-SVID lifetime (default 3600 s). */
  svidTtlSeconds?: number;
  /** JWT-SVID lifetime (default 300 s). */
  jwtTtlSeconds?: number;
  /** CA lifetime (default 1 day). */
  caTtlSeconds?: number;
  /** Key type of the CA and of issued X.509-SVIDs (default 'ec-p256'). */
  keyType?: KeyType;
}

interface JwtKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/**
 * An in-process certificate authority for one trust domain: issues X.509-SVIDs and JWT-SVIDs and can rotate
 * its X.509 and JWT authorities. Rotation keeps the previous authority in the bundle until `dropRetired()`,
 * like a real CA's overlap window.
 */
export class DevCa {
  /** The trust domain the CA issues for. */
  readonly trustDomain: TrustDomain;
  /** Lifetime of issued X.509-SVIDs, in seconds. */
  readonly svidTtlSeconds: number;
  /** Lifetime of issued JWT-SVIDs, in seconds. */
  readonly jwtTtlSeconds: number;
  /** Lifetime of the CA certificates it creates, in seconds. */
  readonly caTtlSeconds: number;
  /** Key type of the CA and of issued X.509-SVIDs. */
  readonly keyType: KeyType;
  #current!: Authority;
  #authorities: Authority[] = [];
  #jwtKey!: JwtKey;
  #jwtKeys: JwtKey[] = [];
  #sequence = 1;

  private constructor(options: DevCaOptions) {
    this.trustDomain = toTrustDomain(options.trustDomain);
    this.svidTtlSeconds = options.svidTtlSeconds ?? 3600;
    this.jwtTtlSeconds = options.jwtTtlSeconds ?? 300;
    this.caTtlSeconds = options.caTtlSeconds ?? 86400;
    this.keyType = options.keyType ?? 'ec-p256';
  }

  /** Creates a CA with a fresh X.509 authority and JWT signing key. */
  static async create(options: DevCaOptions): Promise<DevCa> {
    const ca = new DevCa(options);
    await ca.rotateX509Authority();
    await ca.rotateJwtAuthority();
    return ca;
  }

  /** The authority that signs new X.509-SVIDs. */
  get currentAuthority(): Authority {
    return this.#current;
  }

  /** Bumped on every change to the bundle (`spiffe_sequence`). */
  get sequence(): number {
    return this.#sequence;
  }

  /** Creates a new signing CA and makes it current; the old one stays trusted until dropRetired(). */
  async rotateX509Authority(): Promise<Authority> {
    const authority = await this.prepareX509Authority();
    this.activateX509Authority(authority);
    return authority;
  }

  /**
   * Phase one of a CA rotation (as SPIRE does it): the new authority joins the bundle but signs nothing yet,
   * so every peer can learn it before the first SVID it signed shows up.
   */
  async prepareX509Authority(): Promise<Authority> {
    const authority = await createAuthority({
      keyType: this.keyType,
      ttlSeconds: this.caTtlSeconds,
      uri: this.trustDomain.idString(),
      subject: `CN=${this.trustDomain.name} dev CA ${serial().slice(0, 8)}, O=spiffe-ts`,
    });
    this.#authorities.push(authority);
    if (!this.#current) this.#current = authority;
    this.#sequence++;
    return authority;
  }

  /** Phase two: a prepared authority starts signing new SVIDs. */
  activateX509Authority(authority: Authority): void {
    if (!this.#authorities.includes(authority)) throw new Error('authority was not prepared by this CA');
    this.#current = authority;
    this.#sequence++;
  }

  /** Creates a new JWT signing key and makes it current; the old one stays in the bundle until dropRetired(). */
  async rotateJwtAuthority(): Promise<string> {
    const kid = await this.prepareJwtAuthority();
    this.activateJwtAuthority(kid);
    return kid;
  }

  /** Publishes a new JWT key in the bundle without signing with it yet; returns its key ID. */
  async prepareJwtAuthority(): Promise<string> {
    const { privateKey, publicKey } = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ]);
    const key: JwtKey = {
      kid: randomBytes(16).toString('base64url'),
      privateKey: KeyObject.from(privateKey),
      publicKey: KeyObject.from(publicKey),
    };
    this.#jwtKeys.push(key);
    if (!this.#jwtKey) this.#jwtKey = key;
    this.#sequence++;
    return key.kid;
  }

  /** Starts signing JWT-SVIDs with a prepared key. */
  activateJwtAuthority(kid: string): void {
    const key = this.#jwtKeys.find((k) => k.kid === kid);
    if (!key) throw new Error(`JWT key ${kid} was not prepared by this CA`);
    this.#jwtKey = key;
    this.#sequence++;
  }

  /** Removes every X.509 and JWT authority except the current ones. */
  dropRetired(): void {
    this.#authorities = [this.#current];
    this.#jwtKeys = [this.#jwtKey];
    this.#sequence++;
  }

  /** The X.509 bundle: every X.509 authority not yet dropped, current and retired. */
  x509Bundle(): X509Bundle {
    return new X509Bundle(
      this.trustDomain,
      this.#authorities.map((a) => a.certificate),
    );
  }

  /** The JWT bundle: every JWT signing key not yet dropped, by key ID. */
  jwtBundle(): JwtBundle {
    return JwtBundle.fromKeys(this.trustDomain, Object.fromEntries(this.#jwtKeys.map((k) => [k.kid, k.publicKey])));
  }

  /** The SPIFFE bundle (both kinds of authority) with the current sequence number and a refresh hint of half the SVID lifetime. */
  spiffeBundle(): SpiffeBundle {
    const x = this.x509Bundle();
    const j = this.jwtBundle();
    return new SpiffeBundle({
      trustDomain: this.trustDomain,
      x509Authorities: x.authorities,
      jwtAuthorities: j.authorities.values(),
      sequenceNumber: this.#sequence,
      refreshHintSeconds: Math.max(1, Math.floor(this.svidTtlSeconds / 2)),
    });
  }

  /** Issues an X.509-SVID for an ID of this trust domain (options may craft defects for tests). */
  async issueX509Svid(id: SpiffeId | string, options: IssueX509Options = {}): Promise<X509Svid> {
    return issueX509SvidWith(options.signer ?? this.#current, id, {
      ttlSeconds: this.svidTtlSeconds,
      ...options,
    });
  }

  /** Issues a JWT-SVID signed with the current JWT authority. */
  async issueJwtSvid(
    id: SpiffeId | string,
    audience: string | string[],
    options: {
      ttlSeconds?: number;
      /** Absolute expiry (overrides ttlSeconds); null omits `exp` (a defective token). */
      expiresAt?: Date | null;
      issuedAt?: Date;
      extraClaims?: Record<string, unknown>;
      header?: Record<string, unknown>;
    } = {},
  ): Promise<JwtSvid> {
    const spiffeId = toSpiffeId(id);
    const now = options.issuedAt ?? new Date();
    const exp =
      options.expiresAt === null
        ? undefined
        : (options.expiresAt ?? new Date(now.getTime() + (options.ttlSeconds ?? this.jwtTtlSeconds) * 1000));
    const jwt = new SignJWT({ ...options.extraClaims })
      .setProtectedHeader({ alg: 'ES256', kid: this.#jwtKey.kid, typ: 'JWT', ...options.header })
      .setSubject(spiffeId.toString())
      .setAudience(audience)
      .setIssuedAt(Math.floor(now.getTime() / 1000));
    if (exp) jwt.setExpirationTime(Math.floor(exp.getTime() / 1000));
    const token = await jwt.sign(this.#jwtKey.privateKey);
    return new JwtSvid({
      id: spiffeId,
      audience: Array.isArray(audience) ? audience : [audience],
      expiresAt: exp ?? new Date(0),
      claims: {
        sub: spiffeId.toString(),
        aud: audience,
        iat: Math.floor(now.getTime() / 1000),
        ...(exp ? { exp: Math.floor(exp.getTime() / 1000) } : {}),
      },
      token,
    });
  }

  /** Current JWT signing key (for tests that need to sign by hand). */
  get jwtSigningKey(): { kid: string; privateKey: KeyObject; publicKey: KeyObject } {
    return { ...this.#jwtKey };
  }
}
