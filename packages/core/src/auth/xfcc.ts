import { SpiffeError } from '../errors.js';
import { type SpiffeId, toSpiffeId } from '../spiffeid/id.js';

/** The longest `x-forwarded-client-cert` value parsed (longer ones are refused as XFCC_MALFORMED). */
export const MAX_XFCC_LENGTH = 64 * 1024;
/** The most elements (proxy hops) an `x-forwarded-client-cert` value may have. */
export const MAX_XFCC_ELEMENTS = 32;

/** A malformed `x-forwarded-client-cert` value, or one whose nearest element names no single SPIFFE ID. */
export class XfccError extends SpiffeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('XFCC_MALFORMED', message, options);
  }
}

/**
 * One element of an `x-forwarded-client-cert` header: what one proxy says about the client certificate it
 * verified (Envoy's format). Values are as sent, with quoting removed; `Cert` and `Chain` stay URL-encoded.
 */
export interface XfccElement {
  /** `By`: the URI SAN of the certificate of the proxy that added the element. */
  readonly by?: string;
  /** `Hash`: the SHA-256 of the client certificate, lower-case hex. */
  readonly hash?: string;
  /** `Cert`: the URL-encoded PEM of the client certificate. */
  readonly cert?: string;
  /** `Chain`: the URL-encoded PEM of the client certificate chain. */
  readonly chain?: string;
  /** `Subject`: the client certificate's subject. */
  readonly subject?: string;
  /** `URI`: the client certificate's URI SANs, in order. */
  readonly uri: readonly string[];
  /** `DNS`: the client certificate's DNS SANs, in order. */
  readonly dns: readonly string[];
}

type SingleKey = 'by' | 'hash' | 'cert' | 'chain' | 'subject';
const KEYS: Readonly<Record<string, SingleKey | 'uri' | 'dns'>> = {
  by: 'by',
  hash: 'hash',
  cert: 'cert',
  chain: 'chain',
  subject: 'subject',
  uri: 'uri',
  dns: 'dns',
};

const isKeyChar = (c: number) => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
// Visible ASCII without the separators and the quote: what an unquoted value may hold.
const isPlainChar = (c: number) => c > 0x20 && c < 0x7f && c !== 0x2c && c !== 0x3b && c !== 0x3d && c !== 0x22;
// Inside quotes: visible ASCII and the space (escapes are handled apart).
const isQuotedChar = (c: number) => c >= 0x20 && c < 0x7f;

/**
 * Parses an `x-forwarded-client-cert` value strictly, in one pass: comma-separated elements (one per proxy
 * hop, the last added by the nearest proxy; spaces or tabs may surround a comma, as when duplicate headers
 * are joined), each a semicolon-separated list of `Key=value` pairs with the keys By, Hash, Cert, Chain,
 * Subject, URI and DNS (case-insensitive; only URI and DNS may repeat). A value is plain visible ASCII
 * without `,` `;` `=` `"`, or double-quoted with backslash escapes. Anything else (unknown or repeated keys,
 * empty values or elements, control or non-ASCII characters, a Hash that is not SHA-256 hex, more than
 * MAX_XFCC_ELEMENTS elements or MAX_XFCC_LENGTH characters) throws XfccError (XFCC_MALFORMED).
 */
export function parseXfcc(value: string): XfccElement[] {
  if (typeof value !== 'string') throw new XfccError('x-forwarded-client-cert must be a string');
  if (value.length === 0) throw new XfccError('x-forwarded-client-cert is empty');
  if (value.length > MAX_XFCC_LENGTH) throw new XfccError('x-forwarded-client-cert is too long');
  const out: XfccElement[] = [];
  const n = value.length;
  let i = 0;
  const fail = (what: string): never => {
    throw new XfccError(`x-forwarded-client-cert: ${what} at offset ${i}`);
  };
  for (;;) {
    if (out.length === MAX_XFCC_ELEMENTS) fail('too many elements');
    const single: Partial<Record<SingleKey, string>> = {};
    const uri: string[] = [];
    const dns: string[] = [];
    for (;;) {
      const keyStart = i;
      while (i < n && isKeyChar(value.charCodeAt(i))) i++;
      if (i === keyStart) fail('expected a key');
      const key = KEYS[value.slice(keyStart, i).toLowerCase()];
      if (key === undefined) fail('unknown key');
      if (value.charCodeAt(i) !== 0x3d) fail('expected "="');
      i++;
      let v: string;
      if (value.charCodeAt(i) === 0x22) {
        i++;
        let s = '';
        let chunk = i;
        for (;;) {
          if (i >= n) fail('unterminated quoted value');
          const c = value.charCodeAt(i);
          if (c === 0x22) break;
          if (c === 0x5c) {
            s += value.slice(chunk, i);
            i++;
            if (i >= n || !isQuotedChar(value.charCodeAt(i))) fail('bad escape');
            chunk = i;
            i++;
            continue;
          }
          if (!isQuotedChar(c)) fail('bad character in quoted value');
          i++;
        }
        v = s + value.slice(chunk, i);
        i++; // closing quote
      } else {
        const start = i;
        while (i < n && isPlainChar(value.charCodeAt(i))) i++;
        if (i === start) fail('empty value');
        v = value.slice(start, i);
      }
      if (key === 'uri') uri.push(v);
      else if (key === 'dns') dns.push(v);
      else {
        if (single[key as SingleKey] !== undefined) fail(`repeated key ${key}`);
        if (key === 'hash' && !/^[0-9a-fA-F]{64}$/.test(v)) fail('Hash is not SHA-256 hex');
        single[key as SingleKey] = key === 'hash' ? v.toLowerCase() : v;
      }
      if (value.charCodeAt(i) === 0x3b) {
        i++;
        continue;
      }
      break;
    }
    out.push({ ...single, uri, dns });
    // The end, or optional whitespace, a comma and the next element (no whitespace at the very end).
    if (i === n) return out;
    while (i < n && (value.charCodeAt(i) === 0x20 || value.charCodeAt(i) === 0x09)) i++;
    if (value.charCodeAt(i) !== 0x2c) fail('expected "," or ";"');
    i++;
    while (i < n && (value.charCodeAt(i) === 0x20 || value.charCodeAt(i) === 0x09)) i++;
    if (i === n) fail('empty element');
  }
}

/** What `forwardedSpiffeId` found: the client's SPIFFE ID and the element it came from. */
export interface ForwardedPeer {
  /** The SPIFFE ID in the nearest element's single URI SAN. */
  readonly id: SpiffeId;
  /** The element the nearest proxy added (the last one). */
  readonly element: XfccElement;
}

/**
 * The client SPIFFE ID a proxy forwarded: the header is parsed strictly (see `parseXfcc`, duplicates are
 * joined with ","), and only its last element is used, the one the nearest proxy added; it must hold
 * exactly one URI, a valid SPIFFE ID. Throws XfccError (XFCC_MALFORMED). Only call it for a request whose
 * direct peer is a proxy you trust: anyone can send this header.
 */
export function forwardedSpiffeId(header: string | readonly string[]): ForwardedPeer {
  const value = typeof header === 'string' ? header : header.join(',');
  const elements = parseXfcc(value);
  const element = elements[elements.length - 1] as XfccElement;
  if (element.uri.length !== 1) {
    throw new XfccError(`x-forwarded-client-cert: the nearest element has ${element.uri.length} URIs, not exactly one`);
  }
  let id: SpiffeId;
  try {
    id = toSpiffeId(element.uri[0] as string);
  } catch (err) {
    throw new XfccError('x-forwarded-client-cert: the URI is not a valid SPIFFE ID', { cause: err });
  }
  return { id, element };
}
