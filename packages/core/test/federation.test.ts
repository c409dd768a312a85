import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  type BundleEndpointServer,
  bundleEndpointHandler,
  combineBundleSources,
  createBundleEndpointServer,
  createSpiffeHttpsAgent,
  FederatedBundleSource,
  FederationError,
  fetchBundle,
  JwtBundleSet,
  matchId,
  parseAndValidateJwtSvid,
  SpiffeBundle,
  StaticX509Source,
  spiffeServerTls,
  withFederatedBundles,
  X509Bundle,
  X509BundleSet,
  type X509Svid,
} from '@spiffe-ts/core';
import { type Authority, createAuthority, DevCa, issueX509SvidWith } from '@spiffe-ts/dev-server';

const ENDPOINT_ID = 'spiffe://partner.test/bundle-endpoint';
const SERVICE_ID = 'spiffe://example.org/service/orders';
const PARTNER_CLIENT = 'spiffe://partner.test/billing';

const LONG = { ttlSeconds: 3600 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, what: string, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<FederationError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof FederationError, `expected FederationError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but it resolved`);
}

let local: DevCa; // example.org
let partner: DevCa; // partner.test, serves its bundle endpoint with https_spiffe
let impostor: DevCa; // another CA claiming partner.test
let endpointSvid: StaticX509Source;
let spiffeEndpoint: BundleEndpointServer;
let webCa: Authority;
let webSvid: X509Svid; // a Web PKI server certificate for "localhost"

// A bundle endpoint (https_web, "localhost") whose behaviour each test picks.
type Mode =
  | 'good'
  | 'big-declared'
  | 'big-stream'
  | 'malformed'
  | 'not-utf8'
  | 'slow'
  | 'loop'
  | 'loop2'
  | 'chain'
  | 'to-http'
  | 'status-500'
  | 'wrong-td'
  | 'stale'
  | 'deep'
  | 'wrong-host';
let mode: Mode = 'good';
let goodBundle: () => SpiffeBundle;
let webServer: https.Server;
let webPort: number;

