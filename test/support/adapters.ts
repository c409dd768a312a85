// Test support shared by the adapter packages' tests (express, fastify, nestjs, grpc): the identities they use,
// the dev Workload API set-up, SPIFFE clients over undici, and the cases every adapter must refuse alike (bad
// certificates, bad JWT-SVIDs, spoofed or malformed x-forwarded-client-cert headers) as data, so that a new case
// is written once and every adapter runs it. Framework code stays in each package's tests. Not a test file
// itself (the runner takes *.test.ts only); the packages import it by relative path, so their typecheck
// (tsconfig includes src and test) follows the import and checks it too.
import assert from 'node:assert/strict';
import { KeyObject } from 'node:crypto';
import {
  JwtSource,
  matchId,
  type SpiffeDenial,
  StaticX509Source,
  X509BundleSet,
  X509Source,
  type X509Svid,
} from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import { createAuthority, DevCa, DevWorkloadApiServer, KeyUsage } from '@spiffe-ts/dev-server';
import { type RotationUnderLoadResult, rotationUnderLoad } from '@spiffe-ts/dev-server/testing';
import { Agent, type Dispatcher, request } from 'undici';
import { recordingLogger } from './logger.js';

// ---------------------------------------------------------------------------------------------------------
// The main adapter suites: a server, the caller it allows, and another verified workload.

/** The server workload of the main adapter suites. */
export const ORDERS = 'spiffe://example.org/service/orders';
/** The caller the main suites allow. */
export const PAYMENTS = 'spiffe://example.org/service/payment-processor';
/** A verified workload of the same trust domain that the main suites do not allow. */
export const OTHER = 'spiffe://example.org/service/other';

/** A dev Workload API for orders, payments and other, with the CAs the handshake cases need. */
export interface MtlsFixture {
  /** Serves the orders, payments and other workloads; federated with `partner`; one-hour SVIDs. */
  dev: DevWorkloadApiServer;
  /** A federated trust domain (partner.test): trusted for its own IDs only. */
  partner: DevCa;
  /** A CA that calls itself example.org but is trusted by nobody. */
  stranger: DevCa;
  /** The server's (orders) X.509 source. */
  serverSource: X509Source;
  /** Closes the server's source, then stops the Workload API. */
  close(): Promise<void>;
}

/** Starts the {@link MtlsFixture} the main suites of every adapter run against. */
export async function startMtlsFixture(): Promise<MtlsFixture> {
  const partner = await DevCa.create({ trustDomain: 'partner.test' });
  const stranger = await DevCa.create({ trustDomain: 'example.org' });
  const dev = await DevWorkloadApiServer.start({
    workloads: { orders: ORDERS, payments: PAYMENTS, other: OTHER },
    federatedWith: [partner],
    svidTtlSeconds: 3600,
  });
  const serverSource = await X509Source.create({ address: dev.address('orders'), timeoutMs: 5000 });
  return {
    dev,
    partner,
    stranger,
    serverSource,
    close: async () => {
      await serverSource.close();
      await dev.stop();
    },
  };
}

/** A source that presents `svid` as it is (even expired) and trusts the fixture's own and partner CAs. */
export function presentingSvid(fx: MtlsFixture, svid: X509Svid): StaticX509Source {
  const source = new StaticX509Source(svid, new X509BundleSet([fx.dev.ca.x509Bundle(), fx.partner.x509Bundle()]));
  Object.defineProperty(source, 'getX509Svid', { value: () => svid }); // present even if expired
  return source;
}

/**
 * Client certificates every server must refuse in the TLS handshake, before any application code runs: one from
 * a CA nobody trusts, one for an example.org ID from the federated partner's CA, and an expired one.
 */
