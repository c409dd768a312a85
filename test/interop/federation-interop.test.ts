// SPIFFE Federation between our code (packages/core/src/federation) and implementations we did not write:
// go-spiffe's federation.FetchBundle and federation.Handler (the go/federation program), and a SPIRE server
// that fetches our bundle endpoint and serves its own. Both profiles, both directions, rotation at the
// refresh hint, bad endpoints. Run with test/interop/run.sh.
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  createBundleEndpointServer,
  FederatedBundleSource,
  type FederationError,
  fetchBundle,
  SpiffeBundle,
  SpiffeError,
  withFederatedBundles,
  X509Source,
} from '@spiffe-ts/core';
import { type Authority, createAuthority, DevCa, DevWorkloadApiServer, issueX509SvidWith } from '@spiffe-ts/dev-server';
import type { FastifyInstance } from 'fastify';
import {
  bin,
  binariesPresent,
  GO_SPIFFE_VERSION,
  goFetchBundle,
  goMtlsGet,
  Spire,
  startJson,
  waitFor,
} from './harness.js';
import { describeEachSpireVersion, startHelloService } from './suite.js';

/** The same bundle with another `spiffe_refresh_hint`. */
function withHint(b: SpiffeBundle, seconds: number): SpiffeBundle {
  return new SpiffeBundle({
    trustDomain: b.trustDomain,
    x509Authorities: b.x509Authorities,
    jwtAuthorities: b.jwtAuthorities.values(),
    sequenceNumber: b.sequenceNumber,
    refreshHintSeconds: seconds,
  });
}

const fingerprints = (b: SpiffeBundle) => b.x509Authorities.map((c) => c.fingerprint256).sort();
const kids = (b: SpiffeBundle) => [...b.jwtAuthorities.keys()].sort();

/** Rejects with a SpiffeError of this code. */
async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof SpiffeError, String(e));
    assert.equal(e.code, code, e.message);
    return true;
  });
}

/** Web PKI material for `https_web`: a test root and a certificate for localhost it signed. */
interface WebPki {
  root: Authority;
  cert: string;
  key: string;
}

async function webPki(): Promise<WebPki> {
  const root = await createAuthority({ subject: 'CN=interop web root', uri: null });
  const leaf = (await issueX509SvidWith(root, 'spiffe://unused', { uris: [], dnsNames: ['localhost'] })).toPem();
  return { root, cert: leaf.certificates, key: leaf.privateKey };
}

