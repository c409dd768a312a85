import { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import * as https from 'node:https';
import type * as tls from 'node:tls';
import { type X509BundleSource } from '../bundle/source.js';
import { SpiffeBundle } from '../bundle/spiffe.js';
import { X509Bundle } from '../bundle/x509.js';
import { AuthorizationError, BundleError, FederationError, SpiffeError } from '../errors.js';
import { type CertificatesInput, certificateFacts, parseCertificates } from '../internal/x509util.js';
import { SpiffeId, TrustDomain, toSpiffeId, toTrustDomain } from '../spiffeid/id.js';
import { matchId } from '../spiffeid/match.js';
import { verifyX509Svid } from '../svid/x509.js';
import { spiffeCheckServerIdentity } from '../tls/client.js';
import { NO_RENEGOTIATION } from '../tls/material.js';
import { derChain } from '../tls/peer.js';

/** Default limit on a whole fetch (connection, TLS, redirects, body): 10 s. */
export const DEFAULT_FETCH_TIMEOUT_MS = 10_000;
/** Default limit on a bundle document's size: 1 MiB (hundreds of authorities; a SPIRE bundle is a few KiB). */
export const DEFAULT_MAX_BUNDLE_BYTES = 1024 * 1024;
/** Default number of redirects followed in one fetch. */
export const DEFAULT_MAX_REDIRECTS = 3;

/**
 * `https_web`: the endpoint's certificate is checked as on the web (Web PKI chain, name matching the URL's
 * host), against Node's root store or the given roots.
 */
export interface HttpsWebProfile {
  /** The profile name, as in the standard. */
  readonly type: 'https_web';
  /** Trust only these roots (PEM or DER) instead of Node's root store. */
  readonly ca?: CertificatesInput;
}

/**
 * `https_spiffe`: the endpoint must present an X.509-SVID whose SPIFFE ID is exactly `endpointSpiffeId`, verified
 * against `bundle`'s authorities for the endpoint's trust domain. For a self-serving endpoint (the ID is in the
 * trust domain being fetched) `bundle` is the operator-supplied bootstrap bundle; `FederatedBundleSource` uses
 * the latest fetched bundle after the first success.
 */
export interface HttpsSpiffeProfile {
  /** The profile name, as in the standard. */
  readonly type: 'https_spiffe';
  /** The exact SPIFFE ID the endpoint's X.509-SVID must carry. */
  readonly endpointSpiffeId: SpiffeId | string;
  /** The endpoint trust domain's X.509 authorities: a bundle, a SpiffeBundle, or a live bundle source. */
  readonly bundle: X509BundleSource;
}

/** How a bundle endpoint authenticates itself (SPIFFE Federation §5). */
export type BundleEndpointProfile = HttpsWebProfile | HttpsSpiffeProfile;

/** Size, time and redirect limits of a bundle fetch. */
export interface FetchLimits {
  /** Limit on the whole fetch in ms (default DEFAULT_FETCH_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Largest bundle document accepted, in bytes (default DEFAULT_MAX_BUNDLE_BYTES). */
  maxBundleBytes?: number;
  /** Redirects followed before giving up (default DEFAULT_MAX_REDIRECTS; 0 refuses every redirect). */
  maxRedirects?: number;
}

/** One federation relationship: the three parameters are always explicit (none is inferred from another). */
export interface FederationRelationship {
  /** The trust domain whose bundle the endpoint serves. */
  trustDomain: TrustDomain | string;
  /** The bundle endpoint URL (`https`, no userinfo). */
  url: string | URL;
  /** How the endpoint authenticates itself. */
  profile: BundleEndpointProfile;
}

/** Options of `fetchBundle`. */
export interface FetchBundleOptions extends FederationRelationship, FetchLimits {
  /** Aborts the fetch (rejects with FEDERATION_UNAVAILABLE, the reason as `cause`). */
  signal?: AbortSignal;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

// OpenSSL / node:tls verification failures: the endpoint is reachable but not trusted.
const UNTRUSTED_CODE = /CERT|SELF_SIGNED|UNABLE_TO_|ALTNAME|HOSTNAME|PATH_LENGTH|INVALID_CA|INVALID_PURPOSE/;

/** Checks a bundle endpoint URL: `https`, with a host, no userinfo. Throws FEDERATION_BAD_CONFIG. */
export function parseEndpointUrl(url: string | URL): URL {
  let u: URL;
  try {
    u = new URL(String(url));
  } catch (err) {
    throw new FederationError('FEDERATION_BAD_CONFIG', `bundle endpoint URL "${String(url)}" is not a URL`, {
      cause: err,
    });
  }
  checkUrl(u, 'FEDERATION_BAD_CONFIG', 'bundle endpoint URL');
  return u;
}

function checkUrl(u: URL, code: 'FEDERATION_BAD_CONFIG' | 'FEDERATION_BAD_REDIRECT', what: string): void {
  if (u.protocol !== 'https:') throw new FederationError(code, `${what} must use https, not ${u.protocol}`);
  if (u.username !== '' || u.password !== '') throw new FederationError(code, `${what} must not carry userinfo`);
  if (u.hostname === '') throw new FederationError(code, `${what} has no host`);
}

interface Prepared {
  trustDomain: TrustDomain;
  url: URL;
  tlsOptions: https.RequestOptions;
  /** The endpoint's SPIFFE ID when it serves its own trust domain's bundle. */
  selfServingId: SpiffeId | undefined;
  /** The endpoint chain (leaf and intermediates) verified on the last handshake. */
  chain: { value: Buffer[] | undefined };
}

function prepare(options: FederationRelationship): Prepared {
  const trustDomain = wrapConfig(() => toTrustDomain(options.trustDomain), 'trust domain');
  const url = parseEndpointUrl(options.url);
  const { profile } = options;
  const chain: Prepared['chain'] = { value: undefined };
  // Intermediate-profile TLS (SPIFFE Federation §5): TLS 1.2 or later, no renegotiation, a fresh connection
  // per fetch (no keep-alive, no session resumption, which would skip checkServerIdentity).
  const base: https.RequestOptions = {
    minVersion: 'TLSv1.2',
    secureOptions: NO_RENEGOTIATION,
    rejectUnauthorized: true,
    agent: false,
  };
  if (profile?.type === 'https_web') {
    const ca =
      profile.ca === undefined
        ? undefined
        : wrapConfig(() => parseCertificates(profile.ca as CertificatesInput), 'https_web roots');
    if (ca !== undefined && ca.length === 0) {
      throw new FederationError('FEDERATION_BAD_CONFIG', 'https_web: `ca` holds no certificate');
    }
    return {
      trustDomain,
      url,
      tlsOptions: { ...base, ...(ca ? { ca: ca.map((c) => c.toString()) } : {}) },
      selfServingId: undefined,
      chain,
    };
  }
  if (profile?.type === 'https_spiffe') {
    const endpointId = wrapConfig(() => toSpiffeId(profile.endpointSpiffeId), 'endpoint SPIFFE ID');
    if (!profile.bundle || typeof profile.bundle.getX509BundleForTrustDomain !== 'function') {
      throw new FederationError('FEDERATION_BAD_CONFIG', 'https_spiffe: `bundle` must be an X.509 bundle source');
    }
    let endpointBundle: X509Bundle;
    try {
      endpointBundle = profile.bundle.getX509BundleForTrustDomain(endpointId.trustDomain);
    } catch (err) {
      throw new FederationError(
        'FEDERATION_ENDPOINT_UNTRUSTED',
        `https_spiffe: no bundle for the endpoint's trust domain "${endpointId.trustDomain.name}"`,
        { cause: err, url: url.href },
      );
    }
    if (endpointBundle.authorities.length === 0) {
      throw new FederationError(
        'FEDERATION_ENDPOINT_UNTRUSTED',
        `https_spiffe: the bundle of the endpoint's trust domain "${endpointId.trustDomain.name}" has no X.509 authority`,
        { url: url.href },
      );
    }
    // The chain is checked twice: by OpenSSL against these authorities only, then as an X.509-SVID of exactly
    // the endpoint ID against the same bundle (the hostname is not used).
    const check = spiffeCheckServerIdentity(endpointBundle, matchId(endpointId));
    return {
      trustDomain,
      url,
      tlsOptions: {
        ...base,
        ca: endpointBundle.authorities.map((c) => c.toString()),
        checkServerIdentity: (host: string, cert: tls.PeerCertificate) => {
          const err = check(host, cert);
          if (!err) chain.value = withoutRoot(derChain(cert as tls.DetailedPeerCertificate));
          return err;
        },
      },
      selfServingId: endpointId.trustDomain.equals(trustDomain) ? endpointId : undefined,
      chain,
    };
  }
  throw new FederationError(
    'FEDERATION_BAD_CONFIG',
    'profile must be { type: "https_web" } or { type: "https_spiffe", ... }',
  );
}

function wrapConfig<T>(fn: () => T, what: string): T {
  try {
    return fn();
  } catch (err) {
    throw new FederationError('FEDERATION_BAD_CONFIG', `invalid ${what}: ${(err as Error).message}`, { cause: err });
  }
}

/** node:tls appends the trust anchor it found to the peer chain; the SVID is leaf plus intermediates. */
function withoutRoot(chain: Buffer[]): Buffer[] {
  if (chain.length < 2) return chain;
  const last = new X509Certificate(chain[chain.length - 1] as Buffer);
  return last.checkIssued(last) ? chain.slice(0, -1) : chain;
}

/**
 * Fetches a trust domain's SPIFFE bundle from its bundle endpoint (SPIFFE Federation), authenticating the
 * endpoint with the given profile. Redirects are followed as temporary (at most `maxRedirects`, each target an
 * `https` URL authenticated with the same profile; a repeated URL is a loop); the body must be at most
 * `maxBundleBytes` of UTF-8 JSON, a valid SPIFFE bundle (`SpiffeBundle.parse` rules) whose authorities do not
 * name another trust domain. A self-serving `https_spiffe` endpoint's new bundle must still trust the SVID the
 * endpoint just presented. Every failure is a FederationError with a FEDERATION_* code.
 */
export async function fetchBundle(options: FetchBundleOptions): Promise<SpiffeBundle> {
  const prepared = prepare(options);
  const timeoutMs = limit(options.timeoutMs, DEFAULT_FETCH_TIMEOUT_MS, 1, 'timeoutMs');
  const maxBytes = limit(options.maxBundleBytes, DEFAULT_MAX_BUNDLE_BYTES, 1, 'maxBundleBytes');
  const maxRedirects = limit(options.maxRedirects, DEFAULT_MAX_REDIRECTS, 0, 'maxRedirects');
  const deadline = new AbortController();
  const timer = setTimeout(
    () =>
      deadline.abort(
        new FederationError('FEDERATION_TIMEOUT', `bundle endpoint did not answer within ${timeoutMs} ms`, {
          url: prepared.url.href,
        }),
      ),
    timeoutMs,
  );
  // Forwarded by hand rather than AbortSignal.any: the watcher passes one long-lived signal to every fetch.
  const outer = options.signal;
  const forward = () => deadline.abort(outer?.reason);
  if (outer?.aborted) forward();
  else outer?.addEventListener('abort', forward, { once: true });
  const signal = deadline.signal;
  try {
    const visited = new Set<string>();
    let url = prepared.url;
    for (;;) {
      visited.add(url.href);
      const answer = await getOnce(url, prepared, maxBytes, signal);
      if (answer.kind === 'bundle') return parseFetched(answer.body, prepared, url);
      if (visited.size > maxRedirects) {
        throw new FederationError(
          'FEDERATION_TOO_MANY_REDIRECTS',
          `bundle endpoint redirected more than ${maxRedirects} times`,
          { url: url.href },
        );
      }
      let next: URL;
      try {
        next = new URL(answer.location, url);
      } catch (err) {
        throw new FederationError('FEDERATION_BAD_REDIRECT', 'bundle endpoint redirected to an invalid URL', {
          cause: err,
          url: url.href,
        });
      }
      checkUrl(next, 'FEDERATION_BAD_REDIRECT', 'redirect target');
      if (visited.has(next.href)) {
        throw new FederationError('FEDERATION_REDIRECT_LOOP', `bundle endpoint redirect loop at ${next.href}`, {
          url: url.href,
        });
      }
      url = next;
    }
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener('abort', forward);
  }
}

function limit(value: number | undefined, fallback: number, min: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new FederationError('FEDERATION_BAD_CONFIG', `${name} must be an integer of at least ${min}`);
  }
  return value;
}

type Answer = { kind: 'bundle'; body: Buffer } | { kind: 'redirect'; location: string };

function getOnce(url: URL, prepared: Prepared, maxBytes: number, signal: AbortSignal): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      req.destroy();
      reject(toFederationError(err, url));
    };
    const done = (a: Answer) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      resolve(a);
    };
    const onAbort = () => fail(signal.reason);
    prepared.chain.value = undefined;
    const req = https.request(url, {
      ...prepared.tlsOptions,
      method: 'GET',
      headers: { accept: 'application/json' },
    });
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    req.on('error', fail);
    req.on('response', (res: IncomingMessage) => {
      res.on('error', fail);
      const status = res.statusCode ?? 0;
      if (REDIRECTS.has(status)) {
        const location = res.headers.location;
        res.destroy();
        if (typeof location !== 'string' || location === '') {
          fail(new FederationError('FEDERATION_BAD_REDIRECT', `redirect (${status}) without a Location`));
        } else {
          done({ kind: 'redirect', location });
        }
        return;
      }
      if (status !== 200) {
        res.destroy();
        fail(new FederationError('FEDERATION_BAD_STATUS', `bundle endpoint answered HTTP ${status}`));
        return;
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBytes) {
        res.destroy();
        fail(tooLarge(maxBytes));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) {
          res.destroy();
          fail(tooLarge(maxBytes));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => {
        if (!res.complete)
          fail(new FederationError('FEDERATION_UNAVAILABLE', 'bundle endpoint response was cut short'));
        else done({ kind: 'bundle', body: Buffer.concat(chunks, size) });
      });
      res.on('close', () => {
        if (!res.complete)
          fail(new FederationError('FEDERATION_UNAVAILABLE', 'bundle endpoint response was cut short'));
      });
    });
    req.end();
  });
}