export async function handshakeRefusedSvids(fx: MtlsFixture): Promise<Array<{ name: string; svid: X509Svid }>> {
  return [
    { name: 'untrusted CA', svid: await fx.stranger.issueX509Svid(PAYMENTS) },
    { name: 'cross-trust-domain', svid: await fx.partner.issueX509Svid(PAYMENTS) },
    {
      name: 'expired',
      svid: await fx.dev.ca.issueX509Svid(PAYMENTS, {
        notBefore: new Date(Date.now() - 7200_000),
        notAfter: new Date(Date.now() - 60_000),
      }),
    },
  ];
}

/** Client TLS options presenting a self-signed certificate for `uri` (signed by no CA at all). */
export async function selfSignedClientCert(uri: string): Promise<{ cert: string; key: string }> {
  const self = await createAuthority({ isCa: false, keyUsage: KeyUsage.digitalSignature, uri });
  const key = KeyObject.from(self.keyPair.keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
  return { cert: self.certificate.toString(), key };
}

/** Asserts that the server at `url` refuses the TLS handshake of a client with these options (none: no cert). */
export async function assertHandshakeRefused(url: string, client: { cert?: string; key?: string } = {}) {
  const agent = new Agent({ connect: { rejectUnauthorized: false, ...client } });
  try {
    await assert.rejects(request(url, { dispatcher: agent }));
  } finally {
    await agent.close();
  }
}

/** A log line kept by {@link captureLogger}. */

/** Polls `find` (100 times, 20 ms apart) until it returns a value: servers may log just after a client sees a close. */
export async function eventually<T>(find: () => T | undefined, failure: string): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const found = find();
    if (found !== undefined) return found;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(failure);
}

/** A pino-compatible logger that keeps its lines, and `lineFor(reason)`: the first line with that reason. */
export function captureLogger() {
  const logger = recordingLogger();
  const { lines } = logger;
  const lineFor = (reason: string) =>
    eventually(() => lines.find((l) => l.fields.reason === reason), `no log line with reason ${reason}`);
  return { logger, lines, lineFor };
}

/**
 * Rotates the server's SVID, then the CA, under continuous requests (3 workers; see `rotationUnderLoad`), checks
 * that each rotation took effect and that no request failed. `send(worker)` throws on a failed request.
 */
export async function assertRotationUnderLoad(
  fx: MtlsFixture,
  label: string,
  send: (worker: number) => Promise<void>,
  afterCaRotation: () => unknown = () => undefined,
): Promise<void> {
  const serial = () => fx.serverSource.getX509Svid().leaf.serialNumber;
  const s0 = serial();
  const r: RotationUnderLoadResult = await rotationUnderLoad({
    dev: fx.dev,
    request: send,
    afterSvidRotation: () => assert.notEqual(serial(), s0, 'server SVID rotated'),
    afterCaRotation: async () => {
      assert.equal(fx.serverSource.bundles.get('example.org')?.authorities.length, 1, 'old CA dropped');
      await afterCaRotation();
    },
  });
  console.log(`${label} rotation under load: ${r.ok} ok, ${r.failed} failed`);
  assert.equal(r.failed, 0, r.errors.slice(0, 5).join('; '));
  assert.ok(r.ok > 20, `enough requests ran (${r.ok})`);
}

// ---------------------------------------------------------------------------------------------------------
// HTTP clients (undici) for the HTTP adapters.

/** An mTLS client of one dev workload: its source, and a dispatcher that accepts only the expected server. */
export interface SpiffeClient {
  source: X509Source;
  dispatcher: Dispatcher;
  /** Closes the dispatcher, then the source. */
  close(): Promise<void>;
}

/** Opens a {@link SpiffeClient} for `workload` of `dev`, verifying the server as `server`. */
export async function spiffeClient(dev: DevWorkloadApiServer, workload: string, server: string): Promise<SpiffeClient> {
  const source = await X509Source.create({ address: dev.address(workload), timeoutMs: 5000 });
  const dispatcher = createSpiffeDispatcher({ source, authorize: matchId(server) });
  return {
    source,
    dispatcher,
    close: async () => {
      await dispatcher.close();
      await source.close();
    },
  };
}

