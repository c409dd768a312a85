// The client loads @grpc/grpc-js and the protobuf definitions on its first call (see client.ts). The first test
// of this file makes the first calls of the process, so they all start while that load is still pending: they
// share one load and each client one channel, and closing or aborting meanwhile fails them as it would later.
// (That importing the built core loads neither module is checked in test/packaging/lazy-grpc.test.ts.)
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkloadApiClient, WorkloadApiError } from '@spiffe-ts/core';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';

const ORDERS = 'spiffe://example.org/service/orders';

/** A unix-socket relay to the dev server that counts the connections made to it. */
async function relay(dir: string, name: string, to: string): Promise<{ address: string; connections: () => number }> {
  let connections = 0;
  const path = join(dir, `${name}.sock`);
  const server = net.createServer((client) => {
    connections++;
    const upstream = net.connect(to);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  server.unref();
  return { address: `unix://${path}`, connections: () => connections };
}

describe('Workload API client: gRPC loaded on first use', () => {
  let server: DevWorkloadApiServer;
  let dir: string;
  before(async () => {
    server = await DevWorkloadApiServer.start({ workloads: { orders: ORDERS } });
    dir = await mkdtemp(join(tmpdir(), 'spiffe-lazy-'));
  });
  after(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('calls started before the load completes: concurrent ones share one channel, close and abort still end theirs', async () => {
    const shared = await relay(dir, 'shared', server.socketPath('orders'));
    const closing = await relay(dir, 'closing', server.socketPath('orders'));
    const aborting = await relay(dir, 'aborting', server.socketPath('orders'));
    const watching = await relay(dir, 'watching', server.socketPath('orders'));

    // All started in one tick: none of them can have a loaded grpc-js yet.
    const client = new WorkloadApiClient({ address: shared.address });
    const concurrent = Promise.all([
      client.fetchX509Svid(),
      client.fetchX509Context(),
      client.fetchX509Bundles(),
      client.fetchJwtSvid({ audience: 'aud' }),
      client.fetchJwtBundles(),
    ]);

    const closed = new WorkloadApiClient({ address: closing.address });
    // Settled into values at once: they fail before the concurrent calls are awaited.
    const beforeClose = closed.fetchX509Svid().then(
      () => undefined,
      (err: unknown) => err,
    );
    const closeDone = closed.close();

    const aborted = new WorkloadApiClient({ address: aborting.address });
    const controller = new AbortController();
    const beforeAbort = aborted.fetchX509Svid({ signal: controller.signal }).then(
      () => undefined,
      (err: unknown) => err,
    );
    const reason = new Error('not needed any more');
    controller.abort(reason);

    const watcher = new WorkloadApiClient({ address: watching.address });
    const updates: unknown[] = [];
    const watch = watcher.watchX509Context({ onUpdate: (u) => updates.push(u) });
    watch.stop();

    const [svid, ctx, bundles, jwt, jwtBundles] = await concurrent;
    assert.equal(svid.id.toString(), ORDERS);
    assert.equal(ctx.svids[0]?.id.toString(), ORDERS);
    assert.ok(bundles.trustDomains().length > 0);
    assert.equal(jwt.id.toString(), ORDERS);
    assert.ok(jwtBundles.trustDomains().length > 0);
    assert.equal(shared.connections(), 1, 'one channel for the concurrent first calls');
    await client.close();

    const closedError = await beforeClose;
    assert.ok(closedError instanceof WorkloadApiError);
    assert.equal(closedError.code, 'WORKLOADAPI_ERROR');
    assert.match(closedError.message, /closed/);
    await closeDone;
    assert.equal(await beforeAbort, reason);
    await watch.done;
    assert.deepEqual(updates, []);
    // Closed, aborted or stopped before the load completed: none of them connected.
    assert.equal(closing.connections(), 0);
    assert.equal(aborting.connections(), 0);
    assert.equal(watching.connections(), 0);
    await aborted.close();
    await watcher.close();
  });

  test('a client closed before its first call connects nowhere and then fails calls as closed', async () => {
    const counted = await relay(dir, 'unused', server.socketPath('orders'));
    const client = new WorkloadApiClient({ address: counted.address });
    await client.close();
    await assert.rejects(client.fetchX509Svid(), { code: 'WORKLOADAPI_ERROR', message: /closed/ });
    assert.throws(() => client.watchX509Context({ onUpdate: () => {} }), { code: 'WORKLOADAPI_ERROR' });
    assert.equal(counted.connections(), 0);
  });

  test('bad input still throws at construction', () => {
    assert.throws(() => new WorkloadApiClient({ address: 'tcp://localhost:1' }), WorkloadApiError);
    assert.throws(() => new WorkloadApiClient({ address: 'unix:///tmp/a.sock', timeoutMs: 0 }));
  });

  test('a later client makes its own channel on its first call', async () => {
    const counted = await relay(dir, 'later', server.socketPath('orders'));
    const client = new WorkloadApiClient({ address: counted.address });
    assert.equal(counted.connections(), 0);
    assert.equal((await client.fetchX509Svid()).id.toString(), ORDERS);
    assert.equal((await client.fetchX509Svid()).id.toString(), ORDERS);
    assert.equal(counted.connections(), 1);
    await client.close();
  });
});
