import type { IncomingMessage, ServerResponse } from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type * as tls from 'node:tls';
import { debuglog } from 'node:util';
import { type JwtBundleSource, type X509BundleSource } from '../bundle/source.js';
import { SpiffeBundle } from '../bundle/spiffe.js';
import { BundleError, FederationError } from '../errors.js';
import { certificatesToPem, privateKeyToPem } from '../internal/x509util.js';
import { type SpiffeId, type TrustDomain, toTrustDomain } from '../spiffeid/id.js';
import { type UpdatableSource, type X509SvidSource } from '../svid/source.js';
import { type X509Svid } from '../svid/x509.js';
import { NO_RENEGOTIATION } from '../tls/material.js';

const debug = debuglog('spiffe');

/**
 * Where a bundle endpoint gets the bundle it serves: a fixed SpiffeBundle, a function returning the current
 * one (e.g. from a CA), or a live bundle source (its X.509 and, when it has them, JWT authorities; such a
 * source has no sequence number, and `refreshHintSeconds` sets the hint).
 */
export type BundleEndpointBundle = SpiffeBundle | (() => SpiffeBundle) | (X509BundleSource & Partial<JwtBundleSource>);

/** Options of `bundleEndpointHandler`. */
export interface BundleEndpointHandlerOptions {
  /** `spiffe_refresh_hint` (seconds) for bundles that carry none (default: none written). */
  refreshHintSeconds?: number;
}

/** Resolves the served bundle; throws BundleError when it is unavailable. */
export function currentBundle(
  trustDomain: TrustDomain,
  source: BundleEndpointBundle,
  options: BundleEndpointHandlerOptions = {},
): SpiffeBundle {
  let bundle: SpiffeBundle;
  if (source instanceof SpiffeBundle) bundle = source;
  else if (typeof source === 'function') bundle = source();
  else {
    const x509 = source.getX509BundleForTrustDomain(trustDomain);
    let jwt: ReturnType<JwtBundleSource['getJwtBundleForTrustDomain']> | undefined;
    if (typeof source.getJwtBundleForTrustDomain === 'function') {
      try {
        jwt = source.getJwtBundleForTrustDomain(trustDomain);
      } catch (err) {
        if (!(err instanceof BundleError)) throw err;
      }
    }
    bundle = SpiffeBundle.fromBundles(x509, jwt);
  }
  if (!bundle.trustDomain.equals(trustDomain)) {
    throw new BundleError(
      'BUNDLE_TRUST_DOMAIN_MISMATCH',
      `bundle is for "${bundle.trustDomain.name}", not "${trustDomain.name}"`,
    );
  }
  if (bundle.refreshHintSeconds === undefined && options.refreshHintSeconds !== undefined) {
    bundle = new SpiffeBundle({
      trustDomain,
      x509Authorities: bundle.x509Authorities,
      jwtAuthorities: bundle.jwtAuthorities.values(),
      sequenceNumber: bundle.sequenceNumber,
      refreshHintSeconds: options.refreshHintSeconds,
    });
  }
  return bundle;
}

/**
 * A bundle endpoint request handler (SPIFFE Federation) for node:http / node:https, Express
 * (`app.get('/', handler)`) and Fastify (`reply.hijack(); handler(request.raw, reply.raw)`): answers `GET`
 * (and `HEAD`) with the trust domain's current SPIFFE bundle as `application/json`, every other method with
 * 405. It does not look at the path (route it where you serve the endpoint) and asks for no client
 * authentication, as the standard requires. When the bundle is unavailable it answers 503.
 */
export function bundleEndpointHandler(
  trustDomain: TrustDomain | string,
  source: BundleEndpointBundle,
  options: BundleEndpointHandlerOptions = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const td = toTrustDomain(trustDomain);
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('method is not allowed\n');
      return;
    }
    let body: string;
    try {
      body = currentBundle(td, source, options).marshal();
    } catch (err) {
      debug('bundle endpoint: no bundle for %s: %s', td.name, (err as Error).message);
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`unable to serve the bundle for "${td.name}"\n`);
      return;
    }
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      // A bundle changes on rotation; caches in between must not hold an old one past its refresh hint.
      'cache-control': 'no-cache',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}