/** Clients opened during a suite, closed together at its end. */
export function spiffeClients(server: string) {
  const open: SpiffeClient[] = [];
  return {
    /** A dispatcher for `workload`, verifying the server as `server`; closed by `close()`. */
    async dispatcher(dev: DevWorkloadApiServer, workload: string): Promise<Dispatcher> {
      const c = await spiffeClient(dev, workload, server);
      open.push(c);
      return c.dispatcher;
    },
    /** Closes every client opened so far. */
    async close(): Promise<void> {
      for (const c of open.splice(0)) await c.close();
    },
  };
}

/** A dispatcher presenting `svid` (see {@link presentingSvid}) to the fixture's server, closed after `use`. */
export async function withSvidDispatcher<T>(
  fx: MtlsFixture,
  svid: X509Svid,
  use: (dispatcher: Dispatcher) => Promise<T>,
): Promise<T> {
  const dispatcher = createSpiffeDispatcher({ source: presentingSvid(fx, svid), authorize: matchId(ORDERS) });
  try {
    return await use(dispatcher);
  } finally {
    await dispatcher.close();
  }
}

/** An HTTP answer, read whole. */
export interface Answer {
  status: number;
  body: string;
  headers: Dispatcher.ResponseData['headers'];
  /** The WWW-Authenticate header. */
  www: string | string[] | undefined;
  json(): Record<string, unknown>;
}

/** A GET of `url`, over `dispatcher` if given (else undici's global one), read whole. */
export async function send(
  url: string,
  options: { dispatcher?: Dispatcher; headers?: Record<string, string>; reset?: boolean } = {},
): Promise<Answer> {
  const { dispatcher, headers = {}, reset } = options;
  const res = await request(url, {
    headers,
    ...(dispatcher ? { dispatcher } : {}),
    ...(reset !== undefined ? { reset } : {}),
  });
  const body = await res.body.text();
  return {
    status: res.statusCode,
    body,
    headers: res.headers,
    www: res.headers['www-authenticate'],
    json: () => JSON.parse(body) as Record<string, unknown>,
  };
}