describe(`federation: our client and server against go-spiffe ${GO_SPIFFE_VERSION}`, {
  skip: !binariesPresent() && 'run test/interop/run.sh',
}, () => {
  const TD = 'ours.test';
  const ENDPOINT_ID = `spiffe://${TD}/bundle-endpoint`;
  let dir: string;
  let ca: DevCa;
  let web: WebPki;
  const file = (name: string) => join(dir, name);
  // Written aside and renamed: go-spiffe's server reads the bundle file on every request, never a half-written one.
  const write = (name: string, text: string) => {
    writeFileSync(`${file(name)}.tmp`, text, { mode: 0o600 });
    renameSync(`${file(name)}.tmp`, file(name));
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'interop-fed-'));
    ca = await DevCa.create({ trustDomain: TD });
    web = await webPki();
    write('web-root.pem', web.root.certificate.toString());
    write('web.pem', web.cert);
    write('web-key.pem', web.key);
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe('go-spiffe federation.FetchBundle → our createBundleEndpointServer', () => {
    test('https_spiffe: go-spiffe authenticates our endpoint SVID and reads our bundle (and its rotation)', async () => {
      const svid = await ca.issueX509Svid(ENDPOINT_ID);
      const server = await createBundleEndpointServer({
        trustDomain: TD,
        bundle: () => withHint(ca.spiffeBundle(), 7),
        profile: { type: 'https_spiffe', svid: { getX509Svid: () => svid } },
      });
      try {
        write('bootstrap.json', ca.spiffeBundle().marshal());
        const fetch = (id: string) =>
          goFetchBundle(TD, server.url, { type: 'https_spiffe', endpointId: id, bundleFile: file('bootstrap.json') });
        const r = await fetch(ENDPOINT_ID);
        assert.equal(r.code, 0, JSON.stringify(r.lines) + r.stderr);
        assert.deepEqual(r.lines[0], {
          trustDomain: TD,
          x509Authorities: 1,
          jwtKids: kids(ca.spiffeBundle()),
          sequenceNumber: ca.sequence,
          refreshHint: 7,
        });

        // A rotated CA is served on the next request, without restarting the server.
        await ca.rotateX509Authority();
        const rotated = await fetch(ENDPOINT_ID);
        assert.equal(rotated.code, 0, rotated.stderr);
        assert.equal(rotated.lines[0]?.x509Authorities, 2);
        assert.equal(rotated.lines[0]?.sequenceNumber, ca.sequence);

        // go-spiffe expecting another endpoint ID refuses our server.
        const wrong = await fetch(`spiffe://${TD}/not-the-endpoint`);
        assert.equal(wrong.code, 1);
        assert.match(String(wrong.lines[0]?.error), /unexpected ID|not-the-endpoint/);
      } finally {
        await server.close();
      }
    });

    test('https_web: go-spiffe checks our certificate against its roots and reads our bundle', async () => {
      const server = await createBundleEndpointServer({
        trustDomain: TD,
        bundle: ca.spiffeBundle(),
        profile: { type: 'https_web', cert: web.cert, key: web.key },
      });
      try {
        const url = server.url.replace('127.0.0.1', 'localhost');
        const r = await goFetchBundle(TD, url, { type: 'https_web', caFile: file('web-root.pem') });
        assert.equal(r.code, 0, JSON.stringify(r.lines) + r.stderr);
        assert.equal(r.lines[0]?.trustDomain, TD);
        assert.equal(r.lines[0]?.x509Authorities, ca.x509Bundle().authorities.length);
        assert.deepEqual(r.lines[0]?.jwtKids, kids(ca.spiffeBundle()));

        // Roots that did not issue our certificate, and a URL host our certificate does not name: refused.
        write('other-root.pem', (await createAuthority({ uri: null })).certificate.toString());
        const untrusted = await goFetchBundle(TD, url, { type: 'https_web', caFile: file('other-root.pem') });
        assert.equal(untrusted.code, 1);
        assert.match(String(untrusted.lines[0]?.error), /certificate/);
        const wrongHost = await goFetchBundle(TD, server.url, { type: 'https_web', caFile: file('web-root.pem') });
        assert.equal(wrongHost.code, 1);
        assert.match(String(wrongHost.lines[0]?.error), /certificate|IP SANs|127\.0\.0\.1/);
      } finally {
        await server.close();
      }
    });
  });

  describe('our fetchBundle and FederatedBundleSource → go-spiffe federation.Handler', () => {
    const serveGo = (profileArgs: string[]) =>
      startJson(bin.federation, ['-mode', 'serve', '-td', TD, '-bundle', file('served.json'), ...profileArgs]);

    test('https_spiffe: fetch, then a bundle rotated at the endpoint is picked up at its refresh hint', async () => {
      const svid = (await ca.issueX509Svid(ENDPOINT_ID, { ttlSeconds: 3600 })).toPem();
      write('svid.pem', svid.certificates);
      write('svid-key.pem', svid.privateKey);
      write('served.json', withHint(ca.spiffeBundle(), 1).marshal());
      const bootstrap = ca.spiffeBundle();
      const srv = await serveGo(['-svid-cert', file('svid.pem'), '-svid-key', file('svid-key.pem')]);
      const url = srv.first.url as string;
      const profile = { type: 'https_spiffe' as const, endpointSpiffeId: ENDPOINT_ID, bundle: bootstrap };
      const errors: FederationError[] = [];
      let fed: FederatedBundleSource | undefined;
      try {
        const got = await fetchBundle({ trustDomain: TD, url, profile });
        assert.deepEqual(fingerprints(got), fingerprints(ca.spiffeBundle()));
        assert.deepEqual(kids(got), kids(ca.spiffeBundle()));
        assert.equal(got.sequenceNumber, BigInt(ca.sequence));
        assert.equal(got.refreshHintSeconds, 1);

        // A wrong endpoint ID and a bootstrap bundle of another trust domain's CA are refused, typed.
        await rejectsWith(
          fetchBundle({ trustDomain: TD, url, profile: { ...profile, endpointSpiffeId: `spiffe://${TD}/other` } }),
          'FEDERATION_ENDPOINT_ID_MISMATCH',
        );
        const stranger = await DevCa.create({ trustDomain: TD });
        await rejectsWith(
          fetchBundle({ trustDomain: TD, url, profile: { ...profile, bundle: stranger.x509Bundle() } }),
          'FEDERATION_ENDPOINT_UNTRUSTED',
        );

        // The watcher: the endpoint's 1 s hint is honoured (floor lowered from its 10 s default for the test).
        fed = await FederatedBundleSource.create({
          relationships: [{ trustDomain: TD, url, profile }],
          minRefreshMs: 500,
          onError: (e) => errors.push(e),
        });
        assert.deepEqual(fingerprints(fed.getBundle(TD) as SpiffeBundle), fingerprints(ca.spiffeBundle()));
        const next = await ca.rotateX509Authority(); // the endpoint SVID's CA stays in the bundle (overlap)
        write('served.json', withHint(ca.spiffeBundle(), 1).marshal());
        const t0 = Date.now();
        const watcher = fed;
        await waitFor(
          'the rotated bundle in FederatedBundleSource',
          async () =>
            watcher.getBundle(TD)?.x509Authorities.some((c) => c.fingerprint256 === next.certificate.fingerprint256)
              ? true
              : undefined,
          10_000,
        );
        const took = Date.now() - t0;
        // Well under the 10 s default floor and the 5 min default interval (a loaded machine gets leeway).
        assert.ok(took < 5000, `picked up after ${took} ms, hint 1 s`);
        assert.equal(watcher.getBundle(TD)?.sequenceNumber, BigInt(ca.sequence));
        // An SVID from the new CA verifies against the federated bundles: they are live, not copied.
        const fresh = await ca.issueX509Svid(`spiffe://${TD}/workload`);
        assert.ok(
          watcher.getX509BundleForTrustDomain(ca.trustDomain).authorities.some((c) => fresh.leaf.checkIssued(c)),
        );
        assert.equal(errors.length, 0, `no failed fetch meanwhile: ${errors.map((e) => e.code).join(', ')}`);
        assert.equal(watcher.status()[0]?.lastError, undefined);

        // Bad endpoint: the file it serves is no bundle (go-spiffe answers 500), then the server is gone.
        // Each failure is typed, reported, and the last good bundle is kept.
        const good = fingerprints(watcher.getBundle(TD) as SpiffeBundle);
        write('served.json', 'not a bundle');
        await waitFor('a failed fetch', async () => (errors.length > 0 ? true : undefined), 10_000);
        assert.equal(errors[0]?.code, 'FEDERATION_BAD_STATUS', errors[0]?.message);
        assert.deepEqual(fingerprints(watcher.getBundle(TD) as SpiffeBundle), good);
        await srv.stop();
        await waitFor(
          'FEDERATION_UNAVAILABLE',
          async () => (errors.some((e) => e.code === 'FEDERATION_UNAVAILABLE') ? true : undefined),
          15_000,
        );
        assert.deepEqual(fingerprints(watcher.getBundle(TD) as SpiffeBundle), good);
        assert.equal(watcher.status()[0]?.lastError?.code, 'FEDERATION_UNAVAILABLE');
        assert.equal(watcher.health().ready, true, 'the last good bundle keeps the source ready');
      } finally {
        await fed?.close();
        await srv.stop();
      }
    });

    test('https_web: fetch with our roots; untrusted roots and a wrong host name refused', async () => {
      write('served.json', withHint(ca.spiffeBundle(), 1).marshal());
      const srv = await serveGo([
        '-profile',
        'https_web',
        '-web-cert',
        file('web.pem'),
        '-web-key',
        file('web-key.pem'),
      ]);
      const port = (srv.first.address as string).split(':').pop();
      const url = `https://localhost:${port}/`;
      const errors: FederationError[] = [];
      let fed: FederatedBundleSource | undefined;
      try {
        const got = await fetchBundle({
          trustDomain: TD,
          url,
          profile: { type: 'https_web', ca: web.root.certificate.toString() },
        });
        assert.deepEqual(fingerprints(got), fingerprints(ca.spiffeBundle()));
        await rejectsWith(
          fetchBundle({
            trustDomain: TD,
            url,
            profile: { type: 'https_web', ca: ca.currentAuthority.certificate.toString() },
          }),
          'FEDERATION_ENDPOINT_UNTRUSTED',
        );
        await rejectsWith(
          fetchBundle({
            trustDomain: TD,
            url: `https://127.0.0.1:${port}/`,
            profile: { type: 'https_web', ca: web.root.certificate.toString() },
          }),
          'FEDERATION_ENDPOINT_UNTRUSTED',
        );
        // Node's own root store does not know the test root.
        await rejectsWith(
          fetchBundle({ trustDomain: TD, url, profile: { type: 'https_web' } }),
          'FEDERATION_ENDPOINT_UNTRUSTED',
        );

        fed = await FederatedBundleSource.create({
          relationships: [
            { trustDomain: TD, url, profile: { type: 'https_web', ca: web.root.certificate.toString() } },
          ],
          minRefreshMs: 500,
          onError: (e) => errors.push(e),
        });
        const kid = await ca.rotateJwtAuthority();
        write('served.json', withHint(ca.spiffeBundle(), 1).marshal());
        const watcher = fed;
        await waitFor(
          'the new JWT key',
          async () => (watcher.getBundle(TD)?.jwtAuthorities.has(kid) ? true : undefined),
          5000,
        );
        assert.equal(errors.length, 0, errors.map((e) => e.code).join(', '));
      } finally {
        await fed?.close();
        await srv.stop();
      }
    });
  });
});

