// Interoperability with a real SPIRE server + agent and go-spiffe programs (directions 1, 2 and 4 of the
// issue, plus federation with a second trust domain), once per SPIRE version. Run with test/interop/run.sh.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  JwtSource,
  parseAndValidateJwtSvid,
  SpiffeBundle,
  SpiffeError,
  StaticX509Source,
  TrustDomain,
  verifyX509Svid,
  WorkloadApiClient,
  X509BundleSet,
  X509Source,
} from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { bin, GO_SPIFFE_VERSION, goMtlsGet, goMtlsServe, nodeSelector, runJson, Spire, waitFor } from './harness.js';
import { describeEachSpireVersion, startHelloService } from './suite.js';

const TD = 'example.org';
const ID = {
  node: `spiffe://${TD}/node`,
  goServer: `spiffe://${TD}/go-server`,
  goClient: `spiffe://${TD}/go-client`,
  rogue: `spiffe://${TD}/rogue`,
  goFetch: `spiffe://${TD}/go-fetch`,
  otherNode: 'spiffe://other.org/node',
};
// The Node workload's X.509-SVIDs live 20 s so the agent rotates them (at about half-life) during the run.
const NODE_SVID_TTL = 20;

// The whole suite runs against every SPIRE version build.sh built, newest first.
describeEachSpireVersion(
  (version) => `SPIRE ${version} and go-spiffe ${GO_SPIFFE_VERSION}`,
  (version) => {
    let spire: Spire;
    let other: DevWorkloadApiServer; // a second trust domain (other.org), federated with SPIRE's
    const go = { server: '', client: '', rogue: '', fetch: '' };
    let source: X509Source;
    let jwtSource: JwtSource;

    before(async () => {
      spire = await Spire.startServer(TD, { version });
      other = await DevWorkloadApiServer.start({ trustDomain: 'other.org', workloads: { node: ID.otherNode } });
      // Federation, both ways through the SPIFFE bundle format: our marshalled bundle goes into SPIRE, and
      // SPIRE's bundle is parsed by our core below.
      await spire.setFederatedBundle('spiffe://other.org', other.ca.spiffeBundle().marshal());
      const fed = ['spiffe://other.org'];
      await spire.createEntry({ spiffeId: ID.node, selectors: [nodeSelector()], x509SvidTtl: NODE_SVID_TTL });
      // Each Go program is copied under its own name, so it has its own selector, entry and ID.
      go.server = await spire.registerProgram(bin.mtlsServer, 'go-server', {
        spiffeId: ID.goServer,
        federatesWith: fed,
      });
      go.client = await spire.registerProgram(bin.mtlsClient, 'go-client', {
        spiffeId: ID.goClient,
        federatesWith: fed,
      });
      go.rogue = await spire.registerProgram(bin.mtlsClient, 'rogue-client', { spiffeId: ID.rogue });
      go.fetch = await spire.registerProgram(bin.fetch, 'go-fetch', { spiffeId: ID.goFetch });
      await spire.startAgent();

      // Entries reach the agent on its next sync; both sources wait (and retry) until the SVID is there.
      source = await X509Source.create({ address: spire.workloadApiAddress, timeoutMs: 60_000 });
      jwtSource = await JwtSource.create({ address: spire.workloadApiAddress, timeoutMs: 60_000 });
    });

    after(async () => {
      await source?.close();
      await jwtSource?.close();
      await other?.stop();
      if (spire) await spire.stop();
    });

    describe('1. our Workload API client and sources against the SPIRE agent', () => {
      test('X509Source: the SVID SPIRE issued for this Node process, verified against SPIRE’s bundle', () => {
        const svid = source.getX509Svid();
        assert.equal(svid.id.toString(), ID.node);
        const verified = verifyX509Svid(svid.certificates, source.bundles);
        assert.equal(verified.id.toString(), ID.node);
        // SPIRE backdates notBefore (clock skew), so the entry TTL shows in the time left, not the lifetime.
        const left = (svid.expiresAt.getTime() - Date.now()) / 1000;
        assert.ok(left > 0 && left <= NODE_SVID_TTL + 1, `SVID expires in ${left}s: follows the entry TTL`);
        assert.ok(source.bundles.has(TD));
      });

      test('X.509 and JWT bundles match what go-spiffe fetches from the same agent', async () => {
        const client = new WorkloadApiClient({ address: spire.workloadApiAddress });
        try {
          const ours = await client.fetchJwtBundles();
          const theirs = await waitFor('go-spiffe jwtbundles', async () => {
            const r = await runJson(go.fetch, ['-workload-api', spire.workloadApiAddress, '-mode', 'jwtbundles']);
            return r.code === 0 ? r.lines[0] : undefined;
          });
          const kids = [...ours.getJwtBundleForTrustDomain(TrustDomain.parse(TD)).authorities.keys()].sort();
          assert.ok(kids.length > 0);
          assert.deepEqual((theirs.bundles as Record<string, string[]>)[TD], kids);

          const x509 = await client.fetchX509Bundles();
          const goX509 = await runJson(go.fetch, ['-workload-api', spire.workloadApiAddress, '-mode', 'x509']);
          assert.equal(goX509.code, 0, goX509.stderr);
          const g = goX509.lines[0] as { id: string; bundles: Record<string, number> };
          assert.equal(g.id, ID.goFetch);
          assert.equal(x509.getX509BundleForTrustDomain(TrustDomain.parse(TD)).authorities.length, g.bundles[TD]);
        } finally {
          await client.close();
        }
      });

      test('JWT-SVID minted by SPIRE validated by our core, and by SPIRE’s ValidateJWTSVID', async () => {
        const svid = await jwtSource.fetchJwtSvid({ audience: 'interop-audience' });
        assert.equal(svid.id.toString(), ID.node);
        const validated = await parseAndValidateJwtSvid(svid.token, jwtSource.bundles, 'interop-audience');
        assert.equal(validated.id.toString(), ID.node);
        await assert.rejects(
          parseAndValidateJwtSvid(svid.token, jwtSource.bundles, 'another-audience'),
          (e: SpiffeError) => e.code === 'JWTSVID_AUDIENCE_MISMATCH',
        );
        const client = new WorkloadApiClient({ address: spire.workloadApiAddress });
        try {
          const bySpire = await client.validateJwtSvid(svid.token, 'interop-audience');
          assert.equal(bySpire.id.toString(), ID.node);
        } finally {
          await client.close();
        }
      });

      test('JWT-SVID fetched by go-spiffe from SPIRE validated by our core', async () => {
        const r = await runJson(go.fetch, [
          '-workload-api',
          spire.workloadApiAddress,
          '-mode',
          'jwt',
          '-audience',
          'node-service',
        ]);
        assert.equal(r.code, 0, r.stderr);
        const token = (r.lines[0] as { token: string }).token;
        const svid = await parseAndValidateJwtSvid(token, jwtSource.bundles, 'node-service');
        assert.equal(svid.id.toString(), ID.goFetch);
        await assert.rejects(parseAndValidateJwtSvid(token, jwtSource.bundles, 'someone-else'), SpiffeError);
      });

      test(`rotation: SPIRE renews the ${NODE_SVID_TTL}s SVID and the source delivers it`, async () => {
        const first = source.getX509Svid();
        const rotated = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), NODE_SVID_TTL * 2000);
          const off = source.onUpdate(() => {
            if (source.getX509Svid().leaf.serialNumber !== first.leaf.serialNumber) {
              clearTimeout(timer);
              off();
              resolve(true);
            }
          });
        });
        assert.ok(rotated, `no new SVID within ${NODE_SVID_TTL * 2}s\n${spire.logs()}`);
        const next = source.getX509Svid();
        assert.equal(next.id.toString(), ID.node);
        assert.ok(next.expiresAt > first.expiresAt);
        verifyX509Svid(next.certificates, source.bundles);
      });
    });

    describe('2. mTLS between go-spiffe and our adapters, SVIDs from SPIRE', () => {
      let app: FastifyInstance;
      let url: string;

      before(async () => {
        ({ app, url } = await startHelloService(source, [ID.goClient]));
      });
      after(async () => {
        await app?.close();
      });

      test('go-spiffe client → our Fastify server: allowed ID gets 200 and is seen as itself', async () => {
        const r = await goMtlsGet(go.client, spire.workloadApiAddress, url, { id: ID.node });
        assert.equal(r.code, 0, JSON.stringify(r.lines) + r.stderr);
        assert.equal(r.lines[0]?.status, 200);
        assert.deepEqual(JSON.parse(r.lines[0]?.body as string), { peer: ID.goClient });
      });

      test('go-spiffe client with an ID not on the allowlist → 403', async () => {
        const r = await goMtlsGet(go.rogue, spire.workloadApiAddress, url, { id: ID.node });
        assert.equal(r.lines[0]?.status, 403, JSON.stringify(r.lines) + r.stderr);
      });

      test('go-spiffe client expecting another server ID refuses our server', async () => {
        const r = await goMtlsGet(go.client, spire.workloadApiAddress, url, { id: `spiffe://${TD}/somebody-else` });
        assert.equal(r.code, 1);
        assert.match(String(r.lines[0]?.error), /unexpected ID|somebody-else|certificate/i);
      });

      test('our client → go-spiffe server: allowed both ways, rejected when either side says no', async () => {
        const srv = await goMtlsServe(go.server, spire.workloadApiAddress, { id: ID.node });
        const strict = await goMtlsServe(go.server, spire.workloadApiAddress, { id: ID.goClient });
        try {
          assert.equal(srv.first.id, ID.goServer);
          const ok = createSpiffeDispatcher({ source, authorize: [ID.goServer] });
          const res = await request(`https://${srv.first.address}/x`, { dispatcher: ok });
          assert.equal(res.statusCode, 200);
          assert.deepEqual(await res.body.json(), { peer: ID.node, server: ID.goServer, path: '/x' });

          // We expect a different server ID: our side refuses the go-spiffe server.
          const wrong = createSpiffeDispatcher({ source, authorize: [`spiffe://${TD}/not-go`] });
          await assert.rejects(request(`https://${srv.first.address}/`, { dispatcher: wrong }));

          // The go-spiffe server only allows go-client: it refuses us.
          await assert.rejects(request(`https://${strict.first.address}/`, { dispatcher: ok }));
          await Promise.all([ok.close(), wrong.close()]);
        } finally {
          await srv.stop();
          await strict.stop();
        }
      });
    });

    describe('federation: example.org (SPIRE) and other.org (our dev server)', () => {
      test('SPIFFE bundle format both ways: SPIRE’s parses in our core, ours round-trips through SPIRE', async () => {
        const bundle = SpiffeBundle.parse(TD, await spire.bundleSpiffeJson());
        assert.ok(bundle.x509Bundle().authorities.length > 0);
        assert.ok(bundle.jwtBundle().authorities.size > 0);
        assert.ok(bundle.x509Bundle().authorities.every((c) => c.checkIssued(c)));
        // SPIRE stored the bundle we marshalled for other.org; what it prints back has the same authorities.
        const { stdout } = await spire.server(['bundle', 'list', '-id', 'spiffe://other.org', '-format', 'spiffe']);
        const back = SpiffeBundle.parse('other.org', stdout);
        const ours = other.ca.spiffeBundle();
        assert.deepEqual(
          back.x509Bundle().authorities.map((c) => c.fingerprint256),
          ours.x509Bundle().authorities.map((c) => c.fingerprint256),
        );
        assert.deepEqual(
          [...back.jwtBundle().authorities.keys()].sort(),
          [...ours.jwtBundle().authorities.keys()].sort(),
        );
      });

      test('go-spiffe client (example.org) → our Fastify server (other.org) authorizing by trust domain', async () => {
        const otherSource = await X509Source.create({ address: other.address('node'), timeoutMs: 10_000 });
        const spireBundle = SpiffeBundle.parse(TD, await spire.bundleSpiffeJson()).x509Bundle();
        const fedSource = new StaticX509Source(
          otherSource.getX509Svid(),
          new X509BundleSet([otherSource.getX509BundleForTrustDomain(other.trustDomain), spireBundle]),
        );
        const { app, url } = await startHelloService(fedSource, { trustDomain: TD });
        try {
          const r = await goMtlsGet(go.client, spire.workloadApiAddress, url, { trustDomain: 'other.org' });
          assert.equal(r.code, 0, JSON.stringify(r.lines) + r.stderr);
          assert.deepEqual(JSON.parse(r.lines[0]?.body as string), { peer: ID.goClient });

          // And the other way: our other.org client → go-spiffe server (example.org) allowing other.org.
          const srv = await goMtlsServe(go.server, spire.workloadApiAddress, { trustDomain: 'other.org' });
          try {
            const d = createSpiffeDispatcher({ source: fedSource, authorize: { trustDomain: TD } });
            const res = await request(`https://${srv.first.address}/`, { dispatcher: d });
            assert.equal(res.statusCode, 200);
            assert.equal(((await res.body.json()) as { peer: string }).peer, ID.otherNode);
            await d.close();
          } finally {
            await srv.stop();
          }
        } finally {
          await app.close();
          await otherSource.close();
        }
      });
    });
  },
);