/** A GET of `url` with `token` as a bearer token (none: no Authorization header); `code` is the error's code. */
export async function sendBearer(url: string, token?: string): Promise<Answer & { code: string | undefined }> {
  const res = await send(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const code = res.status === 200 ? undefined : (JSON.parse(res.body) as { code?: string }).code;
  return { ...res, code };
}

/**
 * Asserts how a server refuses OTHER (verified, not allowed) on `route`: the standard 403 body, and the
 * onDenied event naming the peer, the route and the loopback address.
 */
export function assertOtherRefused(res: Answer, denials: readonly SpiffeDenial[], route: string): void {
  assert.equal(res.status, 403);
  assert.deepEqual(res.json(), {
    statusCode: 403,
    error: 'Forbidden',
    code: 'UNAUTHORIZED_SPIFFE_ID',
    message: 'SPIFFE ID not authorized',
  });
  const event = denials.find((e) => String(e.spiffeId) === OTHER && e.route === route);
  assert.deepEqual(event && { ...event, spiffeId: String(event.spiffeId) }, {
    code: 'UNAUTHORIZED_SPIFFE_ID',
    message: 'SPIFFE ID not authorized',
    statusCode: 403,
    spiffeId: OTHER,
    route,
    remoteAddress: '127.0.0.1',
  });
}

// ---------------------------------------------------------------------------------------------------------
// JWT-SVID bearer tokens.

/** A JWT-SVID for `workload` and `audience`, fetched from the Workload API as a workload does. */
export async function workloadJwtSvid(dev: DevWorkloadApiServer, workload: string, audience: string): Promise<string> {
  const jwt = await JwtSource.create({ address: dev.address(workload), timeoutMs: 5000 });
  try {
    return (await jwt.fetchJwtSvid({ audience })).token;
  } finally {
    await jwt.close();
  }
}

/** The challenge sent with a refused bearer token: no validation detail in it. */
export const INVALID_TOKEN_CHALLENGE = 'Bearer realm="spiffe", error="invalid_token"';

/**
 * Bearer tokens every JWT-SVID validator expecting `audience` (with `ca`'s bundle) must refuse as unauthenticated
 * (401 / UNAUTHENTICATED), each with the code it must give.
 */
export async function refusedJwtSvids(
  ca: DevCa,
  audience: string,
): Promise<Array<{ name: string; token: string; code: string }>> {
  const expired = await ca.issueJwtSvid(PAYMENTS, audience, {
    issuedAt: new Date(Date.now() - 3600_000),
    expiresAt: new Date(Date.now() - 600_000),
  });
  const otherTrustDomain = await DevCa.create({ trustDomain: 'evil.test' });
  const otherKey = await DevCa.create({ trustDomain: 'example.org' });
  return [
    { name: 'expired', token: expired.token, code: 'JWTSVID_EXPIRED' },
    {
      name: 'wrong audience',
      token: (await ca.issueJwtSvid(PAYMENTS, 'billing')).token,
      code: 'JWTSVID_AUDIENCE_MISMATCH',
    },
    {
      name: 'another trust domain',
      token: (await otherTrustDomain.issueJwtSvid('spiffe://evil.test/x', audience)).token,
      code: 'JWTSVID_UNKNOWN_KID',
    },
    {
      name: 'unknown signing key',
      token: (await otherKey.issueJwtSvid(PAYMENTS, audience)).token,
      code: 'JWTSVID_UNKNOWN_KID',
    },
    { name: 'not a JWT', token: 'not-a-jwt', code: 'JWTSVID_MALFORMED' },
    { name: 'three garbage parts', token: 'not.a.jwt', code: 'JWTSVID_MALFORMED' },
  ];
}

/**
 * The three kinds of denial an app's own error handler must receive (no verified peer, a peer not allowed, a bad
 * bearer token), as that handler sees them, for a bearer realm `realm`.
 */
export function denialKinds(
  realm: string,
): Array<{ code: string; statusCode: number; headers: Record<string, string> }> {
  return [
    { code: 'PEER_NOT_VERIFIED', statusCode: 403, headers: {} },
    { code: 'UNAUTHORIZED_SPIFFE_ID', statusCode: 403, headers: {} },
    {
      code: 'JWTSVID_MALFORMED',
      statusCode: 401,
      headers: { 'WWW-Authenticate': `Bearer realm="${realm}", error="invalid_token"` },
    },
  ];
}

/**
 * Sends one request per kind of denial (`requestFor[code]`) and asserts that the app's own error handler reshaped
 * each (status, WWW-Authenticate, body `{ problem: code }`) and that it received them as {@link denialKinds} says.
 */
export async function assertReshapedDenials(
  realm: string,
  requestFor: Record<string, () => Promise<Pick<Answer, 'status' | 'www' | 'json'>>>,
  seen: unknown[],
): Promise<void> {
  for (const kind of denialKinds(realm)) {
    const send = requestFor[kind.code];
    assert.ok(send, `a request for ${kind.code}`);
    const res = await send();
    assert.equal(res.status, kind.statusCode, kind.code);
    assert.equal(res.www, kind.headers['WWW-Authenticate'], kind.code);
    assert.deepEqual(res.json(), { problem: kind.code }, kind.code);
  }
  assert.deepEqual(seen, denialKinds(realm));
}

// ---------------------------------------------------------------------------------------------------------
// Identity behind a proxy (trustedProxy + x-forwarded-client-cert). XFCC values follow Envoy's documented format.

/** The server workload of the XFCC suites. */
export const SERVER = 'spiffe://example.org/ns/prod/sa/orders';
/** The trusted proxy. */
export const PROXY = 'spiffe://example.org/ns/prod/sa/envoy';
/** A verified proxy that is not on the trusted list. */
export const ROGUE_PROXY = 'spiffe://example.org/ns/prod/sa/rogue-envoy';
/** The client the proxy forwards; the XFCC suites allow `/ns/*\/sa/frontend`. */
export const CLIENT = 'spiffe://example.org/ns/prod/sa/frontend';
/** An ID a spoofer would like to be (in the `/ns/prod` prefix, not on the frontend allowlist). */
export const ADMIN = 'spiffe://example.org/ns/prod/sa/admin';
/** Dev workloads of the XFCC suites, by name. */
export const XFCC_WORKLOADS = { server: SERVER, proxy: PROXY, rogue: ROGUE_PROXY, client: CLIENT };
/** The header the proxy forwards the client's identity in. */
export const XFCC_HEADER = 'x-forwarded-client-cert';

const HASH = '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688';

/** One XFCC element naming `uri` as the client, added by the proxy `by`. */
export const xfcc = (uri: string, by = PROXY) => `By=${by};Hash=${HASH};Subject="";URI=${uri}`;

/** The request headers that forward `header` as XFCC. */
export const forwarded = (header: string): Record<string, string> => ({ [XFCC_HEADER]: header });

/** What a request should end in: the forwarded ID admitted, or refused with a code. */
export type XfccOutcome = { id: string; code?: undefined } | { code: string; id?: undefined };

/**
 * Senders of an XFCC header that are not the trusted proxy: each must be refused with XFCC_UNTRUSTED_PEER (HTTP
 * 403), neither trusted nor ignored. `from` is the dev workload that sends it; the first row comes from the
 * direct client, so a suite's first denial names it.
 */
export const UNTRUSTED_XFCC: ReadonlyArray<{ from: 'client' | 'rogue'; header: string }> = [
  { from: 'client', header: xfcc(ADMIN) },
  { from: 'client', header: xfcc(CLIENT) },
  { from: 'rogue', header: xfcc(CLIENT, ROGUE_PROXY) },
  { from: 'rogue', header: xfcc(CLIENT) },
];

/** XFCC headers from the trusted proxy that must be refused with XFCC_MALFORMED (HTTP 403). */
export const MALFORMED_XFCC: readonly string[] = [
  `URI=${CLIENT};`,
  `URI="${CLIENT}`,
  `Foo=bar;URI=${CLIENT}`,
  `URI=${CLIENT};URI=${PROXY}`,
  'DNS=x',
];

/**
 * Multi-hop headers from the trusted proxy, with the outcome on a route that allows `/ns/*\/sa/frontend` and the
 * proxy: only the last element (added by the nearest proxy) counts, and it goes through the allowlist.
 */
export const MULTI_HOP_XFCC: ReadonlyArray<{ header: string } & XfccOutcome> = [
  { header: `${xfcc('spiffe://example.org/ns/prod/sa/not-me', 'spiffe://edge')},${xfcc(CLIENT)}`, id: CLIENT },
  { header: `${xfcc(CLIENT)},${xfcc(ADMIN)}`, code: 'UNAUTHORIZED_SPIFFE_ID' },
];

/** Headers from the trusted proxy, with the outcome on a route that allows the `/ns/prod` path prefix only. */
export const PROD_PREFIX_XFCC: ReadonlyArray<{ header: string } & XfccOutcome> = [
  { header: xfcc(CLIENT), id: CLIENT },
  { header: xfcc('spiffe://example.org/ns/production/sa/frontend'), code: 'UNAUTHORIZED_SPIFFE_ID' },
  { header: xfcc('spiffe://example.org/ns/production/sa/x'), code: 'UNAUTHORIZED_SPIFFE_ID' },
];

/** A function sending one XFCC header to `url` (over `dispatcher`, if given) and reading the answer. */
export const xfccSender =
  (url: string, dispatcher?: Dispatcher) =>
  (header: string): Promise<Answer> =>
    send(url, { headers: forwarded(header), ...(dispatcher ? { dispatcher } : {}) });

/** The headers of {@link UNTRUSTED_XFCC} sent by one workload. */
export const untrustedXfccFrom = (from: 'client' | 'rogue'): string[] =>
  UNTRUSTED_XFCC.filter((u) => u.from === from).map((u) => u.header);

/**
 * Sends each case's header with `sendHeader` and asserts the outcome: 200 with the body `admitted(id)`, or 403
 * with the case's code.
 */
export async function assertXfccCases(
  cases: ReadonlyArray<{ header: string } & XfccOutcome>,
  sendHeader: (header: string) => Promise<Answer>,
  admitted: (id: string) => object,
): Promise<void> {
  for (const c of cases) {
    const res = await sendHeader(c.header);
    if (c.id !== undefined) {
      assert.equal(res.status, 200, c.header);
      assert.deepEqual(res.json(), admitted(c.id), c.header);
    } else {
      assert.equal(res.status, 403, c.header);
      assert.equal(res.json().code, c.code, c.header);
    }
  }
}

/** Sends each header with `sendHeader` and asserts that it is refused: HTTP 403 with `code`. */
export async function assertXfccRefused(
  headers: readonly string[],
  code: string,
  sendHeader: (header: string) => Promise<Answer>,
): Promise<void> {
  for (const h of headers) {
    const res = await sendHeader(h);
    assert.equal(res.status, 403, h);
    assert.equal(res.json().code, code, h);
  }
}

/**
 * Asserts the trusted proxy's two faces at `url` (a route answering `{ id, source }`): with an XFCC header it
 * forwards the client's ID (source 'proxy'); without one it is just an mTLS peer (source 'connection').
 */
export async function assertProxyForwards(url: string, proxy: Dispatcher): Promise<void> {
  const res = await xfccSender(url, proxy)(xfcc(CLIENT));
  assert.equal(res.status, 200);
  assert.deepEqual(res.json(), { id: CLIENT, source: 'proxy' });
  // Without the header the proxy is just an mTLS peer.
  assert.deepEqual((await send(url, { dispatcher: proxy })).json(), { id: PROXY, source: 'connection' });
}

/**
 * Asserts a local sidecar set-up at `url` (plain HTTP on loopback, a route answering `{ id, source }` that needs a
 * peer): the forwarded ID is taken, and without the header there is no peer (403 PEER_NOT_VERIFIED).
 */
export async function assertSidecarForwards(url: string): Promise<void> {
  const res = await xfccSender(url)(xfcc(CLIENT));
  assert.equal(res.status, 200);
  assert.deepEqual(res.json(), { id: CLIENT, source: 'proxy' });
  const none = await send(url);
  assert.equal(none.status, 403);
  assert.equal(none.json().code, 'PEER_NOT_VERIFIED');
}

/**
 * Asserts bindToPeer behind a local sidecar at `url` (a route answering `{ sub }` that takes tokens for audience
 * 'orders' signed by `ca`): a token for the forwarded peer is accepted, one for anyone else is not (401).
 */
export async function assertSidecarBindsTokens(ca: DevCa, url: string): Promise<void> {
  const good = (await ca.issueJwtSvid(CLIENT, ['orders'])).token;
  const other = (await ca.issueJwtSvid('spiffe://example.org/ns/prod/sa/someone-else', ['orders'])).token;
  const h = forwarded(xfcc(CLIENT));
  const ok = await send(url, { headers: { ...h, authorization: `Bearer ${good}` } });
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.json(), { sub: CLIENT });
  const unbound = await send(url, { headers: { ...h, authorization: `Bearer ${other}` } });
  assert.equal(unbound.status, 401);
  assert.equal(unbound.json().code, 'JWTSVID_NOT_BOUND_TO_PEER');
}