// SPIRE (example.org) and our trust domain ours.test (a dev Workload API serving its bundle endpoint), federated
// both ways through bundle endpoints over https_spiffe.
describeEachSpireVersion(
  (version) => `federation: SPIRE ${version} and our bundle endpoint and client`,
  (version) => {
    const TD = 'example.org';
    const OURS = 'ours.test';
    const ID = {
      goClient: `spiffe://${TD}/go-client`,
      rogue: `spiffe://${TD}/rogue`,
      svc: `spiffe://${OURS}/svc`,
    };
    let spire: Spire;
    let ours: DevWorkloadApiServer;
    let workDir: string;
    let spireBootstrap: SpiffeBundle;
    let addedKid: string;
    let web: WebPki;
    const go = { client: '', rogue: '' };
    const spireBundleOf = async (tdId: string) => {
      const json = await spire.federatedBundleJson(tdId);
      return json === undefined ? undefined : SpiffeBundle.parse(tdId.replace('spiffe://', ''), json);
    };
    const spireProfile = () => ({
      type: 'https_spiffe' as const,
      endpointSpiffeId: spire.serverSpiffeId,
      bundle: spireBootstrap,
    });

    before(async () => {
      workDir = mkdtempSync(join(tmpdir(), 'interop-fed-spire-'));
      // Our trust domain: its endpoint asks to be refreshed every second (SPIRE polls at most every 15 s).
      ours = await DevWorkloadApiServer.start({
        trustDomain: OURS,
        workloads: { svc: ID.svc },
        autoRotate: false,
        bundleEndpoint: { refreshHintSeconds: 1 },
      });
      // SPIRE fetches https_web endpoints with Go's system roots: SSL_CERT_FILE makes them our test root.
      web = await webPki();
      writeFileSync(join(workDir, 'web-root.pem'), web.root.certificate.toString());
      spire = await Spire.startServer(TD, {
        version,
        bundleEndpoint: { refreshHint: '2s' },
        env: { SSL_CERT_FILE: join(workDir, 'web-root.pem') },
      });
      spireBootstrap = SpiffeBundle.parse(TD, await spire.bundleSpiffeJson());
      // The relationship with our endpoint (entries can federate only with a trust domain SPIRE has a bundle for).
      // The operator's bootstrap bundle predates a JWT key we add at once: SPIRE has that key only if it fetched.
      const bootstrap = ours.ca.spiffeBundle();
      await ours.rotateJwtAuthority({ propagationMs: 0 });
      addedKid = kids(ours.ca.spiffeBundle()).find((k) => !bootstrap.jwtAuthorities.has(k)) as string;
      await spire.createFederation({
        trustDomain: OURS,
        url: ours.bundleEndpointUrl as string,
        endpointSpiffeId: String(ours.bundleEndpointSpiffeId),
        bundleJson: bootstrap.marshal(),
      });
      const federatesWith = [`spiffe://${OURS}`];
      go.client = await spire.registerProgram(bin.mtlsClient, 'go-client', { spiffeId: ID.goClient, federatesWith });
      go.rogue = await spire.registerProgram(bin.mtlsClient, 'rogue-client', { spiffeId: ID.rogue, federatesWith });
      await spire.startAgent();
    });

    after(async () => {
      await ours?.stop();
      if (spire) await spire.stop();
      if (workDir) rmSync(workDir, { recursive: true, force: true });
    });

    test('SPIRE federates with our bundle endpoint (https_spiffe) and follows our CA rotation at the refresh hint', async () => {
      // Set up in before(): SPIRE has the JWT key added after the bootstrap bundle only if it fetched ours.
      const first = await waitFor(
        'SPIRE fetching our bundle',
        async () => {
          const b = await spireBundleOf(`spiffe://${OURS}`);
          return b?.jwtAuthorities.has(addedKid) ? b : undefined;
        },
        40_000,
      );
      assert.deepEqual(fingerprints(first), fingerprints(ours.ca.spiffeBundle()));

      // CA rotation as SPIRE does it: the new CA is published first, and signs only once SPIRE trusts it.
      const next = await ours.ca.prepareX509Authority();
      let t0 = Date.now();
      await waitFor(
        'SPIRE picking up our new CA',
        async () =>
          (await spireBundleOf(`spiffe://${OURS}`))?.x509Authorities.some(
            (c) => c.fingerprint256 === next.certificate.fingerprint256,
          )
            ? true
            : undefined,
        40_000,
      );
      const tookPrepare = Date.now() - t0;
      // Now the new CA signs (our endpoint SVID too) and the old one is dropped: SPIRE must authenticate the new
      // endpoint SVID with the bundle it fetched, and follow the removal.
      ours.ca.activateX509Authority(next);
      await ours.rotateSvids();
      ours.dropRetiredAuthorities();
      t0 = Date.now();
      const last = await waitFor(
        'SPIRE dropping our retired CA',
        async () => {
          const b = await spireBundleOf(`spiffe://${OURS}`);
          return b?.x509Authorities.length === 1 ? b : undefined;
        },
        40_000,
      );
      assert.equal(last.x509Authorities[0]?.fingerprint256, next.certificate.fingerprint256);
      // SPIRE fetched at every poll without a failure (its log has each refresh, and each error, per trust domain).
      const log = spire
        .serverLog()
        .split('\n')
        .filter((l) => l.includes(`trust_domain=${OURS}`));
      assert.ok(log.filter((l) => l.includes('Bundle refreshed')).length >= 3, log.join('\n'));
      assert.deepEqual(
        log.filter((l) => /level=(error|warning)/.test(l)),
        [],
      );
      process.stderr.write(
        `# SPIRE picked up our rotated bundle in ${tookPrepare} ms and ${Date.now() - t0} ms (polls every 15 s)\n`,
      );
    });

    test('SPIRE federates with our bundle endpoint over https_web', async () => {
      const webTd = 'web.ours.test';
      const webCa = await DevCa.create({ trustDomain: webTd });
      const endpoint = await createBundleEndpointServer({
        trustDomain: webTd,
        bundle: () => withHint(webCa.spiffeBundle(), 1),
        profile: { type: 'https_web', cert: web.cert, key: web.key },
      });
      try {
        // No bootstrap bundle: https_web needs none.
        await spire.createFederation({ trustDomain: webTd, url: endpoint.url.replace('127.0.0.1', 'localhost') });
        const got = await waitFor(
          'SPIRE fetching our https_web endpoint',
          async () => {
            const b = await spireBundleOf(`spiffe://${webTd}`);
            return b && b.x509Authorities.length > 0 ? b : undefined;
          },
          40_000,
        );
        assert.deepEqual(fingerprints(got), fingerprints(webCa.spiffeBundle()));
        assert.deepEqual(kids(got), kids(webCa.spiffeBundle()));
      } finally {
        await endpoint.close();
      }
    });

    test('our fetchBundle and FederatedBundleSource → SPIRE’s bundle endpoint (https_spiffe), live across a SPIRE CA rotation', async () => {
      const url = spire.bundleEndpointUrl as string;
      const got = await fetchBundle({ trustDomain: TD, url, profile: spireProfile() });
      const shown = SpiffeBundle.parse(TD, await spire.bundleSpiffeJson());
      assert.deepEqual(fingerprints(got), fingerprints(shown));
      assert.deepEqual(kids(got), kids(shown));
      assert.equal(got.refreshHintSeconds, 2);

      const errors: FederationError[] = [];
      const fed = await FederatedBundleSource.create({
        relationships: [{ trustDomain: TD, url, profile: spireProfile() }],
        minRefreshMs: 500,
        onError: (e) => errors.push(e),
      });
      try {
        await spire.server(['localauthority', 'x509', 'prepare']);
        const prepared = SpiffeBundle.parse(TD, await spire.bundleSpiffeJson());
        assert.equal(prepared.x509Authorities.length, shown.x509Authorities.length + 1);
        const t0 = Date.now();
        await waitFor(
          'SPIRE’s prepared CA in FederatedBundleSource',
          async () =>
            fed.getBundle(TD)?.x509Authorities.length === prepared.x509Authorities.length ? true : undefined,
          15_000,
        );
        const took = Date.now() - t0;
        assert.ok(took < 8000, `picked up after ${took} ms, hint 2 s (SPIRE caches its bundle for 1 s)`);
        assert.deepEqual(fingerprints(fed.getBundle(TD) as SpiffeBundle), fingerprints(prepared));
        assert.equal(errors.length, 0, `no failed fetch meanwhile: ${errors.map((e) => e.code).join(', ')}`);
      } finally {
        await fed.close();
      }
    });

    test('bad endpoint configuration against SPIRE: typed errors', async () => {
      const url = spire.bundleEndpointUrl as string;
      await rejectsWith(
        fetchBundle({
          trustDomain: TD,
          url,
          profile: { ...spireProfile(), endpointSpiffeId: `spiffe://${TD}/not-spire` },
        }),
        'FEDERATION_ENDPOINT_ID_MISMATCH',
      );
      // Authenticating SPIRE with our trust domain's bundle: SPIRE's SVID does not chain to it.
      await rejectsWith(
        fetchBundle({ trustDomain: TD, url, profile: { ...spireProfile(), bundle: ours.ca.spiffeBundle() } }),
        'FEDERATION_ENDPOINT_UNTRUSTED',
      );
      // Expecting SPIRE's bundle endpoint to serve another trust domain's bundle: its authorities name example.org.
      await rejectsWith(
        fetchBundle({
          trustDomain: 'elsewhere.test',
          url,
          profile: { type: 'https_spiffe', endpointSpiffeId: spire.serverSpiffeId, bundle: spireBootstrap },
        }),
        'FEDERATION_WRONG_TRUST_DOMAIN',
      );
    });

    describe('a SPIRE workload (example.org) calls our service (ours.test), bundles from both bundle endpoints', () => {
      let app: FastifyInstance;
      let url: string;
      let source: X509Source;
      let fed: FederatedBundleSource;
      const errors: FederationError[] = [];

      before(async () => {
        source = await X509Source.create({ address: ours.address('svc'), timeoutMs: 10_000 });
        fed = await FederatedBundleSource.create({
          relationships: [{ trustDomain: TD, url: spire.bundleEndpointUrl as string, profile: spireProfile() }],
          minRefreshMs: 500,
          onError: (e) => errors.push(e),
        });
        ({ app, url } = await startHelloService(withFederatedBundles(source, fed), [ID.goClient]));
      });
      after(async () => {
        await app?.close();
        await fed?.close();
        await source?.close();
      });

      const call = (client: string) => goMtlsGet(client, spire.workloadApiAddress, url, { id: ID.svc });

      test('go-spiffe client allowed: 200 and seen as itself; another SPIRE workload: 403', async () => {
        // The agent learns ours.test's bundle (which SPIRE fetched from our endpoint) on its next sync.
        const r = await waitFor(
          'the go client reaching our service',
          async () => {
            const res = await call(go.client);
            return res.code === 0 ? res : undefined;
          },
          40_000,
        );
        assert.equal(r.lines[0]?.status, 200);
        assert.deepEqual(JSON.parse(r.lines[0]?.body as string), { peer: ID.goClient });
        const rogue = await call(go.rogue);
        assert.equal(rogue.lines[0]?.status, 403, JSON.stringify(rogue.lines) + rogue.stderr);
        assert.equal(errors.length, 0, errors.map((e) => e.code).join(', '));
      });

      test('SPIRE’s bundle endpoint goes away: typed error, the last good bundle kept, requests still served', async () => {
        const good = fingerprints(fed.getBundle(TD) as SpiffeBundle);
        // The go client has its SVID; stopping SPIRE's server (not the agent's cached SVIDs) kills the endpoint.
        await spire.stopServer();
        await waitFor('a failed fetch', async () => (errors.length > 0 ? true : undefined), 15_000);
        assert.equal(errors[0]?.code, 'FEDERATION_UNAVAILABLE', errors[0]?.message);
        assert.deepEqual(fingerprints(fed.getBundle(TD) as SpiffeBundle), good);
        assert.equal(fed.health().ready, true);
        const r = await call(go.client);
        assert.equal(r.lines[0]?.status, 200, JSON.stringify(r.lines) + r.stderr);
      });
    });
  },
);

