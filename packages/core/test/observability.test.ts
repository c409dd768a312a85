import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { metrics } from '@opentelemetry/api';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import {
  BundleSource,
  checkReadiness,
  DEFAULT_WORKLOAD_API_TIMEOUT_MS,
  healthHandler,
  JwtSource,
  type SourceError,
  SpiffeMetric,
  WorkloadApiClient,
  X509Source,
} from '@spiffe-ts/core';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { recordingLogger, TestReader } from './telemetry.js';

const ORDERS = 'spiffe://example.org/service/orders';

describe('start-up: time limit, waiting notices, typed error', () => {
  let dir: string;
  let dev: DevWorkloadApiServer;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spiffe-startup-'));
    dev = await DevWorkloadApiServer.start({ workloads: { orders: ORDERS, nobody: null } });
  });
  after(async () => {
    await dev.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('one default time limit for sources and one-shot calls: 30 s', () => {
    assert.equal(DEFAULT_WORKLOAD_API_TIMEOUT_MS, 30_000);
  });

  test('a wrong socket fails within the limit, naming the socket; the logger says what is wrong', async () => {
    const socket = join(dir, 'wrong.sock');
    const logger = recordingLogger();
    const t0 = Date.now();
    await assert.rejects(
      X509Source.create({ address: `unix://${socket}`, timeoutMs: 700, logger }),
      (e: SourceError) => {
        assert.equal(e.code, 'SOURCE_TIMEOUT');
        assert.equal(e.name, 'SourceError');
        assert.ok(e.message.includes(socket), e.message);
        assert.match(e.message, /no socket/);
        assert.match(e.message, /within 700 ms/);
        return true;
      },
    );
    assert.ok(Date.now() - t0 < 5000, 'failed near its limit');
    const warn = logger.lines.find((l) => l.level === 'warn');
    assert.ok(warn, 'a waiting notice was logged');
    assert.equal(warn.fields.reason, 'NO_SOCKET');
    assert.equal(warn.fields.address, `unix://${socket}`);
    assert.ok(warn.message.includes(socket));
    // told once per reason, not once per retry
    assert.equal(logger.lines.filter((l) => l.fields.reason === 'NO_SOCKET').length, 1);
  });

  test('a workload with no registration: PERMISSION_DENIED "no identity issued" is named', async () => {
    const logger = recordingLogger();
    await assert.rejects(
      JwtSource.create({ address: dev.address('nobody'), timeoutMs: 700, logger }),
      (e: SourceError) => {
        assert.equal(e.code, 'SOURCE_TIMEOUT');
        assert.match(e.message, /not registered/);
        assert.match(e.message, /no identity issued/);
        return true;
      },
    );
    assert.equal(logger.lines.find((l) => l.level === 'warn')?.fields.reason, 'NOT_REGISTERED');
  });

  test('ready() without options uses the source’s own time limit', async () => {
    const src = new BundleSource({
      address: `unix://${join(dir, 'none.sock')}`,
      timeoutMs: 300,
      logger: recordingLogger(),
    });
    try {
      await assert.rejects(src.ready(), { code: 'SOURCE_TIMEOUT' });
    } finally {
      await src.close();
    }
  });

  test('Infinity waits forever (until the signal); 0 and negative limits are refused', async () => {
    const src = new X509Source({ address: `unix://${join(dir, 'none.sock')}`, logger: recordingLogger() });
    try {
      const ac = new AbortController();
      setTimeout(() => ac.abort(new Error('gave up')), 400);
      await assert.rejects(src.ready({ timeoutMs: Number.POSITIVE_INFINITY, signal: ac.signal }), /gave up/);
    } finally {
      await src.close();
    }
    assert.throws(() => new X509Source({ address: dev.address('orders'), timeoutMs: 0 }), TypeError);
    assert.throws(() => new WorkloadApiClient({ address: dev.address('orders'), timeoutMs: -1 }), TypeError);
    const client = new WorkloadApiClient({ address: dev.address('orders') });
    try {
      await assert.rejects(client.fetchX509Svid({ timeoutMs: 0 }), TypeError);
      assert.ok(await client.fetchX509Svid({ timeoutMs: Number.POSITIVE_INFINITY }));
    } finally {
      await client.close();
    }
  });

  test('nothing is logged when the first update comes at once', async () => {
    const logger = recordingLogger();
    const src = new X509Source({ address: dev.address('orders'), logger });
    try {
      await src.ready();
      assert.deepEqual(logger.lines, []);
    } finally {
      await src.close();
    }
  });

  test('an agent that starts late: the source warns, then says it is ready', async () => {
    const lateDir = await mkdtemp(join(tmpdir(), 'spiffe-late-'));
    const logger = recordingLogger();
    const src = new X509Source({ address: `unix://${join(lateDir, 'late.sock')}`, logger, backoff: { maxMs: 200 } });
    let late: DevWorkloadApiServer | undefined;
    try {
      for (let i = 0; i < 250 && !logger.lines.some((l) => l.fields.reason === 'NO_SOCKET'); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(
        logger.lines.some((l) => l.fields.reason === 'NO_SOCKET'),
        'warned while the socket was missing',
      );
      late = await DevWorkloadApiServer.start({ socketDir: lateDir, workloads: { late: ORDERS } });
      await src.ready({ timeoutMs: 10_000 });
      const last = logger.lines.at(-1);
      assert.equal(last?.level, 'info');
      assert.equal(last?.message, 'X509Source: ready');
    } finally {
      await src.close();
      await late?.stop();
      await rm(lateDir, { recursive: true, force: true });
    }
  });
});

describe('health: per source and the probe handler', () => {
  let dev: DevWorkloadApiServer;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spiffe-health-'));
    dev = await DevWorkloadApiServer.start({ workloads: { orders: ORDERS, nobody: null } });
  });
  after(async () => {
    await dev.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('health(): ready, SVID expiry, last update, last error', async () => {
    const src = await X509Source.create({ address: dev.address('orders'), timeoutMs: 5000 });
    const h = src.health();
    assert.equal(h.source, 'X509Source');
    assert.equal(h.ready, true);
    assert.equal(h.svidExpiresAt?.getTime(), src.getX509Svid().expiresAt.getTime());
    assert.ok(h.lastUpdate instanceof Date && Date.now() - h.lastUpdate.getTime() < 5000);
    assert.equal(h.lastError, undefined);
    await src.close();
    assert.equal(src.health().ready, false, 'a closed source is not ready');

    const waiting = new JwtSource({ address: dev.address('nobody'), logger: recordingLogger() });
    try {
      await assert.rejects(waiting.ready({ timeoutMs: 500 }));
      const w = waiting.health();
      assert.equal(w.ready, false);
      assert.equal(w.lastUpdate, undefined);
      assert.equal(w.lastError?.code, 'WORKLOADAPI_PERMISSION_DENIED');
      assert.ok(w.lastError?.at instanceof Date);
    } finally {
      await waiting.close();
    }
  });

  test('healthHandler: /live always 200, /ready 200 only when every source is ready', async () => {
    const good = await X509Source.create({ address: dev.address('orders'), timeoutMs: 5000 });
    const bad = new BundleSource({ address: `unix://${join(dir, 'none.sock')}`, logger: recordingLogger() });
    const sources = [good];
    const server = http.createServer(healthHandler({ sources }));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      let res = await fetch(`${base}/live`);
      assert.equal(res.status, 200);
      res = await fetch(`${base}/ready`);
      assert.equal(res.status, 200);
      const body = (await res.json()) as { ready: boolean; sources: Array<{ source: string; ready: boolean }> };
      assert.equal(body.ready, true);
      assert.equal(body.sources[0]?.source, 'X509Source');
      sources.push(bad as unknown as X509Source);
      res = await fetch(`${base}/ready?verbose=1`);
      assert.equal(res.status, 503);
      assert.equal(((await res.json()) as { ready: boolean }).ready, false);
      assert.equal((await fetch(`${base}/other`)).status, 404);
      // a reporter that throws makes readiness false, never the probe fail
      assert.equal(
        checkReadiness([
          {
            health: () => {
              throw new Error('boom');
            },
          },
        ]).ready,
        false,
      );
      assert.equal(checkReadiness([]).ready, true);
    } finally {
      server.close();
      await good.close();
      await bad.close();
    }
  });

  test('healthHandler as middleware: other paths go to next()', () => {
    const handler = healthHandler({ sources: [], livePath: '/healthz' });
    let nexted = false;
    handler({ url: '/api' } as http.IncomingMessage, {} as http.ServerResponse, () => {
      nexted = true;
    });
    assert.ok(nexted);
  });
});