function misbehave(req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0];
  if (path?.startsWith('/chain/')) {
    const n = Number(path.slice('/chain/'.length));
    res.writeHead(302, { location: `/chain/${n + 1}` }).end();
    return;
  }
  if (path === '/b') {
    res.writeHead(307, { location: '/' }).end();
    return;
  }
  switch (mode) {
    case 'good':
      res.writeHead(200, { 'content-type': 'application/json' }).end(goodBundle().marshal());
      return;
    case 'big-declared':
      res.writeHead(200, { 'content-length': String(64 * 1024 * 1024) });
      res.write('{"keys":[');
      return; // never finishes: the client must stop at the header
    case 'big-stream': {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) {
          // keep writing until backpressure
        }
        if (!res.destroyed) res.once('drain', pump);
      };
      res.write('{"keys":[]');
      pump();
      return;
    }
    case 'malformed':
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end('{"keys": [ {"use": "x509-svid", "x5c": ["!!"]} ]');
      return;
    case 'not-utf8':
      res.writeHead(200).end(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]));
      return;
    case 'slow':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"keys":'); // then nothing
      return;
    case 'loop':
      res.writeHead(302, { location: req.url ?? '/' }).end();
      return;
    case 'loop2':
      res.writeHead(302, { location: '/b' }).end();
      return;
    case 'chain':
      res.writeHead(302, { location: '/chain/1' }).end();
      return;
    case 'to-http':
      res.writeHead(302, { location: `http://localhost:${webPort}/` }).end();
      return;
    case 'status-500':
      res.writeHead(500).end('oops');
      return;
    case 'wrong-td':
      res.writeHead(200).end(local.spiffeBundle().marshal());
      return;
    case 'wrong-host':
      // Same server, reached by an address its certificate does not name.
      res.writeHead(302, { location: `https://127.0.0.1:${webPort}/` }).end();
      return;
    case 'deep':
      // Deep nesting inside an ignored member: a recursive parser must fail cleanly, not take the process down.
      res.writeHead(200).end(`{"keys":[],"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
      return;
    case 'stale': {
      const b = goodBundle();
      res.writeHead(200).end(
        new SpiffeBundle({
          trustDomain: b.trustDomain,
          x509Authorities: b.x509Authorities,
          sequenceNumber: 1,
          refreshHintSeconds: b.refreshHintSeconds,
        }).marshal(),
      );
      return;
    }
  }
}

const webUrl = (path = '/') => `https://localhost:${webPort}${path}`;
const webProfile = () => ({ type: 'https_web' as const, ca: webCa.certificate.toString() });

before(async () => {
  local = await DevCa.create({ trustDomain: 'example.org' });
  partner = await DevCa.create({ trustDomain: 'partner.test', svidTtlSeconds: 2 }); // refresh hint 1 s
  impostor = await DevCa.create({ trustDomain: 'partner.test' });
  endpointSvid = new StaticX509Source(await partner.issueX509Svid(ENDPOINT_ID, LONG), partner.x509Bundle());
  spiffeEndpoint = await createBundleEndpointServer({
    trustDomain: 'partner.test',
    bundle: () => partner.spiffeBundle(),
    profile: { type: 'https_spiffe', svid: endpointSvid },
  });
  webCa = await createAuthority({ uri: null, subject: 'CN=test web CA' });
  webSvid = await issueX509SvidWith(webCa, 'spiffe://unused/x', { uris: [], dnsNames: ['localhost'] });
  goodBundle = () => partner.spiffeBundle();
  const pem = webSvid.toPem();
  webServer = https.createServer({ cert: pem.certificates, key: pem.privateKey }, misbehave);
  await new Promise<void>((r) => webServer.listen(0, '127.0.0.1', r));
  webPort = (webServer.address() as AddressInfo).port;
});

after(async () => {
  await spiffeEndpoint.close();
  webServer.closeAllConnections();
  await new Promise<void>((r) => webServer.close(() => r()));
});

describe('fetchBundle: https_spiffe', () => {
  test('fetches the bundle from an endpoint presenting exactly the endpoint SPIFFE ID', async () => {
    const b = await fetchBundle({
      trustDomain: 'partner.test',
      url: spiffeEndpoint.url,
      profile: { type: 'https_spiffe', endpointSpiffeId: ENDPOINT_ID, bundle: partner.x509Bundle() },
    });
    assert.equal(b.trustDomain.name, 'partner.test');
    assert.equal(b.marshal(), partner.spiffeBundle().marshal());
    assert.equal(b.sequenceNumber, BigInt(partner.sequence));
    assert.equal(spiffeEndpoint.endpointSpiffeId?.toString(), ENDPOINT_ID);
  });

  test('another SPIFFE ID of the same trust domain: FEDERATION_ENDPOINT_ID_MISMATCH', async () => {
    await rejectsWith(
      fetchBundle({
        trustDomain: 'partner.test',
        url: spiffeEndpoint.url,
        profile: {
          type: 'https_spiffe',
          endpointSpiffeId: 'spiffe://partner.test/other',
          bundle: partner.x509Bundle(),
        },
      }),
      'FEDERATION_ENDPOINT_ID_MISMATCH',
    );
  });

  test('an SVID that does not chain to the endpoint trust domain bundle: FEDERATION_ENDPOINT_UNTRUSTED', async () => {
    await rejectsWith(
      fetchBundle({
        trustDomain: 'partner.test',
        url: spiffeEndpoint.url,
        profile: { type: 'https_spiffe', endpointSpiffeId: ENDPOINT_ID, bundle: impostor.x509Bundle() },
      }),
      'FEDERATION_ENDPOINT_UNTRUSTED',
    );
  });

  test('an endpoint presenting a Web PKI certificate fails the https_spiffe profile', async () => {
    await rejectsWith(
      fetchBundle({
        trustDomain: 'partner.test',
        url: webUrl(),
        profile: {
          type: 'https_spiffe',
          endpointSpiffeId: ENDPOINT_ID,
          bundle: new X509BundleSet([partner.x509Bundle()]),
        },
      }),
      'FEDERATION_ENDPOINT_UNTRUSTED',
    );
  });

  test('no bundle for the endpoint trust domain: refused before connecting', async () => {
    await rejectsWith(
      fetchBundle({
        trustDomain: 'partner.test',
        url: spiffeEndpoint.url,
        profile: { type: 'https_spiffe', endpointSpiffeId: ENDPOINT_ID, bundle: local.x509Bundle() },
      }),
      'FEDERATION_ENDPOINT_UNTRUSTED',
    );
  });
});

describe('fetchBundle: https_web', () => {
  test('Web PKI chain and hostname, with the given roots', async () => {
    const b = await fetchBundle({ trustDomain: 'partner.test', url: webUrl(), profile: webProfile() });
    assert.equal(b.marshal(), partner.spiffeBundle().marshal());
  });

  test('hostname mismatch: FEDERATION_ENDPOINT_UNTRUSTED', async () => {
    await rejectsWith(
      fetchBundle({ trustDomain: 'partner.test', url: `https://127.0.0.1:${webPort}/`, profile: webProfile() }),
      'FEDERATION_ENDPOINT_UNTRUSTED',
    );
  });

  test("a certificate not from Node's root store: FEDERATION_ENDPOINT_UNTRUSTED", async () => {
    await rejectsWith(
      fetchBundle({ trustDomain: 'partner.test', url: webUrl(), profile: { type: 'https_web' } }),
      'FEDERATION_ENDPOINT_UNTRUSTED',
    );
  });

  test('configuration: https only, no userinfo, an explicit profile', async () => {
    for (const url of [`http://localhost:${webPort}/`, `https://user:pw@localhost:${webPort}/`, 'not a url']) {
      await rejectsWith(
        fetchBundle({ trustDomain: 'partner.test', url, profile: webProfile() }),
        'FEDERATION_BAD_CONFIG',
      );
    }
    await rejectsWith(
      fetchBundle({ trustDomain: 'partner.test', url: webUrl(), profile: {} as never }),
      'FEDERATION_BAD_CONFIG',
    );
    await rejectsWith(
      fetchBundle({ trustDomain: 'Not A TD', url: webUrl(), profile: webProfile() }),
      'FEDERATION_BAD_CONFIG',
    );
  });
});

describe('fetchBundle: bad endpoints give typed errors', () => {
  const cases: [Mode, string, { path?: string; timeoutMs?: number }?][] = [
    ['big-declared', 'FEDERATION_BUNDLE_TOO_LARGE'],
    ['big-stream', 'FEDERATION_BUNDLE_TOO_LARGE'],
    ['malformed', 'FEDERATION_BUNDLE_INVALID'],
    ['not-utf8', 'FEDERATION_BUNDLE_INVALID'],
    ['slow', 'FEDERATION_TIMEOUT', { timeoutMs: 300 }],
    ['loop', 'FEDERATION_REDIRECT_LOOP'],
    ['loop2', 'FEDERATION_REDIRECT_LOOP'],
    ['chain', 'FEDERATION_TOO_MANY_REDIRECTS'],
    ['to-http', 'FEDERATION_BAD_REDIRECT'],
    ['status-500', 'FEDERATION_BAD_STATUS'],
    ['wrong-td', 'FEDERATION_WRONG_TRUST_DOMAIN'],
    ['wrong-host', 'FEDERATION_ENDPOINT_UNTRUSTED'],
  ];
  for (const [m, code, opts] of cases) {
    test(`${m}: ${code}`, async () => {
      mode = m;
      try {
        const started = Date.now();
        await rejectsWith(
          fetchBundle({
            trustDomain: 'partner.test',
            url: webUrl(opts?.path),
            profile: webProfile(),
            maxBundleBytes: 256 * 1024,
            ...(opts?.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
          }),
          code,
        );
        if (m === 'big-stream') assert.ok(Date.now() - started < 5000, 'stopped reading at the limit');
      } finally {
        mode = 'good';
      }
    });
  }

  test('deeply nested JSON: a bundle or a typed error, never a crash', async () => {
    mode = 'deep';
    try {
      const outcome = await fetchBundle({ trustDomain: 'partner.test', url: webUrl(), profile: webProfile() }).then(
        (b) => `bundle with ${b.x509Authorities.length} authorities`,
        (err: unknown) => (err instanceof FederationError ? err.code : `untyped: ${String(err)}`),
      );
      assert.ok(['bundle with 0 authorities', 'FEDERATION_BUNDLE_INVALID'].includes(outcome), outcome);
    } finally {
      mode = 'good';
    }
  });

  test('an aborted fetch ends at once with FEDERATION_UNAVAILABLE', async () => {
    mode = 'slow';
    try {
      const started = Date.now();
      const err = await rejectsWith(
        fetchBundle({
          trustDomain: 'partner.test',
          url: webUrl(),
          profile: webProfile(),
          signal: AbortSignal.timeout(150),
        }),
        'FEDERATION_UNAVAILABLE',
      );
      assert.ok(Date.now() - started < 5000, err.message);
    } finally {
      mode = 'good';
    }
  });

  test('limits must be sane numbers', async () => {
    for (const bad of [{ timeoutMs: 0 }, { maxBundleBytes: -1 }, { maxRedirects: 1.5 }]) {
      await rejectsWith(
        fetchBundle({ trustDomain: 'partner.test', url: webUrl(), profile: webProfile(), ...bad }),
        'FEDERATION_BAD_CONFIG',
      );
    }
  });

  test('a temporary redirect to a valid endpoint is followed', async () => {
    const b = await fetchBundle({ trustDomain: 'partner.test', url: webUrl('/b'), profile: webProfile() });
    assert.equal(b.marshal(), partner.spiffeBundle().marshal());
    await rejectsWith(
      fetchBundle({ trustDomain: 'partner.test', url: webUrl('/b'), profile: webProfile(), maxRedirects: 0 }),
      'FEDERATION_TOO_MANY_REDIRECTS',
    );
  });

  test('nothing listening: FEDERATION_UNAVAILABLE', async () => {
    const s = https.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    await rejectsWith(
      fetchBundle({ trustDomain: 'partner.test', url: `https://localhost:${port}/`, profile: webProfile() }),
      'FEDERATION_UNAVAILABLE',
    );
  });
});

describe('bundle endpoint server', () => {
  test('GET and HEAD serve application/json; other methods 405; other paths 404; no client certificate', async () => {
    const call = (method: string, path = '/') =>
      new Promise<{ status: number; type?: string; allow?: string; body: string }>((resolve, reject) => {
        const req = https.request(
          `${spiffeEndpoint.url.replace(/\/$/, '')}${path}`,
          { method, rejectUnauthorized: false, agent: false },
          (res) => {
            let body = '';
            res.on('data', (d) => {
              body += d;
            });
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                type: res.headers['content-type'],
                allow: res.headers.allow,
                body,
              }),
            );
          },
        );
        req.on('error', reject);
        req.end();
      });
    const get = await call('GET');
    assert.equal(get.status, 200);
    assert.equal(get.type, 'application/json');
    assert.equal(SpiffeBundle.parse('partner.test', get.body).marshal(), partner.spiffeBundle().marshal());
    const head = await call('HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    const post = await call('POST');
    assert.equal(post.status, 405);
    assert.equal(post.allow, 'GET, HEAD');
    assert.equal((await call('GET', '/other')).status, 404);
  });

  test('the handler serves a live bundle source with a refresh hint, and 503 when it has none', async () => {
    const handler = bundleEndpointHandler('partner.test', new X509BundleSet([partner.x509Bundle()]), {
      refreshHintSeconds: 30,
    });
    const missing = bundleEndpointHandler('other.test', new X509BundleSet([partner.x509Bundle()]));
    const pem = webSvid.toPem();
    const s = https.createServer({ cert: pem.certificates, key: pem.privateKey }, (req, res) =>
      (req.url === '/missing' ? missing : handler)(req, res),
    );
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as AddressInfo).port;
    try {
      const b = await fetchBundle({
        trustDomain: 'partner.test',
        url: `https://localhost:${port}/`,
        profile: webProfile(),
      });
      assert.equal(b.refreshHintSeconds, 30);
      assert.equal(b.x509Authorities.length, partner.x509Bundle().authorities.length);
      await rejectsWith(
        fetchBundle({ trustDomain: 'other.test', url: `https://localhost:${port}/missing`, profile: webProfile() }),
        'FEDERATION_BAD_STATUS',
      );
    } finally {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  });
});

