import { SpiffeIdError } from '../errors.js';

const SCHEME_PREFIX = 'spiffe://';

/** SPIFFE ID standard: trust domain names MUST NOT exceed 255 bytes. */
export const MAX_TRUST_DOMAIN_LENGTH = 255;

/** SPIFFE ID standard: URIs up to 2048 bytes MUST be supported; longer ones are refused here. */
export const MAX_SPIFFE_ID_LENGTH = 2048;

function isTrustDomainChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x2e || // .
    c === 0x2d || // -
    c === 0x5f // _
  );
}

function isPathSegmentChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x2e || // .
    c === 0x2d || // -
    c === 0x5f // _
  );
}

function requireString(value: unknown, what: string): string {
  if (typeof value !== 'string') {
    throw new SpiffeIdError('SPIFFEID_NOT_STRING', `${what} must be a string, got ${typeof value}`);
  }
  return value;
}

function validateTrustDomainName(name: string): void {
  if (name.length === 0) {
    throw new SpiffeIdError('SPIFFEID_MISSING_TRUST_DOMAIN', 'trust domain is missing');
  }
  if (name.length > MAX_TRUST_DOMAIN_LENGTH) {
    throw new SpiffeIdError(
      'SPIFFEID_TRUST_DOMAIN_TOO_LONG',
      `trust domain is longer than ${MAX_TRUST_DOMAIN_LENGTH} characters`,
    );
  }
  for (let i = 0; i < name.length; i++) {
    if (!isTrustDomainChar(name.charCodeAt(i))) {
      throw new SpiffeIdError(
        'SPIFFEID_BAD_TRUST_DOMAIN_CHAR',
        'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
      );
    }
  }
}

/** Validates a SPIFFE ID path ("" or "/seg/seg"). Throws SpiffeIdError. */
export function validatePath(path: string): void {
  requireString(path, 'path');
  if (path === '') return;
  if (path.charCodeAt(0) !== 0x2f) {
    throw new SpiffeIdError('SPIFFEID_NO_LEADING_SLASH', 'path must have a leading slash');
  }
  let segStart = 0;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x2f) {
      checkSegment(path.slice(segStart, i), i === 0);
      segStart = i;
      continue;
    }
    if (!isPathSegmentChar(c)) {
      throw new SpiffeIdError(
        'SPIFFEID_BAD_PATH_SEGMENT_CHAR',
        'path segment characters are limited to letters, numbers, dots, dashes, and underscores',
      );
    }
  }
  const last = path.slice(segStart);
  if (last === '/') {
    throw new SpiffeIdError('SPIFFEID_TRAILING_SLASH', 'path cannot have a trailing slash');
  }
  checkSegment(last, false);
}

// `seg` includes its leading slash ("/x"); the first call (before the first slash) has nothing to check.
function checkSegment(seg: string, first: boolean): void {
  if (first) return;
  if (seg === '/') throw new SpiffeIdError('SPIFFEID_EMPTY_SEGMENT', 'path cannot contain empty segments');
  if (seg === '/.' || seg === '/..') {
    throw new SpiffeIdError('SPIFFEID_DOT_SEGMENT', 'path cannot contain dot segments');
  }
}

/** Validates one path segment (no slashes). */
function validateSegment(segment: string): void {
  requireString(segment, 'path segment');
  if (segment === '') throw new SpiffeIdError('SPIFFEID_EMPTY_SEGMENT', 'path cannot contain empty segments');
  if (segment === '.' || segment === '..') {
    throw new SpiffeIdError('SPIFFEID_DOT_SEGMENT', 'path cannot contain dot segments');
  }
  for (let i = 0; i < segment.length; i++) {
    if (!isPathSegmentChar(segment.charCodeAt(i))) {
      throw new SpiffeIdError(
        'SPIFFEID_BAD_PATH_SEGMENT_CHAR',
        'path segment characters are limited to letters, numbers, dots, dashes, and underscores',
      );
    }
  }
}

/** A SPIFFE trust domain, e.g. `example.org`. Immutable. */
export class TrustDomain {
  /** The trust domain name, e.g. `example.org`. */
  readonly name: string;

  private constructor(name: string) {
    this.name = name;
    Object.freeze(this);
  }

  /**
   * Parses a trust domain name (`example.org`) or a trust domain SPIFFE ID (`spiffe://example.org`, or any
   * SPIFFE ID, whose trust domain is taken), like go-spiffe's TrustDomainFromString.
   */
  static parse(value: string): TrustDomain {
    requireString(value, 'trust domain');
    if (value === '') throw new SpiffeIdError('SPIFFEID_MISSING_TRUST_DOMAIN', 'trust domain is missing');
    if (value.includes(':/')) return SpiffeId.parse(value).trustDomain;
    validateTrustDomainName(value);
    return new TrustDomain(value);
  }

  /** @internal already-validated name */
  static fromValidated(name: string): TrustDomain {
    return new TrustDomain(name);
  }

  /** `spiffe://<name>` */
  idString(): string {
    return `${SCHEME_PREFIX}${this.name}`;
  }

