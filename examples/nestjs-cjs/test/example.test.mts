// Builds the CommonJS app with tsc exactly as `nest build` / `npm run build` would, starts dist/main.js as its own
// process with a workload socket of the dev Workload API, and calls it over SPIFFE mTLS as two other workloads.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { matchId, X509Source } from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import type { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { startTestWorkloadApi } from '@spiffe-ts/dev-server/testing';
import { request } from 'undici';

const dir = fileURLToPath(new URL('..', import.meta.url));
const ORDERS = 'spiffe://example.org/service/orders';
let dev: DevWorkloadApiServer;
let app: ChildProcess;
let url: string;

before(async () => {
  const build = spawnSync(process.execPath, [tscBin(), '-p', 'tsconfig.build.json'], { cwd: dir, encoding: 'utf8' });
  assert.equal(build.status, 0, `tsc failed:\n${build.stdout}${build.stderr}`);
  dev = await startTestWorkloadApi({
    orders: ORDERS,
    'payment-processor': 'spiffe://example.org/service/payment-processor',
    inventory: 'spiffe://example.org/service/inventory',
  });
  // Plain `node dist/main.js`: no tsx, no source condition, so the packages' CommonJS builds are what runs.
  app = spawn(process.execPath, ['dist/main.js'], {
    cwd: dir,
    env: { ...process.env, NODE_OPTIONS: '', SPIFFE_ENDPOINT_SOCKET: dev.address('orders'), PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // Nest logs to stdout too; the app prints one JSON line once it listens.
  const lines = createInterface({ input: app.stdout! });
  const exited = once(app, 'exit').then(([code]) => Promise.reject(new Error(`app exited with ${code}`)));
  const first = await Promise.race([
    (async () => {
      for await (const line of lines) if (line.startsWith('{')) return line;
      throw new Error('app output ended before it listened');
    })(),
    exited,
  ]);
  const started = JSON.parse(first) as { listening: string; spiffeId: string };
  assert.equal(started.spiffeId, ORDERS);
  url = started.listening.replace('[::1]', '127.0.0.1');
});

after(async () => {
  if (app && app.exitCode === null) {
    app.kill('SIGTERM');
    await once(app, 'exit');
  }
  await dev?.stop();
});

// This example's own TypeScript, as its `build` script uses.
function tscBin(): string {
  return createRequire(new URL('../package.json', import.meta.url)).resolve('typescript/bin/tsc');
}

async function callAs(workload: string) {
  const source = await X509Source.create({ address: dev.address(workload), timeoutMs: 15_000 });
  const dispatcher = createSpiffeDispatcher({ source, authorize: matchId(ORDERS) });
  try {
    const res = await request(`${url}/orders`, { dispatcher });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  } finally {
    await dispatcher.close();
    await source.close();
  }
}

test('nestjs-cjs (tsc, CommonJS, dist): the payment processor is served and named by its SPIFFE ID', async () => {
  const r = await callAs('payment-processor');
  assert.equal(r.status, 200);
  assert.equal(r.body.servedTo, 'spiffe://example.org/service/payment-processor');
});

test('nestjs-cjs: another verified workload is refused with 403 UNAUTHORIZED_SPIFFE_ID', async () => {
  const r = await callAs('inventory');
  assert.equal(r.status, 403);
  assert.equal(r.body.code, 'UNAUTHORIZED_SPIFFE_ID');
});
