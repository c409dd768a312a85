// Faults survived: the Workload API down at start, killed mid-stream, answering garbage, slow or failing;
// a CA rotation that removes the old CA while connections are open; clock skew within tolerance.
// Everything runs against the real dev Workload API server on real unix sockets and real TLS.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  createSpiffeDispatcher,
  JwtBundleSet,
  parseAndValidateJwtSvid,
  SourceError,
  type SpiffeError,
  verifyX509Svid,
  WorkloadApiClient,
  WorkloadApiError,
  X509BundleSet,
  X509Source,
} from '@spiffe-ts/core';
import { DevCa, DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { fastifySpiffe, spiffeHttpsOptions } from '@spiffe-ts/fastify';
import Fastify from 'fastify';
import { request } from 'undici';

const SERVER_ID = 'spiffe://example.org/server';
const CLIENT_ID = 'spiffe://example.org/client';
const survived: string[] = [];
after(() => {
  console.log(`faults: ${survived.length} faults injected, ${survived.length} survived`);
  for (const s of survived) console.log(`  survived: ${s}`);
});

const until = async (what: string, cond: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};
const fast = { backoff: { initialMs: 50, maxMs: 200 } };

describe('Workload API faults', () => {
  test('down at start: the source reports not-ready (typed), then becomes ready when the API appears', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wl-late-'));
    const errors: SpiffeError[] = [];
    const source = new X509Source({
      address: `unix://${join(dir, 'w.sock')}`,
      ...fast,
      onError: (e) => errors.push(e),
    });
    let dev: DevWorkloadApiServer | undefined;
    try {
      await new Promise((r) => setTimeout(r, 500));
      assert.throws(
        () => source.getX509Svid(),
        (e: SourceError) => e instanceof SourceError,
      );
      assert.ok(errors.length > 0, 'retries were reported through onError');
      assert.ok(errors.every((e) => e instanceof WorkloadApiError && e.code === 'WORKLOADAPI_UNAVAILABLE'));
      dev = await DevWorkloadApiServer.start({ socketDir: dir, workloads: { w: SERVER_ID } });
      await source.ready({ timeoutMs: 10_000 });
      assert.equal(source.getX509Svid().id.toString(), SERVER_ID);
      survived.push(`Workload API down at start (${errors.length} failed attempts, then ready)`);
    } finally {
      await source.close();
      await dev?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('killed mid-stream: the last good SVID keeps serving; the source reconnects to a restarted API', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wl-kill-'));
    let dev = await DevWorkloadApiServer.start({ socketDir: dir, workloads: { w: SERVER_ID } });
    const ca = dev.ca;
    const source = await X509Source.create({ address: dev.address('w'), ...fast, timeoutMs: 5000 });
    try {
      const before = source.getX509Svid();
      await dev.stop();
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(source.getX509Svid().leaf.serialNumber, before.leaf.serialNumber, 'still serving the last SVID');
      dev = await DevWorkloadApiServer.start({ ca, socketDir: dir, workloads: { w: SERVER_ID } });
      await until('new SVID after restart', () => source.getX509Svid().leaf.serialNumber !== before.leaf.serialNumber);
      verifyX509Svid(source.getX509Svid().certificates, source.bundles);
      survived.push('Workload API killed mid-stream and restarted');
    } finally {
      await source.close();
      await dev.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('garbage on the stream: reported as a typed error, never adopted; recovers when answers are sane', async () => {
    const dev = await DevWorkloadApiServer.start({ workloads: { w: SERVER_ID } });
    const errors: SpiffeError[] = [];
    const source = await X509Source.create({ address: dev.address('w'), ...fast, onError: (e) => errors.push(e) });
    try {
      const good = source.getX509Svid();
      dev.setFault({ kind: 'garbage' });
      await dev.rotateSvids();
      await until('a bad-response error', () => errors.length > 0);
      assert.ok(
        errors.every((e) => e instanceof WorkloadApiError),
        String(errors[0]),
      );
      assert.equal(source.getX509Svid().leaf.serialNumber, good.leaf.serialNumber);
      dev.setFault({ kind: 'none' });
      await dev.rotateSvids();
      await until('a new SVID', () => source.getX509Svid().leaf.serialNumber !== good.leaf.serialNumber);
      survived.push(`garbage from the Workload API (${errors.length} bad responses rejected)`);
    } finally {
      await source.close();
      await dev.stop();
    }
  });

  test('slow answers: a one-shot call fails with a typed error at its time limit, and succeeds with more time', async () => {
    const dev = await DevWorkloadApiServer.start({ workloads: { w: SERVER_ID } });
    const client = new WorkloadApiClient({ address: dev.address('w'), ...fast });
    try {
      dev.setFault({ kind: 'slow', delayMs: 1500 });
      const start = Date.now();
      await assert.rejects(client.fetchJwtBundles({ timeoutMs: 300 }), (e: WorkloadApiError) => {
        assert.ok(e instanceof WorkloadApiError, String(e));
        return true;
      });
      assert.ok(Date.now() - start < 1400, 'the time limit was honoured');
      const bundles = await client.fetchJwtBundles({ timeoutMs: 5000 });
      assert.ok(bundles.has('example.org'));
      survived.push('slow Workload API (1.5 s per call)');
    } finally {
      await client.close();
      await dev.stop();
    }
  });

  test('error statuses: UNAVAILABLE is retried until it clears; PERMISSION_DENIED is a typed error', async () => {
    const dev = await DevWorkloadApiServer.start({ workloads: { w: SERVER_ID } });
    const client = new WorkloadApiClient({ address: dev.address('w'), ...fast });
    try {
      dev.setFault({ kind: 'error', code: grpc.status.UNAVAILABLE });
      setTimeout(() => dev.setFault({ kind: 'none' }), 500);
      const ctx = await client.fetchX509Context({ timeoutMs: 5000 });
      assert.equal(ctx.svids[0]?.id.toString(), SERVER_ID);
      dev.setFault({ kind: 'error', code: grpc.status.PERMISSION_DENIED, message: 'no identity issued' });
      await assert.rejects(
        client.fetchX509Context({ timeoutMs: 2000 }),
        (e: WorkloadApiError) => e.code === 'WORKLOADAPI_PERMISSION_DENIED',
      );
      survived.push('Workload API errors (UNAVAILABLE retried, PERMISSION_DENIED surfaced)');
    } finally {
      await client.close();
      await dev.stop();
    }
  });
});

describe('rotation and time', () => {
  test('CA rotation that removes the old CA while keep-alive connections are open: zero failed requests', async () => {
    const dev = await DevWorkloadApiServer.start({ workloads: { server: SERVER_ID, client: CLIENT_ID } });
    const serverSource = await X509Source.create({ address: dev.address('server') });
    const clientSource = await X509Source.create({ address: dev.address('client') });
    const spiffe = spiffeHttpsOptions(serverSource);
    const app = Fastify({ https: spiffe.https, forceCloseConnections: true });
    await app.register(fastifySpiffe, { tls: spiffe, allow: [CLIENT_ID] });
    app.get('/', async (req) => ({ peer: req.spiffeId?.toString() }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `https://127.0.0.1:${(app.server.address() as { port: number }).port}/`;
    const keepAlive = createSpiffeDispatcher({ source: clientSource, authorize: [SERVER_ID] });
    let ok = 0;
    let failed = 0;
    const call = async (dispatcher = keepAlive) => {
      try {
        const res = await request(url, { dispatcher });
        await res.body.json();
        if (res.statusCode === 200) ok++;
        else failed++;
      } catch {
        failed++;
      }
    };
    try {
      await call();
      const oldCa = dev.ca.currentAuthority.certificate.fingerprint256;
      await dev.rotateX509Authority({ dropRetired: true, propagationMs: 100 });
      await until('old CA gone from both sources', () =>
        [serverSource, clientSource].every(
          (s) =>
            !s.bundles.getX509BundleForTrustDomain(dev.trustDomain).authorities.some((c) => c.fingerprint256 === oldCa),
        ),
      );
      // The open connection was authenticated before the rotation and keeps working.
      for (let i = 0; i < 20; i++) await call();
      // New connections use the new CA on both sides.
      for (let i = 0; i < 5; i++) {
        const fresh = createSpiffeDispatcher({ source: clientSource, authorize: [SERVER_ID] });
        await call(fresh);
        await fresh.close();
      }
      assert.equal(failed, 0);
      assert.equal(ok, 26);
      survived.push(`CA rotation removing the old CA with connections open (${ok} requests, 0 failed)`);
    } finally {
      await keepAlive.close();
      await app.close();
      await serverSource.close();
      await clientSource.close();
      await dev.stop();
    }
  });

  test('clock skew within tolerance: JWT-SVIDs 20 s off either way are accepted, 60 s off are not', async () => {
    const ca = await DevCa.create({ trustDomain: 'example.org' });
    const bundles = new JwtBundleSet([ca.jwtBundle()]);
    const now = Date.now();
    // Issuer clock 20 s ahead: nbf/iat in our future.
    const ahead = await ca.issueJwtSvid(CLIENT_ID, 'api', {
      issuedAt: new Date(now + 20_000),
      extraClaims: { nbf: Math.floor((now + 20_000) / 1000) },
    });
    assert.equal((await parseAndValidateJwtSvid(ahead.token, bundles, 'api')).id.toString(), CLIENT_ID);
    // Our clock 20 s ahead of the issuer: the token expired 20 s ago by our clock.
    const justExpired = await ca.issueJwtSvid(CLIENT_ID, 'api', {
      issuedAt: new Date(now - 320_000),
      expiresAt: new Date(now - 20_000),
    });
    assert.equal((await parseAndValidateJwtSvid(justExpired.token, bundles, 'api')).id.toString(), CLIENT_ID);
    const farAhead = await ca.issueJwtSvid(CLIENT_ID, 'api', {
      extraClaims: { nbf: Math.floor((now + 60_000) / 1000) },
    });
    await assert.rejects(parseAndValidateJwtSvid(farAhead.token, bundles, 'api'), /not valid yet/);
    const longExpired = await ca.issueJwtSvid(CLIENT_ID, 'api', { expiresAt: new Date(now - 60_000) });
    await assert.rejects(parseAndValidateJwtSvid(longExpired.token, bundles, 'api'), /expired/);
    survived.push('clock skew of 20 s on JWT-SVIDs (60 s refused)');
  });

  test('clock skew within tolerance: an X.509-SVID from an issuer whose clock is 20 s ahead verifies', async () => {
    // Issuers backdate notBefore for skew (SPIRE by 10 s, the dev CA by 30 s): an SVID issued "now" by a
    // clock 20 s ahead starts 10 s before our now.
    const ca = await DevCa.create({ trustDomain: 'example.org' });
    const svid = await ca.issueX509Svid(CLIENT_ID, { notBefore: new Date(Date.now() + 20_000 - 30_000) });
    const { id } = verifyX509Svid(svid.certificates, new X509BundleSet([ca.x509Bundle()]));
    assert.equal(id.toString(), CLIENT_ID);
    survived.push('clock skew of 20 s on X.509-SVIDs (issuer backdating)');
  });
});