describe('FederatedBundleSource', () => {
  test('bad endpoints each give their typed error and the last good bundle stays', async () => {
    mode = 'good';
    const errors: string[] = [];
    const federated = await FederatedBundleSource.create({
      relationships: [{ trustDomain: 'partner.test', url: webUrl(), profile: webProfile() }],
      minRefreshMs: 50,
      maxRefreshMs: 50,
      backoff: { initialMs: 20, maxMs: 50 },
      timeoutMs: 300,
      maxBundleBytes: 256 * 1024,
      onError: (err) => errors.push(err.code),
    });
    try {
      const good = federated.getBundle('partner.test');
      assert.ok(good);
      for (const [m, code] of [
        ['big-stream', 'FEDERATION_BUNDLE_TOO_LARGE'],
        ['malformed', 'FEDERATION_BUNDLE_INVALID'],
        ['slow', 'FEDERATION_TIMEOUT'],
        ['loop', 'FEDERATION_REDIRECT_LOOP'],
        ['wrong-td', 'FEDERATION_WRONG_TRUST_DOMAIN'],
        ['stale', 'FEDERATION_BUNDLE_STALE'],
        ['wrong-host', 'FEDERATION_ENDPOINT_UNTRUSTED'],
        ['status-500', 'FEDERATION_BAD_STATUS'],
      ] as const) {
        errors.length = 0;
        mode = m;
        await waitFor(() => errors.includes(code), `${code} from ${m}`);
        assert.equal(federated.getBundle('partner.test'), good, `last good bundle kept after ${m}`);
        assert.equal(federated.status()[0]?.lastError?.code, code);
        assert.ok(federated.getX509BundleForTrustDomain(good.trustDomain).authorities.length > 0);
      }
      const health = federated.health();
      assert.equal(health.ready, true, 'a kept last good bundle keeps the source ready');
      assert.equal(health.lastError?.code, 'FEDERATION_BAD_STATUS');
      mode = 'good';
      await waitFor(() => federated.status()[0]?.lastError === undefined, 'recovery');
      assert.equal(federated.health().lastError, undefined);
    } finally {
      mode = 'good';
      await federated.close();
    }
  });

  test('https_spiffe, self-serving: rotation at the endpoint is picked up at the refresh hint, with no failed request', async () => {
    const errors: string[] = [];
    const federated = await FederatedBundleSource.create({
      relationships: [
        {
          trustDomain: 'partner.test',
          url: spiffeEndpoint.url,
          // Operator-supplied bootstrap bundle, in SPIFFE bundle format.
          profile: {
            type: 'https_spiffe',
            endpointSpiffeId: ENDPOINT_ID,
            bundle: SpiffeBundle.parse('partner.test', partner.spiffeBundle().marshal()),
          },
        },
      ],
      minRefreshMs: 200,
      onError: (err) => errors.push(`${err.code}: ${err.message}`),
      timeoutMs: 5000,
    });
    const bootstrapAuthority = partner.currentAuthority.certificate;
    // Our service (example.org) admits the partner's billing workload, trusting partner.test through federation.
    const serverSource = new StaticX509Source(await local.issueX509Svid(SERVICE_ID), local.x509Bundle());
    const tls = spiffeServerTls(withFederatedBundles(serverSource, federated), { authorize: matchId(PARTNER_CLIENT) });
    const server = https.createServer(tls.options, (_req, res) => res.end('ok'));
    tls.attach(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const client = new StaticX509Source(await partner.issueX509Svid(PARTNER_CLIENT, LONG), local.x509Bundle());
    const agent = createSpiffeHttpsAgent({ source: client, authorize: matchId(SERVICE_ID) });
    const request = () =>
      new Promise<number>((resolve, reject) => {
        https
          .get(url, { agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          })
          .on('error', reject);
      });
    let running = true;
    let ok = 0;
    const failures: string[] = [];
    const load = (async () => {
      while (running) {
        try {
          const status = await request();
          if (status === 200) ok++;
          else failures.push(`status ${status}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
        await sleep(10);
      }
    })();
    try {
      assert.equal(await request(), 200);
      // Phase 1: the partner publishes a new authority (not signing yet); we learn it at the refresh hint.
      const next = await partner.prepareX509Authority();
      const seq = BigInt(partner.sequence);
      await waitFor(
        () => (federated.getBundle('partner.test')?.sequenceNumber ?? 0n) >= seq,
        'the prepared authority to arrive',
        5000,
      );
      assert.ok(federated.getX509BundleForTrustDomain(partner.trustDomain).hasAuthority(next.certificate));
      // Phase 2: the partner signs with it; its workload and its bundle endpoint get new SVIDs.
      partner.activateX509Authority(next);
      client.update(await partner.issueX509Svid(PARTNER_CLIENT, LONG));
      endpointSvid.update(await partner.issueX509Svid(ENDPOINT_ID, LONG));
      await sleep(300);
      // Phase 3: the old authority is dropped; the self-serving endpoint is now trusted through the fetched bundle.
      partner.dropRetired();
      const dropped = BigInt(partner.sequence);
      await waitFor(
        () => (federated.getBundle('partner.test')?.sequenceNumber ?? 0n) >= dropped,
        'the retired authority to be dropped',
        5000,
      );
      assert.equal(federated.getX509BundleForTrustDomain(partner.trustDomain).hasAuthority(bootstrapAuthority), false);
      await sleep(1300); // one more refresh, authenticated only through the latest fetched bundle
      assert.equal(federated.status()[0]?.lastError, undefined, errors.join('\n'));
      const lastSuccess = federated.status()[0]?.lastSuccess;
      assert.ok(lastSuccess && Date.now() - lastSuccess.getTime() < 1500, 'refreshed within the hint');
    } finally {
      running = false;
      await load;
      agent.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await federated.close();
    }
    assert.deepEqual(failures, []);
    assert.ok(ok > 10, `requests served: ${ok}`);
    assert.deepEqual(errors, []);
  });

  test('https_spiffe endpoint that changes its SPIFFE ID: FEDERATION_ENDPOINT_ID_MISMATCH, last good bundle kept', async () => {
    const errors: string[] = [];
    const federated = await FederatedBundleSource.create({
      relationships: [
        {
          trustDomain: 'partner.test',
          url: spiffeEndpoint.url,
          profile: { type: 'https_spiffe', endpointSpiffeId: ENDPOINT_ID, bundle: partner.x509Bundle() },
        },
      ],
      minRefreshMs: 50,
      maxRefreshMs: 50,
      backoff: { initialMs: 20, maxMs: 50 },
      onError: (err) => errors.push(err.code),
      timeoutMs: 5000,
    });
    const good = federated.getBundle('partner.test');
    const original = endpointSvid.getX509Svid();
    try {
      endpointSvid.update(await partner.issueX509Svid('spiffe://partner.test/not-the-endpoint', LONG));
      await waitFor(() => errors.includes('FEDERATION_ENDPOINT_ID_MISMATCH'), 'ID mismatch');
      assert.equal(federated.getBundle('partner.test'), good);
    } finally {
      endpointSvid.update(original);
      await federated.close();
    }
  });

  test('JWT bundles of a federated trust domain validate its JWT-SVIDs, next to the local ones', async () => {
    const federated = await FederatedBundleSource.create({
      relationships: [{ trustDomain: 'partner.test', url: webUrl(), profile: webProfile() }],
      timeoutMs: 5000,
    });
    try {
      const bundles = combineBundleSources(new JwtBundleSet([local.jwtBundle()]), federated);
      const token = await partner.issueJwtSvid(PARTNER_CLIENT, 'orders');
      const v = await parseAndValidateJwtSvid(token.token, bundles, 'orders');
      assert.equal(v.id.toString(), PARTNER_CLIENT);
      const localToken = await local.issueJwtSvid(SERVICE_ID, 'orders');
      assert.equal((await parseAndValidateJwtSvid(localToken.token, bundles, 'orders')).id.toString(), SERVICE_ID);
    } finally {
      await federated.close();
    }
  });

  test('combined sources: a later source never replaces an earlier source’s bundle for the same trust domain', async () => {
    // A federated source claiming example.org (an impostor CA) next to the Workload API's example.org bundle.
    const claimed = new X509BundleSet([new X509Bundle('example.org', impostor.x509Bundle().authorities)]);
    const serverSource = new StaticX509Source(await local.issueX509Svid(SERVICE_ID), local.x509Bundle());
    const combined = withFederatedBundles(serverSource, claimed, new X509BundleSet([partner.x509Bundle()]));
    assert.equal(combined.getX509BundleForTrustDomain(local.trustDomain), serverSource.bundles.get('example.org'));
    assert.deepEqual(
      combined.bundles.trustDomains().map((t) => t.name),
      ['example.org', 'partner.test'],
    );
    assert.equal(combined.bundles, combined.bundles, 'the same set object until a source changes');
    let updates = 0;
    combined.onUpdate(() => updates++);
    serverSource.update(serverSource.getX509Svid(), local.x509Bundle());
    assert.equal(updates, 1);
  });

  test('ready() times out with SOURCE_TIMEOUT and the last error; removeRelationship forgets the bundle', async () => {
    mode = 'status-500';
    try {
      await assert.rejects(
        FederatedBundleSource.create({
          relationships: [{ trustDomain: 'partner.test', url: webUrl(), profile: webProfile() }],
          timeoutMs: 400,
          backoff: { initialMs: 50, maxMs: 100 },
        }),
        (err: Error & { code?: string; cause?: { code?: string } }) =>
          err.code === 'SOURCE_TIMEOUT' && err.cause?.code === 'FEDERATION_BAD_STATUS',
      );
    } finally {
      mode = 'good';
    }
    const federated = await FederatedBundleSource.create({
      relationships: [{ trustDomain: 'partner.test', url: webUrl(), profile: webProfile() }],
      timeoutMs: 5000,
    });
    let updates = 0;
    federated.onUpdate(() => updates++);
    await federated.removeRelationship('partner.test');
    assert.equal(federated.x509Bundles.size, 0);
    assert.equal(updates, 1);
    await federated.close();
    assert.equal(federated.health().ready, false);
    assert.throws(() => federated.x509Bundles, { code: 'SOURCE_CLOSED' });
  });
});