// SPIRE's bundle endpoint with the https_web profile (serving_cert_file): a server of its own, no agent.
describeEachSpireVersion(
  (version) => `federation: SPIRE ${version} bundle endpoint over https_web`,
  (version) => {
    let spire: Spire | undefined;
    let dir: string;

    after(async () => {
      await spire?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('our fetchBundle (https_web, our roots) reads SPIRE’s bundle; other roots refused', async () => {
      dir = mkdtempSync(join(tmpdir(), 'interop-fed-web-'));
      const web = await webPki();
      writeFileSync(join(dir, 'web.pem'), web.cert);
      writeFileSync(join(dir, 'web-key.pem'), web.key, { mode: 0o600 });
      spire = await Spire.startServer('web.example', {
        version,
        bundleEndpoint: { servingCert: { certFile: join(dir, 'web.pem'), keyFile: join(dir, 'web-key.pem') } },
      });
      const url = (spire.bundleEndpointUrl as string).replace('127.0.0.1', 'localhost');
      const s = spire;
      const got = await waitFor('SPIRE’s https_web endpoint', () =>
        fetchBundle({
          trustDomain: 'web.example',
          url,
          profile: { type: 'https_web', ca: web.root.certificate.toString() },
        }),
      );
      const shown = SpiffeBundle.parse('web.example', await s.bundleSpiffeJson());
      assert.deepEqual(fingerprints(got), fingerprints(shown));
      assert.deepEqual(kids(got), kids(shown));
      assert.equal(got.refreshHintSeconds, 300);
      const other = await createAuthority({ uri: null });
      await rejectsWith(
        fetchBundle({
          trustDomain: 'web.example',
          url,
          profile: { type: 'https_web', ca: other.certificate.toString() },
        }),
        'FEDERATION_ENDPOINT_UNTRUSTED',
      );
    });
  },
);