  /** The SPIFFE ID of the trust domain itself (`spiffe://<name>`). */
  id(): SpiffeId {
    return SpiffeId.fromPath(this, '');
  }

  /** True when `other` has the same name; a string is compared with the name as is (not parsed). */
  equals(other: TrustDomain | string): boolean {
    return typeof other === 'string' ? other === this.name : other.name === this.name;
  }

  /** The trust domain name, e.g. `example.org` (not the `spiffe://` form: see {@link TrustDomain.idString}). */
  toString(): string {
    return this.name;
  }

  /** The trust domain name, so that `JSON.stringify` writes a string. */
  toJSON(): string {
    return this.name;
  }
}

/** A SPIFFE ID, e.g. `spiffe://example.org/service/orders`. Immutable. */
export class SpiffeId {
  /** The trust domain the ID belongs to. */
  readonly trustDomain: TrustDomain;
  /** The path, `""` or starting with `/`. */
  readonly path: string;
  // Built once: IDs are compared by their string on every authorized request (matchers, allowlists), and
  // rebuilding it each time made a fresh string to flatten and compare per check.
  readonly #string: string;

  private constructor(trustDomain: TrustDomain, path: string) {
    this.trustDomain = trustDomain;
    this.path = path;
    this.#string = `${SCHEME_PREFIX}${trustDomain.name}${path}`;
    Object.freeze(this);
  }

  /** Parses and validates a SPIFFE ID string exactly per the SPIFFE ID standard. */
  static parse(value: string): SpiffeId {
    requireString(value, 'SPIFFE ID');
    if (value === '') throw new SpiffeIdError('SPIFFEID_EMPTY', 'SPIFFE ID cannot be empty');
    if (value.length > MAX_SPIFFE_ID_LENGTH) {
      throw new SpiffeIdError('SPIFFEID_TOO_LONG', `SPIFFE ID is longer than ${MAX_SPIFFE_ID_LENGTH} bytes`);
    }
    if (!value.startsWith(SCHEME_PREFIX)) {
      throw new SpiffeIdError('SPIFFEID_WRONG_SCHEME', 'scheme is missing or invalid');
    }
    const rest = value.slice(SCHEME_PREFIX.length);
    const slash = rest.indexOf('/');
    const tdName = slash === -1 ? rest : rest.slice(0, slash);
    const path = slash === -1 ? '' : rest.slice(slash);
    validateTrustDomainName(tdName);
    validatePath(path);
    return new SpiffeId(TrustDomain.fromValidated(tdName), path);
  }

  /** Returns the parsed ID, or undefined if invalid. */
  static tryParse(value: unknown): SpiffeId | undefined {
    if (typeof value !== 'string') return undefined;
    try {
      return SpiffeId.parse(value);
    } catch {
      return undefined;
    }
  }

  /** Builds an ID from a trust domain and a full path (`/a/b`). */
  static fromPath(trustDomain: TrustDomain | string, path: string): SpiffeId {
    const td = typeof trustDomain === 'string' ? TrustDomain.parse(trustDomain) : trustDomain;
    validatePath(path);
    const id = new SpiffeId(td, path);
    if (id.toString().length > MAX_SPIFFE_ID_LENGTH) {
      throw new SpiffeIdError('SPIFFEID_TOO_LONG', `SPIFFE ID is longer than ${MAX_SPIFFE_ID_LENGTH} bytes`);
    }
    return id;
  }

  /** Builds an ID from path segments: `fromSegments('example.org', 'service', 'orders')`. */
  static fromSegments(trustDomain: TrustDomain | string, ...segments: string[]): SpiffeId {
    for (const s of segments) validateSegment(s);
    return SpiffeId.fromPath(trustDomain, segments.map((s) => `/${s}`).join(''));
  }

  /** True when this ID belongs to the given trust domain. */
  memberOf(trustDomain: TrustDomain | string): boolean {
    return this.trustDomain.equals(typeof trustDomain === 'string' ? TrustDomain.parse(trustDomain).name : trustDomain);
  }

  /** Returns a new ID with extra path segments appended. */
  appendSegments(...segments: string[]): SpiffeId {
    for (const s of segments) validateSegment(s);
    return SpiffeId.fromPath(this.trustDomain, this.path + segments.map((s) => `/${s}`).join(''));
  }

  /** True when both IDs are the same string; a string is compared as is (not parsed or normalized). */
  equals(other: SpiffeId | string): boolean {
    return this.toString() === (typeof other === 'string' ? other : other.toString());
  }

  /** The ID as a URI, e.g. `spiffe://example.org/service/orders`. */
  toString(): string {
    return this.#string;
  }

  /** The ID as a URI string, so that `JSON.stringify` writes a string. */
  toJSON(): string {
    return this.toString();
  }
}

/** Accepts a SpiffeId or a string and returns a validated SpiffeId. */
export function toSpiffeId(value: SpiffeId | string): SpiffeId {
  return value instanceof SpiffeId ? value : SpiffeId.parse(value);
}

/** Accepts a TrustDomain or a string and returns a validated TrustDomain. */
export function toTrustDomain(value: TrustDomain | string): TrustDomain {
  return value instanceof TrustDomain ? value : TrustDomain.parse(value);
}