function tooLarge(maxBytes: number): FederationError {
  return new FederationError('FEDERATION_BUNDLE_TOO_LARGE', `bundle document is larger than ${maxBytes} bytes`);
}

function toFederationError(err: unknown, url: URL): FederationError {
  if (err instanceof FederationError) {
    return err.url ? err : new FederationError(err.code, err.message, { cause: err.cause, url: url.href });
  }
  if (err instanceof AuthorizationError) {
    return new FederationError(
      'FEDERATION_ENDPOINT_ID_MISMATCH',
      `bundle endpoint presented ${err.spiffeId}, not the configured endpoint SPIFFE ID`,
      { cause: err, url: url.href },
    );
  }
  if (err instanceof SpiffeError) {
    return new FederationError('FEDERATION_ENDPOINT_UNTRUSTED', `bundle endpoint not trusted: ${err.message}`, {
      cause: err,
      url: url.href,
    });
  }
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string' && UNTRUSTED_CODE.test(code)) {
    return new FederationError(
      'FEDERATION_ENDPOINT_UNTRUSTED',
      `bundle endpoint not trusted: ${(err as Error).message}`,
      {
        cause: err,
        url: url.href,
      },
    );
  }
  const name = (err as Error)?.name;
  if (name === 'AbortError' || name === 'TimeoutError') {
    // The caller's signal (our own deadline aborts with a FEDERATION_TIMEOUT error, handled above).
    return new FederationError('FEDERATION_UNAVAILABLE', 'bundle fetch aborted', { cause: err, url: url.href });
  }
  return new FederationError(
    'FEDERATION_UNAVAILABLE',
    `bundle endpoint unreachable: ${err instanceof Error ? err.message : String(err)}`,
    { cause: err, url: url.href },
  );
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function parseFetched(body: Buffer, prepared: Prepared, url: URL): SpiffeBundle {
  const { trustDomain } = prepared;
  let bundle: SpiffeBundle;
  try {
    bundle = SpiffeBundle.parse(trustDomain, utf8.decode(body));
  } catch (err) {
    const why = err instanceof BundleError ? err.message : `not UTF-8 text (${(err as Error).message})`;
    throw new FederationError('FEDERATION_BUNDLE_INVALID', `bundle endpoint served an invalid bundle: ${why}`, {
      cause: err,
      url: url.href,
    });
  }
  // A bundle never names its trust domain, but authorities usually carry their trust domain's SPIFFE ID (SPIRE
  // and the dev CA do). One that names another trust domain means the endpoint serves someone else's bundle.
  for (const cert of bundle.x509Authorities) {
    for (const uri of certificateFacts(cert).uris) {
      if (!uri.startsWith('spiffe://')) continue;
      let td: TrustDomain | undefined;
      try {
        td = SpiffeId.parse(uri).trustDomain;
      } catch {
        td = undefined;
      }
      if (!td?.equals(trustDomain)) {
        throw new FederationError(
          'FEDERATION_WRONG_TRUST_DOMAIN',
          `bundle for "${trustDomain.name}" holds an authority of another trust domain (${uri})`,
          { url: url.href },
        );
      }
    }
  }
  const chain = prepared.chain.value;
  if (prepared.selfServingId && chain) {
    try {
      verifyX509Svid(chain, bundle);
    } catch (err) {
      throw new FederationError(
        'FEDERATION_BUNDLE_INVALID',
        `bundle for "${trustDomain.name}" does not trust the endpoint's own SVID (${prepared.selfServingId}): ` +
          'adopting it would lock this relationship out',
        { cause: err, url: url.href },
      );
    }
  }
  return bundle;
}
