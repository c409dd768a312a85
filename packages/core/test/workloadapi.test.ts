import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  BundleSource,
  JwtSource,
  parseAndValidateJwtSvid,
  SourceError,
  SpiffeId,
  verifyX509Svid,
  WorkloadApiClient,
  WorkloadApiError,
  type X509Context,
  X509Source,
} from '@spiffe-ts/core';
import { DevCa, DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { targetFromAddress } from '../src/workloadapi/address.js';

const ORDERS = 'spiffe://example.org/service/orders';
const PAYMENTS = 'spiffe://example.org/service/payment-processor';

function nextUpdate<T>(subscribe: (cb: (v: T) => void) => void, predicate: (v: T) => boolean, ms = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('timed out waiting for update')), ms);
    subscribe((v) => {
      if (predicate(v)) {
        clearTimeout(t);
        resolve(v);
      }
    });
  });
}

describe('Workload API client against the dev server on a real unix socket', () => {
  let server: DevWorkloadApiServer;
  let foreign: DevCa;

  before(async () => {
    foreign = await DevCa.create({ trustDomain: 'partner.test' });
    server = await DevWorkloadApiServer.start({
      workloads: { orders: ORDERS, payments: PAYMENTS, nobody: null, multi: [ORDERS, PAYMENTS] },
      federatedWith: [foreign],
    });
  });
  after(() => server.stop());

  test('fetches the X.509 context: SVID, own bundle and federated bundle', async () => {
    const client = new WorkloadApiClient({ address: server.address('orders') });
    try {
      const ctx = await client.fetchX509Context();
      assert.equal(ctx.svids.length, 1);
      assert.equal(ctx.svids[0]?.id.toString(), ORDERS);
      assert.deepEqual(
        ctx.bundles.trustDomains().map((t) => t.name),
        ['example.org', 'partner.test'],
      );
      const v = verifyX509Svid(ctx.svids[0]!.certificates, ctx.bundles);
      assert.equal(v.id.toString(), ORDERS);
      const bundles = await client.fetchX509Bundles();
      assert.equal(bundles.size, 2);
    } finally {
      await client.close();
    }
  });

  test('fetches, validates (locally and via the API) JWT-SVIDs and JWT bundles', async () => {
    const client = new WorkloadApiClient({ address: server.address('payments') });
    try {
      const jwt = await client.fetchJwtSvid({ audience: 'orders' });
      assert.equal(jwt.id.toString(), PAYMENTS);
      assert.deepEqual(jwt.audience, ['orders']);
      const bundles = await client.fetchJwtBundles();
      const local = await parseAndValidateJwtSvid(jwt.token, bundles, 'orders');
      assert.equal(local.id.toString(), PAYMENTS);
      const remote = await client.validateJwtSvid(jwt.token, 'orders');
      assert.equal(remote.id.toString(), PAYMENTS);
      assert.equal(remote.claims.sub, PAYMENTS);
      await assert.rejects(client.validateJwtSvid(jwt.token, 'someone-else'), (e: WorkloadApiError) => {
        assert.equal(e.code, 'WORKLOADAPI_INVALID_ARGUMENT');
        return true;
      });
      await assert.rejects(client.fetchJwtSvid({ audience: [] }), { code: 'WORKLOADAPI_INVALID_ARGUMENT' });
    } finally {
      await client.close();
    }
  });

  test('many unary calls, some failing with a status, all on one connection (grpc-js server)', async () => {
    // A node:http2 server (grpc-js) closes a connection after 1,000 frames it counts as invalid, such as a
    // reset of a stream that has already ended: more calls than that must stay on the first connection.
    // Connections are counted from net.connect, so the client's retry on a lost connection cannot hide one.
    let sockets = 0;
    const count = () => sockets++;
    diagnostics.subscribe('net.client.socket', count);
    const client = new WorkloadApiClient({ address: server.address('payments') });
    try {
      const token = (await client.fetchJwtSvid({ audience: 'orders' })).token;
      for (let i = 0; i < 1100; i++) {
        assert.equal((await client.fetchJwtSvid({ audience: 'orders' })).token, token);
        if (i % 250 === 0) {
          assert.equal((await client.validateJwtSvid(token, 'orders')).id.toString(), PAYMENTS);
          await assert.rejects(client.validateJwtSvid(token, 'someone-else'), { code: 'WORKLOADAPI_INVALID_ARGUMENT' });
        }
      }
      assert.equal(sockets, 1, 'one connection for every call');
    } finally {
      diagnostics.unsubscribe('net.client.socket', count);
      await client.close();
    }
  });

  test('2,500 one-shot fetches of a streaming method in a row: none fails (each resets its stream)', async () => {
    // A one-shot fetch cancels the stream after its first message, as go-spiffe does. The grpc-js server's
    // node:http2 drops a connection that resets streams that fast (about 1,000 in a burst) with an error
    // GOAWAY: the calls on it are retried on a new connection instead of failing.
    const client = new WorkloadApiClient({ address: server.address('orders'), backoff: { initialMs: 10, maxMs: 50 } });
    try {
      for (let i = 0; i < 2500; i++) assert.equal((await client.fetchX509Bundles()).size, 2);
    } finally {
      await client.close();
    }
  });

  test('dev server reuses a JWT-SVID like the SPIRE agent: per audience set and key, until half its lifetime', async () => {
    const dev = await DevWorkloadApiServer.start({ workloads: { payments: PAYMENTS }, jwtTtlSeconds: 2 });
    const client = new WorkloadApiClient({ address: dev.address('payments') });
    try {
      const a = await client.fetchJwtSvid({ audience: ['orders', 'billing'] });
      const b = await client.fetchJwtSvid({ audience: ['billing', 'orders'] });
      assert.equal(b.token, a.token, 'same audience set, same token');
      const other = await client.fetchJwtSvid({ audience: 'orders' });
      assert.notEqual(other.token, a.token);
      assert.deepEqual(other.audience, ['orders']);

      const kid = await dev.ca.rotateJwtAuthority();
      const rotated = await client.fetchJwtSvid({ audience: ['orders', 'billing'] });
      assert.notEqual(rotated.token, a.token, 'a new signing key issues a new token');
      assert.equal(rotated.claims.sub, PAYMENTS);
      const bundles = await client.fetchJwtBundles();
      assert.equal((await parseAndValidateJwtSvid(rotated.token, bundles, 'orders')).id.toString(), PAYMENTS);
      assert.equal(JSON.parse(Buffer.from(rotated.token.split('.')[0]!, 'base64url').toString()).kid, kid);

      // Past half of its 2 s lifetime the token is re-issued, so a client never gets one about to expire.
      await new Promise((r) => setTimeout(r, 1100));
      const fresh = await client.fetchJwtSvid({ audience: ['orders', 'billing'] });
      assert.notEqual(fresh.token, rotated.token);
      assert.ok(fresh.expiresAt.getTime() - Date.now() > 1000);
    } finally {
      await client.close();
      await dev.stop();
    }
  });

  test('several identities on one socket: picked by SPIFFE ID or hint', async () => {
    const src = await X509Source.create({
      address: server.address('multi'),
      pick: { spiffeId: PAYMENTS },
      timeoutMs: 5000,
    });
    try {
      assert.equal(src.getX509Svid().id.toString(), PAYMENTS);
      assert.equal(src.getX509Svids().length, 2);
    } finally {
      await src.close();
    }
    const byHint = await X509Source.create({
      address: server.address('multi'),
      pick: { hint: 'orders' },
      timeoutMs: 5000,
    });
    try {
      assert.equal(byHint.getX509Svid().id.toString(), ORDERS);
    } finally {
      await byHint.close();
    }
    const client = new WorkloadApiClient({ address: server.address('multi') });
    try {
      const jwt = await client.fetchJwtSvid({ audience: 'x', subject: PAYMENTS });
      assert.equal(jwt.id.toString(), PAYMENTS);
    } finally {
      await client.close();
    }
  });

  test('no identity for the caller: a clear PermissionDenied error', async () => {
    const client = new WorkloadApiClient({ address: server.address('nobody') });
    try {
      await assert.rejects(client.fetchX509Svid(), (e: WorkloadApiError) => {
        assert.ok(e instanceof WorkloadApiError);
        assert.equal(e.code, 'WORKLOADAPI_PERMISSION_DENIED');
        assert.match(e.message, /no identity/);
        return true;
      });
      const src = new X509Source({ client });
      await assert.rejects(src.ready({ timeoutMs: 1500 }), (e: SourceError) => {
        assert.equal(e.code, 'SOURCE_TIMEOUT');
        assert.match(e.message, /PermissionDenied/);
        return true;
      });
      assert.throws(() => src.getX509Svid(), { code: 'SOURCE_NOT_READY' });
      await src.close();
    } finally {
      await client.close();
    }
  });

  test('streams an SVID rotation and a CA rotation to a live X509Source', async () => {
    const src = await X509Source.create({ address: server.address('orders'), timeoutMs: 5000 });
    try {
      const first = src.getX509Svid();
      let updates = 0;
      src.onUpdate(() => updates++);
      const rotated = nextUpdate<void>(
        (cb) => src.onUpdate(() => cb()),
        () => src.getX509Svid() !== first,
      );
      await server.rotateSvids(['orders']);
      await rotated;
      const second = src.getX509Svid();
      assert.notEqual(second.leaf.serialNumber, first.leaf.serialNumber);
      assert.equal(second.id.toString(), ORDERS);

      const oldRoot = server.ca.currentAuthority.certificate;
      const caRotated = nextUpdate<void>(
        (cb) => src.onUpdate(() => cb()),
        () => {
          const active = server.ca.currentAuthority.certificate;
          return active !== oldRoot && src.getX509Svid().leaf.verify(active.publicKey);
        },
      );
      await server.rotateX509Authority();
      await caRotated;
      const third = src.getX509Svid();
      const bundle = src.getX509BundleForTrustDomain(server.trustDomain);
      assert.ok(bundle.hasAuthority(oldRoot), 'old root kept during overlap');
      assert.ok(bundle.hasAuthority(server.ca.currentAuthority.certificate));
      assert.ok(third.leaf.verify(server.ca.currentAuthority.certificate.publicKey), 'new SVID signed by new CA');
      assert.ok(updates >= 2);
    } finally {
      await src.close();
    }
  });

  test('JwtSource caches JWT-SVIDs until near expiry and serves JWT bundles', async () => {
    const src = await JwtSource.create({ address: server.address('payments'), timeoutMs: 5000 });
    try {
      const a = await src.fetchJwtSvid({ audience: 'orders' });
      const b = await src.fetchJwtSvid({ audience: 'orders' });
      assert.equal(a, b, 'cached');
      const c = await src.fetchJwtSvid({ audience: 'other' });
      assert.notEqual(a.token, c.token);
      const v = await parseAndValidateJwtSvid(a.token, src, 'orders');
      assert.equal(v.id.toString(), PAYMENTS);
    } finally {
      await src.close();
    }
  });

  test('JwtSource: one cache entry per question however it is written, and a bounded cache', async () => {
    const client = new WorkloadApiClient({ address: server.address('payments') });
    let fetches = 0;
    const fetch = client.fetchJwtSvid.bind(client);
    client.fetchJwtSvid = (params, options) => {
      fetches++;
      return fetch(params, options);
    };
    const src = await JwtSource.create({ client, timeoutMs: 5000 });
    try {
      const a = await src.fetchJwtSvid({ audience: ['x', 'y'], subject: PAYMENTS });
      assert.equal(await src.fetchJwtSvid({ audience: ['y', 'x', 'x'], subject: SpiffeId.parse(PAYMENTS) }), a);
      assert.equal(fetches, 1);
      // 256 other questions push the first one out: it is fetched again.
      for (let i = 0; i < 256; i++) await src.fetchJwtSvid({ audience: `aud-${i}` });
      assert.equal(fetches, 257);
      await src.fetchJwtSvid({ audience: ['x', 'y'], subject: PAYMENTS });
      assert.equal(fetches, 258);
      // A recently used entry is kept.
      await src.fetchJwtSvid({ audience: 'aud-255' });
      assert.equal(fetches, 258);
    } finally {
      await src.close();
      await client.close();
    }
  });

  test('JwtSource drops a cached JWT-SVID once its signing key leaves the bundle, and picks JWT-SVIDs by hint', async () => {
    const src = await JwtSource.create({ address: server.address('payments'), timeoutMs: 5000 });
    try {
      const before = await src.fetchJwtSvid({ audience: 'rotating' });
      assert.equal(await src.fetchJwtSvid({ audience: 'rotating' }), before, 'cached while its key is in the bundle');
      // The authority is rotated and the old key dropped from the bundle (SPIRE: taint, then revoke).
      let updates = 0;
      const off = src.onUpdate(() => updates++);
      await server.rotateJwtAuthority({ dropRetired: true, propagationMs: 50 });
      const deadline = Date.now() + 5000;
      while (updates < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      off();
      const after = await src.fetchJwtSvid({ audience: 'rotating' });
      assert.notEqual(after.token, before.token, 'a token signed by a key no longer in the bundle was served');
      await parseAndValidateJwtSvid(after.token, src, 'rotating');
      await assert.rejects(parseAndValidateJwtSvid(before.token, src, 'rotating'));
    } finally {
      await src.close();
    }
    const multi = await JwtSource.create({ address: server.address('multi'), timeoutMs: 5000 });
    try {
      const ids = server.svidsOf('multi').map((s) => s.id);
      const last = ids.at(-1) as SpiffeId;
      const hint = last.path.split('/').pop() as string;
      assert.equal(String((await multi.fetchJwtSvid({ audience: 'x', hint })).id), String(last));
      await assert.rejects(multi.fetchJwtSvid({ audience: 'x', hint: 'no-such-hint' }), (e: WorkloadApiError) => {
        return e.code === 'WORKLOADAPI_BAD_RESPONSE';
      });
    } finally {
      await multi.close();
    }
  });

  test('BundleSource serves X.509 and JWT bundles', async () => {
    const src = await BundleSource.create({ address: server.address('orders'), timeoutMs: 5000 });
    try {
      assert.equal(src.x509Bundles.size, 2);
      assert.equal(src.jwtBundles.size, 2);
      assert.ok(src.getJwtBundleForTrustDomain(foreign.trustDomain).authorities.size >= 1);
    } finally {
      await src.close();
    }
  });
});

describe('Workload API resilience', () => {
  test('server absent at start, then started: the source waits and becomes ready', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spiffe-late-'));
    const address = `unix://${join(dir, 'late.sock')}`;
    const src = new X509Source({ address });
    let server: DevWorkloadApiServer | undefined;
    try {
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(src.isReady, false);
      server = await DevWorkloadApiServer.start({ socketDir: dir, workloads: { late: ORDERS } });
      await src.ready({ timeoutMs: 10_000 });
      assert.equal(src.getX509Svid().id.toString(), ORDERS);
    } finally {
      await src.close();
      await server?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('one-shot fetch against an absent server fails with UNAVAILABLE after its time limit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spiffe-none-'));
    const client = new WorkloadApiClient({ address: `unix://${join(dir, 'none.sock')}`, timeoutMs: 600 });
    try {
      const t0 = Date.now();
      await assert.rejects(client.fetchX509Svid(), { code: 'WORKLOADAPI_UNAVAILABLE' });
      assert.ok(Date.now() - t0 >= 550, 'waited for the agent up to the time limit instead of failing at once');
      const ac = new AbortController();
      setTimeout(() => ac.abort(new Error('caller gave up')), 100);
      await assert.rejects(
        client.fetchX509Svid({ signal: ac.signal, timeoutMs: Number.POSITIVE_INFINITY }),
        /caller gave up/,
      );
    } finally {
      await client.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('server killed and restarted mid-stream: the watch recovers with the new SVID', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spiffe-restart-'));
    const ca = await DevCa.create({ trustDomain: 'example.org' });
    let server = await DevWorkloadApiServer.start({ ca, socketDir: dir, workloads: { w: ORDERS } });
    const client = new WorkloadApiClient({ address: server.address('w'), backoff: { initialMs: 50, maxMs: 500 } });
    const contexts: X509Context[] = [];
    const errors: WorkloadApiError[] = [];
    let notify: (() => void) | undefined;
    const watch = client.watchX509Context({
      onUpdate: (c) => {
        contexts.push(c);
        notify?.();
      },
      onError: (e) => errors.push(e),
    });
    const waitFor = (n: number) =>
      new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`only ${contexts.length} updates`)), 10_000);
        const check = () => {
          if (contexts.length >= n) {
            clearTimeout(t);
            resolve();
          }
        };
        notify = check;
        check();
      });
    try {
      await waitFor(1);
      await server.stop();
      await new Promise((r) => setTimeout(r, 300));
      server = await DevWorkloadApiServer.start({ ca, socketDir: dir, workloads: { w: ORDERS } });
      await waitFor(2);
      assert.ok(
        errors.some((e) => e.code === 'WORKLOADAPI_UNAVAILABLE'),
        'the outage was reported',
      );
      assert.notEqual(contexts[1]?.svids[0]?.leaf.serialNumber, contexts[0]?.svids[0]?.leaf.serialNumber);
    } finally {
      watch.stop();
      await watch.done;
      await client.close();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('Workload API address (SPIFFE Workload Endpoint standard)', () => {
  const valid: Array<[string, string]> = [
    ['unix:///tmp/agent.sock', 'unix:///tmp/agent.sock'],
    ['unix:/tmp/agent.sock', 'unix:///tmp/agent.sock'],
    ['tcp://127.0.0.1:8000', 'ipv4:127.0.0.1:8000'],
    ['tcp://[::1]:8000', 'ipv6:[::1]:8000'],
  ];
  for (const [input, target] of valid) {
    test(`accepts ${input}`, () => assert.equal(targetFromAddress(input), target));
  }
  const invalid = [
    '',
    'agent.sock',
    '/tmp/agent.sock',
    'http://127.0.0.1:80',
    'unix://host/tmp/agent.sock',
    'unix:relative.sock',
    'unix:///tmp/agent.sock?x=1',
    'unix:///tmp/agent.sock#frag',
    'unix://user@/tmp/a.sock',
    'tcp://localhost:8000',
    'tcp://127.0.0.1',
    'tcp://127.0.0.1:8000/path',
    'tcp://127.0.0.1:8000/',
    'tcp://127.0.0.1:8000?q',
    'tcp://user:pw@127.0.0.1:8000',
  ];
  for (const input of invalid) {
    test(`rejects ${JSON.stringify(input)}`, () =>
      assert.throws(() => targetFromAddress(input), { code: 'WORKLOADAPI_BAD_ADDRESS' }));
  }
  test('no address and no SPIFFE_ENDPOINT_SOCKET: WORKLOADAPI_NO_ADDRESS', () => {
    const saved = process.env.SPIFFE_ENDPOINT_SOCKET;
    delete process.env.SPIFFE_ENDPOINT_SOCKET;
    try {
      assert.throws(() => new WorkloadApiClient(), { code: 'WORKLOADAPI_NO_ADDRESS' });
    } finally {
      if (saved !== undefined) process.env.SPIFFE_ENDPOINT_SOCKET = saved;
    }
  });
});