/** How a bundle endpoint server authenticates itself to its clients. */
export type BundleEndpointServerProfile =
  /** `https_spiffe`: presents a live X.509-SVID (the endpoint SPIFFE ID), rotated without restart. */
  | { type: 'https_spiffe'; svid: X509SvidSource & Partial<UpdatableSource> }
  /** `https_web`: presents an operator (Web PKI) certificate. */
  | { type: 'https_web'; cert: string | Buffer; key: string | Buffer };

/** Options of `createBundleEndpointServer`. */
export interface BundleEndpointServerOptions extends BundleEndpointHandlerOptions {
  /** The trust domain whose bundle is served. */
  trustDomain: TrustDomain | string;
  /** Where the served bundle comes from (read on every request). */
  bundle: BundleEndpointBundle;
  /** How the server authenticates itself: `https_spiffe` (a live SVID) or `https_web` (a Web PKI certificate). */
  profile: BundleEndpointServerProfile;
  /** Port to listen on (default 0: any free port). */
  port?: number;
  /** Host to listen on (default 127.0.0.1). */
  host?: string;
  /** The path serving the bundle (default "/"); other paths answer 404. */
  path?: string;
  /** Extra node:tls options (ciphers, ...); certificate options are managed here. */
  tlsOptions?: tls.TlsOptions;
}

/** A running bundle endpoint server. */
export interface BundleEndpointServer {
  /** The endpoint URL (`https://host:port/path`); clients configure it explicitly. */
  readonly url: string;
  /** The SPIFFE ID presented, with the `https_spiffe` profile. */
  readonly endpointSpiffeId: SpiffeId | undefined;
  /** The underlying node:https server. */
  readonly server: https.Server;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

function svidTls(svid: X509Svid): tls.SecureContextOptions {
  return { key: privateKeyToPem(svid.privateKey), cert: certificatesToPem(svid.certificates) };
}

/**
 * Serves a trust domain's bundle endpoint over HTTPS (TLS 1.2+, no client authentication). With
 * `https_spiffe` the server presents the source's current X.509-SVID: a rotated SVID is used from the next
 * connection on (checked as each connection arrives, and on the source's update events).
 */
export async function createBundleEndpointServer(options: BundleEndpointServerOptions): Promise<BundleEndpointServer> {
  const td = toTrustDomain(options.trustDomain);
  const path = options.path ?? '/';
  const handler = bundleEndpointHandler(td, options.bundle, options);
  const { profile } = options;
  const base: tls.TlsOptions = {
    minVersion: 'TLSv1.2',
    ...options.tlsOptions,
    requestCert: false,
    secureOptions: (options.tlsOptions?.secureOptions ?? 0) | NO_RENEGOTIATION,
  };
  let server: https.Server;
  let endpointSpiffeId: SpiffeId | undefined;
  let detach = (): void => {};
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const reqPath = (req.url ?? '/').split('?')[0];
    if (reqPath !== path) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('not found\n');
      return;
    }
    handler(req, res);
  };
  if (profile?.type === 'https_spiffe') {
    const source = profile.svid;
    let current = source.getX509Svid();
    endpointSpiffeId = current.id;
    server = https.createServer({ ...base, ...svidTls(current) }, onRequest);
    const refresh = () => {
      let next: X509Svid;
      try {
        next = source.getX509Svid();
      } catch (err) {
        debug('bundle endpoint: keeping the previous SVID: %s', (err as Error).message);
        return;
      }
      if (next === current) return;
      current = next;
      server.setSecureContext({ ...base, ...svidTls(next) });
    };
    // Before node:tls wraps the connection, so the handshake uses the SVID current at that moment.
    const onConnection = (_socket: Socket) => refresh();
    server.prependListener('connection', onConnection);
    const unsubscribe = source.onUpdate?.(refresh);
    detach = () => {
      server.removeListener('connection', onConnection);
      unsubscribe?.();
    };
  } else if (profile?.type === 'https_web') {
    server = https.createServer({ ...base, cert: profile.cert, key: profile.key }, onRequest);
  } else {
    throw new FederationError('FEDERATION_BAD_CONFIG', 'profile must be https_spiffe or https_web');
  }
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `https://${urlHost}:${port}${path}`,
    endpointSpiffeId,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        detach();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