describe('metrics through @opentelemetry/api', () => {
  let dev: DevWorkloadApiServer;
  let reader: TestReader;
  before(async () => {
    reader = new TestReader();
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
    dev = await DevWorkloadApiServer.start({ workloads: { orders: ORDERS, nobody: null } });
  });
  after(async () => {
    await dev.stop();
    metrics.disable();
  });

  test('SVID expiry gauge, rotations, Workload API errors by code', async () => {
    const src = await X509Source.create({ address: dev.address('orders'), timeoutMs: 5000 });
    try {
      const expiry = (await reader.points(SpiffeMetric.SVID_EXPIRY)).find((p) => p.attributes['spiffe.id'] === ORDERS);
      assert.ok(expiry, 'expiry observed for the source');
      const want = (src.getX509Svid().expiresAt.getTime() - Date.now()) / 1000;
      assert.ok(Math.abs(expiry.value - want) < 5, `${expiry.value} s vs ${want} s`);

      const before = src.getX509Svid();
      const rotated = new Promise<void>((resolve) =>
        src.onUpdate(() => {
          if (src.getX509Svid() !== before) resolve();
        }),
      );
      await dev.rotateSvids(['orders']);
      await rotated;
      const rotations = await reader.points(SpiffeMetric.SVID_ROTATIONS);
      assert.equal(rotations.find((p) => p.attributes.source === 'X509Source')?.value, 1);
    } finally {
      await src.close();
    }

    const nobody = new X509Source({ address: dev.address('nobody'), logger: recordingLogger() });
    try {
      await assert.rejects(nobody.ready({ timeoutMs: 500 }));
    } finally {
      await nobody.close();
    }
    const errors = await reader.points(SpiffeMetric.WORKLOAD_API_ERRORS);
    const denied = errors.find((p) => p.attributes.code === 'WORKLOADAPI_PERMISSION_DENIED');
    assert.ok(denied && denied.value >= 1, JSON.stringify(errors));
  });
});

describe('NODE_DEBUG=spiffe', () => {
  // Denials are formatted for the debug channel only when it is on; it must still show them when it is.
  const script = `
    import { reportDenial, SpiffeAuthError } from '@spiffe-ts/core';
    reportDenial(new SpiffeAuthError('UNAUTHORIZED_SPIFFE_ID', { statusCode: 403 }), { route: '/orders' });
  `;
  test('shows a denial with its reason when on, nothing when off', () => {
    const on = spawnSync(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', script],
      {
        cwd: import.meta.dirname,
        env: { ...process.env, NODE_DEBUG: 'spiffe' },
        encoding: 'utf8',
      },
    );
    assert.equal(on.status, 0, on.stderr);
    assert.match(on.stderr, /SPIFFE \d+: SPIFFE: request denied .*reason="UNAUTHORIZED_SPIFFE_ID".*route="\/orders"/);
    const off = spawnSync(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', script],
      {
        cwd: import.meta.dirname,
        env: { ...process.env, NODE_DEBUG: '' },
        encoding: 'utf8',
      },
    );
    assert.equal(off.status, 0, off.stderr);
    assert.doesNotMatch(off.stderr, /request denied/);
  });
});
