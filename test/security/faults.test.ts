// Faults survived: the Workload API down at start, killed mid-stream, shut down gracefully (GOAWAY),
// answering garbage or oversized messages, slow or failing, refusing an unregistered workload; thousands of
// cancelled calls; a CA rotation that removes the old CA while connections are open; clock skew within
// tolerance. Everything runs against real grpc-js servers (the dev Workload API server, or a bare one where
// the fault needs raw bytes or the server's shutdown) on real unix sockets, and real TLS.
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  GrpcStatus,
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
import { workloadApiServiceDefinition } from '@spiffe-ts/core/internal';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
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

type BytesStream = grpc.ServerWritableStream<unknown, Buffer>;
const jwtBundlesBytes = (tds: string[], pad = ''): Buffer =>
  workloadApiServiceDefinition().FetchJWTBundles.responseSerialize({
    bundles: Object.fromEntries(tds.map((td) => [td, Buffer.from(`{"keys":[]${pad ? `,"pad":"${pad}"` : ''}}`)])),
  });

/**
 * A bare grpc-js Workload API answering FetchJWTBundles with whatever bytes `handler` writes (encoded by the
 * caller: garbage is possible), on a unix socket.
 */
async function bareAgent(path: string, handler: (call: BytesStream) => void): Promise<grpc.Server> {
  const server = new grpc.Server();
  server.addService(
    {
      ...workloadApiServiceDefinition(),
      FetchJWTBundles: { ...workloadApiServiceDefinition().FetchJWTBundles, responseSerialize: (b: Buffer) => b },
    },
    {
      FetchJWTBundles: (call: BytesStream) => {
        call.on('error', () => {});
        handler(call);
      },
    },
  );
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  return server;
}
const names = (set: JwtBundleSet): string => set.trustDomains().map(String).join();

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
        assert.equal(e.code, 'WORKLOADAPI_UNAVAILABLE');
        assert.equal(e.grpcCode, GrpcStatus.DEADLINE_EXCEEDED);
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
        (e: WorkloadApiError) =>
          e.code === 'WORKLOADAPI_PERMISSION_DENIED' && e.grpcCode === GrpcStatus.PERMISSION_DENIED,
      );
      survived.push('Workload API errors (UNAVAILABLE retried, PERMISSION_DENIED surfaced)');
    } finally {
      await client.close();
      await dev.stop();
    }
  });

  test('workload not registered yet (PERMISSION_DENIED): typed error at once; a watch keeps retrying until it is', async () => {
    const dev = await DevWorkloadApiServer.start({ workloads: { w: SERVER_ID } });
    dev.setFault({ kind: 'error', code: grpc.status.PERMISSION_DENIED, message: 'no identity issued' });
    const client = new WorkloadApiClient({ address: dev.address('w'), ...fast });
    const errors: WorkloadApiError[] = [];
    let svid: string | undefined;
    const watch = client.watchX509Context({
      onUpdate: (ctx) => {
        svid = ctx.svids[0]?.id.toString();
      },
      onError: (e) => errors.push(e),
    });
    try {
      const t0 = Date.now();
      await assert.rejects(client.fetchX509Context({ timeoutMs: 5000 }), (e: WorkloadApiError) => {
        assert.ok(e instanceof WorkloadApiError);
        assert.equal(e.code, 'WORKLOADAPI_PERMISSION_DENIED');
        assert.equal(e.grpcCode, GrpcStatus.PERMISSION_DENIED);
        assert.match(e.message, /no identity/);
        return true;
      });
      assert.ok(Date.now() - t0 < 2000, 'not retried until the time limit: the agent answered');
      await until('three refusals seen by the watch', () => errors.length >= 3);
      assert.ok(errors.every((e) => e.code === 'WORKLOADAPI_PERMISSION_DENIED'));
      dev.setFault({ kind: 'none' }); // the workload is registered
      await until('the watch delivers the SVID', () => svid !== undefined);
      assert.equal(svid, SERVER_ID);
      survived.push(`workload not registered yet (${errors.length} PermissionDenied, watch kept retrying)`);
    } finally {
      watch.stop();
      await client.close();
      await dev.stop();
    }
  });

  test('graceful shutdown (GOAWAY): the call in flight is answered; calls and the watch move to the restarted agent', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wl-goaway-'));
    const path = join(dir, 'api.sock');
    const open = new Set<BytesStream>();
    let slow = false;
    const agentA = await bareAgent(path, (call) => {
      if (slow) {
        setTimeout(() => call.write(jwtBundlesBytes(['a.test'])), 400);
        return;
      }
      open.add(call);
      call.on('cancelled', () => open.delete(call));
      call.write(jwtBundlesBytes(['a.test']));
    });
    let agentB: grpc.Server | undefined;
    const client = new WorkloadApiClient({ address: `unix://${path}`, timeoutMs: 5000, ...fast });
    const seen: string[] = [];
    const errors: WorkloadApiError[] = [];
    const watch = client.watchJwtBundles({ onUpdate: (s) => seen.push(names(s)), onError: (e) => errors.push(e) });
    try {
      await until('the watch has agent A', () => seen.length === 1);
      assert.equal(names(await client.fetchJwtBundles()), 'a.test');
      slow = true;
      const inFlight = client.fetchJwtBundles();
      await new Promise((r) => setTimeout(r, 50));
      let shutDown = false;
      agentA.tryShutdown(() => {
        shutDown = true;
      });
      // As an agent does on its way out, it ends its open streams.
      await new Promise((r) => setTimeout(r, 50));
      for (const call of open)
        call.emit('error', Object.assign(new Error('agent stopping'), { code: grpc.status.UNAVAILABLE }));
      assert.equal(names(await inFlight), 'a.test', 'the call in flight at the GOAWAY was answered');
      await until('agent A shut down', () => shutDown);
      try {
        unlinkSync(path);
      } catch {
        // removed with its listener
      }
      agentB = await bareAgent(path, (call) => call.write(jwtBundlesBytes(['b.test'])));
      assert.equal(names(await client.fetchJwtBundles()), 'b.test');
      await until('the watch has agent B', () => seen.includes('b.test'));
      assert.deepEqual(seen, ['a.test', 'b.test']);
      assert.ok(
        errors.every((e) => e.code === 'WORKLOADAPI_UNAVAILABLE'),
        errors.map(String).join('; '),
      );
      survived.push(`graceful shutdown of the Workload API (GOAWAY; ${errors.length} reconnects of the watch)`);
    } finally {
      watch.stop();
      await client.close();
      agentA.forceShutdown();
      agentB?.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('undecodable and oversized messages: typed errors, no crash; the watch reports them and goes on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wl-bytes-'));
    const path = join(dir, 'api.sock');
    // Field 1 (bundles), length-delimited, announcing far more bytes than follow: not a protobuf message.
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]);
    const oversized = jwtBundlesBytes(['big.test'], 'x'.repeat(5 * 1024 * 1024)); // over the 4 MiB default
    let script: Array<Buffer | 'hold'> = [];
    let streams = 0;
    const agent = await bareAgent(path, (call) => {
      streams++;
      for (const step of script.splice(0, script.indexOf('hold') + 1)) if (step !== 'hold') call.write(step);
    });
    const client = new WorkloadApiClient({ address: `unix://${path}`, timeoutMs: 3000, ...fast });
    try {
      script = [garbage, 'hold'];
      await assert.rejects(client.fetchJwtBundles(), (e: WorkloadApiError) => {
        assert.ok(e instanceof WorkloadApiError, String(e));
        assert.equal(e.code, 'WORKLOADAPI_BAD_RESPONSE');
        return true;
      });
      script = [oversized, 'hold'];
      await assert.rejects(client.fetchJwtBundles(), (e: WorkloadApiError) => {
        assert.ok(e instanceof WorkloadApiError, String(e));
        assert.equal(e.grpcCode, GrpcStatus.RESOURCE_EXHAUSTED);
        return true;
      });
      // The limit is the client's option.
      const roomy = new WorkloadApiClient({ address: `unix://${path}`, maxMessageBytes: 8 * 1024 * 1024 });
      script = [oversized, 'hold'];
      assert.equal(names(await roomy.fetchJwtBundles()), 'big.test');
      await roomy.close();

      // A watch: garbage (reported, stream goes on), a good update, an oversized message (the stream fails:
      // reported, reconnected), then a good update on the new stream.
      script = [garbage, jwtBundlesBytes(['one.test']), oversized, 'hold', jwtBundlesBytes(['two.test']), 'hold'];
      const before = streams;
      const seen: string[] = [];
      const errors: WorkloadApiError[] = [];
      const watch = client.watchJwtBundles({ onUpdate: (s) => seen.push(names(s)), onError: (e) => errors.push(e) });
      await until('two updates', () => seen.length === 2);
      watch.stop();
      await watch.done;
      assert.deepEqual(seen, ['one.test', 'two.test']);
      assert.equal(streams - before, 2);
      assert.deepEqual(
        errors.map((e) => [e.code, e.grpcCode]),
        [
          ['WORKLOADAPI_BAD_RESPONSE', undefined],
          ['WORKLOADAPI_ERROR', GrpcStatus.RESOURCE_EXHAUSTED],
        ],
      );
      survived.push('undecodable and oversized (5 MiB) Workload API messages');
    } finally {
      await client.close();
      agent.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('2,000 aborted calls: each rejects with its reason, the agent sees them end, no listener is left behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wl-abort-'));
    const path = join(dir, 'api.sock');
    let answer = false;
    const held: BytesStream[] = [];
    let lastArrival = Date.now();
    const agent = await bareAgent(path, (call) => {
      if (answer) {
        call.write(jwtBundlesBytes(['example.org']));
        return;
      }
      held.push(call); // never answered
      lastArrival = Date.now();
    });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    const client = new WorkloadApiClient({ address: `unix://${path}`, timeoutMs: 30_000, ...fast });
    try {
      await client.fetchJwtBundles({ timeoutMs: 200 }).catch(() => undefined); // connected (answer is false: held)
      const outcomes = await Promise.all(
        Array.from({ length: 2000 }, (_, i) => {
          const ac = new AbortController();
          const call = client.fetchJwtBundles({ signal: ac.signal });
          const reason = new Error(`gave up ${i}`);
          // some before the call is even sent, the rest while the agent holds it
          if (i % 4 === 0) ac.abort(reason);
          else setTimeout(() => ac.abort(reason), Math.random() * 200);
          return call.then(
            () => 'answered',
            (e: unknown) => (e === reason ? 'aborted' : String(e)),
          );
        }),
      );
      assert.deepEqual(new Set(outcomes), new Set(['aborted']));
      // The agent shares this process, so it may handle the calls after the client has cancelled them, and it
      // gets fewer than 2,000 when its node:http2 drops a connection resetting streams that fast: retried.
      const settled = Date.now();
      await until('the agent got no call for 1 s', () => Date.now() - Math.max(lastArrival, settled) > 1000, 30_000);
      assert.ok(held.length > 1);
      assert.deepEqual(held.filter((c) => !c.cancelled).length, 0, 'every call the agent got was cancelled');

      // A long-lived signal over many completed calls keeps no listener from them.
      answer = true;
      const keep = new AbortController();
      for (let i = 0; i < 10; i++) {
        await Promise.all(Array.from({ length: 200 }, () => client.fetchJwtBundles({ signal: keep.signal })));
      }
      assert.equal(getEventListeners(keep.signal, 'abort').length, 0);
      assert.equal(names(await client.fetchJwtBundles()), 'example.org');
      assert.deepEqual(warnings.map(String), [], 'no MaxListenersExceeded or other warning');
      survived.push(`2,000 aborted calls (${held.length - 1} reached the agent, all cancelled), then normal calls`);
    } finally {
      process.off('warning', onWarning);
      await client.close();
      agent.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
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
