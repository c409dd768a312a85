// The Workload API client's calls against @grpc/grpc-js servers on real unix sockets (and TCP): what it sends,
// how statuses, deadlines, cancellation and message limits reach the caller, and what keeps a process alive.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { GrpcStatus, WorkloadApiClient, type WorkloadApiClientOptions, WorkloadApiError } from '@spiffe-ts/core';
import { type JWTBundlesResponseMessage, workloadApiServiceDefinition } from '@spiffe-ts/core/internal';

type Stream = grpc.ServerWritableStream<unknown, JWTBundlesResponseMessage>;
type Handler = (call: Stream) => void;

const jwtBundles = (tds: string[], pad = ''): JWTBundlesResponseMessage => ({
  bundles: Object.fromEntries(tds.map((td) => [td, Buffer.from(`{"keys":[]${pad ? `,"pad":"${pad}"` : ''}}`)])),
});
const status = (code: grpc.status, details: string): Partial<grpc.StatusObject> =>
  Object.assign(new Error(details), { code, details });

/** A grpc-js server answering FetchJWTBundles with `handler(call)`, on a unix socket or a TCP address. */
async function serve(
  bind: string,
  handler: () => Handler,
  options: grpc.ServerOptions = {},
): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server(options);
  server.addService(workloadApiServiceDefinition(), {
    FetchJWTBundles: (call: Stream) => {
      call.on('error', () => {});
      handler()(call);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(bind, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, port };
}

describe('Workload API client calls (grpc-js server on a unix socket)', () => {
  let dir: string;
  let server: grpc.Server;
  let handler: Handler;
  let address: string;
  let last: { metadata: grpc.Metadata; deadline: grpc.Deadline } | undefined;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spiffe-transport-'));
    address = `unix://${join(dir, 'api.sock')}`;
    ({ server } = await serve(address, () => (call) => {
      last = { metadata: call.metadata, deadline: call.getDeadline() };
      handler(call);
    }));
  });
  after(() => {
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  const client = (extra: WorkloadApiClientOptions = {}) =>
    new WorkloadApiClient({ address, timeoutMs: 2000, backoff: { initialMs: 20, maxMs: 50 }, ...extra });
  const answer: Handler = (call) => call.write(jwtBundles(['example.org']));

  test('every call carries the workload.spiffe.io header and its deadline', async () => {
    handler = answer;
    const c = client();
    try {
      const t0 = Date.now();
      const set = await c.fetchJwtBundles();
      assert.deepEqual(set.trustDomains().map(String), ['example.org']);
      assert.deepEqual(last?.metadata.get('workload.spiffe.io'), ['true']);
      const deadline = Number(last?.deadline);
      assert.ok(deadline > t0 && deadline <= t0 + 2100, `deadline ${deadline - t0} ms ahead`);
      // timeoutMs Infinity: no deadline at all
      await c.fetchJwtBundles({ timeoutMs: Number.POSITIVE_INFINITY });
      assert.equal(last?.deadline, Number.POSITIVE_INFINITY);
    } finally {
      await c.close();
    }
  });

  test('an error status is a typed error with the gRPC code as a named constant and the details', async () => {
    handler = (call) => call.emit('error', status(grpc.status.PERMISSION_DENIED, 'no identity issued'));
    const c = client();
    try {
      const err = await c.fetchJwtBundles().then(
        () => assert.fail('the fetch succeeded'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof WorkloadApiError, String(err));
      assert.equal(err.code, 'WORKLOADAPI_PERMISSION_DENIED');
      assert.equal(err.grpcCode, GrpcStatus.PERMISSION_DENIED);
      assert.equal(GrpcStatus.PERMISSION_DENIED, grpc.status.PERMISSION_DENIED);
      assert.match(err.message, /no identity issued/);
    } finally {
      await c.close();
    }
  });

  test('a watch gets every message of its stream, in order', async () => {
    handler = (call) => {
      for (const td of ['one.test', 'two.test', 'three.test']) call.write(jwtBundles([td]));
    };
    const c = client();
    const seen: string[] = [];
    try {
      await new Promise<void>((resolve) => {
        c.watchJwtBundles({
          onUpdate: (set) => {
            seen.push(set.trustDomains().map(String).join());
            if (seen.length === 3) resolve();
          },
        });
      });
      assert.deepEqual(seen, ['one.test', 'two.test', 'three.test']);
    } finally {
      await c.close();
    }
  });

  test('over TCP (IPv4 and IPv6 loopback), never through an HTTP proxy set in the environment', async (t) => {
    const saved = { http_proxy: process.env.http_proxy, grpc_proxy: process.env.grpc_proxy };
    for (const [host, shown] of [
      ['127.0.0.1', '127.0.0.1'],
      ['[::1]', '[::1]'],
    ] as const) {
      let tcp: { server: grpc.Server; port: number };
      try {
        tcp = await serve(`${host}:0`, () => answer);
      } catch {
        t.diagnostic(`no ${host} on this machine: skipped`);
        continue;
      }
      // A proxy that does not exist: a call that went through it would fail.
      process.env.http_proxy = 'http://127.0.0.1:9';
      process.env.grpc_proxy = 'http://127.0.0.1:9';
      const c = new WorkloadApiClient({ address: `tcp://${shown}:${tcp.port}`, timeoutMs: 2000 });
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      try {
        const set = await c.fetchJwtBundles();
        assert.deepEqual(set.trustDomains().map(String), ['example.org']);
      } finally {
        await c.close();
        tcp.server.forceShutdown();
      }
    }
  });

  test('a server that never answers: each call ends at its own time limit, and the channel stays usable', async () => {
    handler = () => {};
    const c = client();
    try {
      const t0 = performance.now();
      const outcome = (timeoutMs: number) =>
        c.fetchJwtBundles({ timeoutMs }).then(
          () => assert.fail('the fetch succeeded'),
          (e: WorkloadApiError) => ({ code: e.code, grpcCode: e.grpcCode, ms: performance.now() - t0 }),
        );
      const [long, short, middle] = await Promise.all([outcome(1500), outcome(300), outcome(700)]);
      for (const r of [long, short, middle]) {
        assert.equal(r.grpcCode, GrpcStatus.DEADLINE_EXCEEDED);
        assert.equal(r.code, 'WORKLOADAPI_UNAVAILABLE');
      }
      assert.ok(short.ms >= 290 && short.ms < 650, `short: ${short.ms}`);
      assert.ok(middle.ms >= 690 && middle.ms < 1200, `middle: ${middle.ms}`);
      assert.ok(long.ms >= 1490 && long.ms < 2200, `long: ${long.ms}`);
      handler = answer;
      const set = await c.fetchJwtBundles({ timeoutMs: 1000 });
      assert.deepEqual(set.trustDomains().map(String), ['example.org']);
    } finally {
      await c.close();
    }
  });

  test('aborting a call in flight rejects it with the reason at once and cancels it on the server', async () => {
    let cancelled = 0;
    handler = (call) => call.on('cancelled', () => cancelled++); // never answers
    const c = client({ timeoutMs: 5000 });
    try {
      const ac = new AbortController();
      const t0 = performance.now();
      const call = c.fetchJwtBundles({ signal: ac.signal });
      setTimeout(() => ac.abort(new Error('caller gave up')), 150);
      await assert.rejects(call, /caller gave up/);
      assert.ok(performance.now() - t0 < 1000, 'rejected on abort, not at the time limit');
      for (let i = 0; i < 50 && cancelled === 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(cancelled, 1, 'the server saw the call cancelled');
      // already aborted: rejected without a call
      await assert.rejects(c.fetchJwtBundles({ signal: AbortSignal.abort(new Error('too late')) }), /too late/);
    } finally {
      await c.close();
    }
  });

  test('close() ends the calls in flight at once, as closed; later calls fail the same way', async () => {
    handler = () => {};
    const c = client({ timeoutMs: 10_000 });
    const t0 = performance.now();
    const pending = c.fetchJwtBundles();
    await new Promise((r) => setTimeout(r, 100));
    await c.close();
    await assert.rejects(pending, (e: WorkloadApiError) => e.code === 'WORKLOADAPI_ERROR' && /closed/.test(e.message));
    assert.ok(performance.now() - t0 < 1000);
    await assert.rejects(c.fetchJwtBundles(), /closed/);
    assert.throws(() => c.watchJwtBundles({ onUpdate() {} }), /closed/);
  });

  test('300 concurrent calls to a server allowing 16 streams, some answers of 1 MB: all answered', async () => {
    let streams = 0;
    const limited = await serve(
      `unix://${join(dir, 'limited.sock')}`,
      () => (call) => {
        const big = streams++ % 50 === 0;
        const tds = big ? Array.from({ length: 1000 }, (_, k) => `td${k}.example.org`) : ['example.org'];
        // Answers finish out of order, so streams free their slots in any order.
        setTimeout(() => call.write(jwtBundles(tds, 'x'.repeat(1000))), Math.random() * 5);
      },
      { 'grpc.max_concurrent_streams': 16 },
    );
    const c = new WorkloadApiClient({ address: `unix://${join(dir, 'limited.sock')}`, timeoutMs: 20_000 });
    try {
      const sets = await Promise.all(Array.from({ length: 300 }, () => c.fetchJwtBundles()));
      const sizes = sets.map((s) => s.trustDomains().length);
      assert.equal(sizes.filter((n) => n === 1000).length, 6);
      assert.equal(sizes.filter((n) => n === 1).length, 294);
      assert.equal(streams, 300, 'no call was refused and retried');
    } finally {
      await c.close();
      limited.server.forceShutdown();
    }
  });

  test('an idle client does not keep the process alive; an open watch does', async () => {
    const script = (watch: boolean) => `
      import { WorkloadApiClient } from '@spiffe-ts/core';
      const c = new WorkloadApiClient({ address: ${JSON.stringify(address)} });
      await c.fetchJwtBundles();
      ${watch ? 'c.watchJwtBundles({ onUpdate() {} });' : ''}
      console.log('fetched');
    `;
    handler = answer; // streams stay open, as the Workload API's do
    // Asynchronously: this process serves the child's calls.
    const run = (watch: boolean) =>
      new Promise<{ stdout: string; stderr: string; code: number | null; signal: string | null }>((resolve) => {
        const args = ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', script(watch)];
        const child = execFile(
          process.execPath,
          args,
          { cwd: join(import.meta.dirname, '..'), timeout: 6000 },
          (_err, stdout, stderr) => resolve({ stdout, stderr, code: child.exitCode, signal: child.signalCode }),
        );
      });
    const idle = await run(false);
    assert.equal(idle.stdout.trim(), 'fetched', idle.stderr);
    assert.equal(idle.code, 0, 'exits by itself once the fetch is done');
    const watching = await run(true);
    assert.equal(watching.stdout.trim(), 'fetched', watching.stderr);
    assert.equal(watching.signal, 'SIGTERM', 'still running at the time limit: the watch holds it');
  });
});
