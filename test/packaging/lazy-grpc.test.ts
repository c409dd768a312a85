// An application that never calls the Workload API does not load gRPC or protobufjs: importing the built core
// (ESM and CommonJS) or an HTTP adapter leaves @grpc/grpc-js and protobufjs unloaded, and the first
// WorkloadApiClient call loads them and works. Each check runs in a fresh `node` on the built packages (run
// after `pnpm build`, as scripts/test.sh does); the Workload API is the dev server on a real unix socket.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';

const run = promisify(execFile);
const packages = new URL('../../packages/', import.meta.url).pathname;
const here = new URL('.', import.meta.url).pathname;
const ORDERS = 'spiffe://example.org/service/orders';

// Which of the two are in the CommonJS module cache (both are CommonJS packages, also when imported from ESM).
const LOADED = `() => {
  const keys = Object.keys(require.cache);
  return {
    grpc: keys.some((k) => k.includes('/@grpc/grpc-js/')),
    protobufjs: keys.some((k) => k.includes('/node_modules/protobufjs/')),
  };
}`;

/** Imports `entry`, then optionally makes Workload API calls; prints what was loaded when. */
function script(format: 'esm' | 'cjs', entries: string[], address: string | undefined): string {
  const load = (e: string) =>
    format === 'esm' ? `await import(${JSON.stringify(e)})` : `require(${JSON.stringify(e)})`;
  const body = `
    const loaded = ${LOADED};
    const mods = [];
    ${entries.map((e) => `mods.push(${load(e)});`).join('\n')}
    const out = { afterImport: loaded() };
    const address = ${JSON.stringify(address ?? null)};
    if (address) {
      const client = new mods[0].WorkloadApiClient({ address });
      out.afterConstruct = loaded();
      const [svid, jwt] = await Promise.all([
        client.fetchX509Svid(),
        client.fetchJwtSvid({ audience: 'spiffe://example.org/aud' }),
      ]);
      out.ids = [svid.id.toString(), jwt.id.toString()];
      await client.close();
      out.afterCall = loaded();
    }
    console.log(JSON.stringify(out));`;
  return format === 'esm'
    ? `import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);${body}`
    : `(async () => {${body}})().catch((e) => { console.error(e); process.exit(1); });`;
}

interface Report {
  afterImport: { grpc: boolean; protobufjs: boolean };
  afterConstruct?: { grpc: boolean; protobufjs: boolean };
  afterCall?: { grpc: boolean; protobufjs: boolean };
  ids?: string[];
}

async function inFreshNode(format: 'esm' | 'cjs', entries: string[], address?: string): Promise<Report> {
  const args = format === 'esm' ? ['--input-type=module', '-e'] : ['-e'];
  // cwd: the test package, whose dependencies include the adapters and their frameworks.
  const { stdout } = await run(process.execPath, [...args, script(format, entries, address)], {
    cwd: here,
    timeout: 60_000,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1) as string) as Report;
}

const NOTHING = { grpc: false, protobufjs: false };
const BOTH = { grpc: true, protobufjs: true };

describe('gRPC and protobufjs are loaded on the first Workload API call, not at import', () => {
  let server: DevWorkloadApiServer;
  before(async () => {
    server = await DevWorkloadApiServer.start({ workloads: { orders: ORDERS } });
  });
  after(() => server.stop());

  for (const [format, file] of [
    ['esm', 'index.js'],
    ['cjs', 'index.cjs'],
  ] as const) {
    test(`built core (${format}): import and constructor load neither; the first calls load both and work`, async () => {
      const report = await inFreshNode(format, [`${packages}core/dist/${file}`], server.address('orders'));
      assert.deepEqual(report.afterImport, NOTHING);
      assert.deepEqual(report.afterConstruct, NOTHING);
      assert.deepEqual(report.ids, [ORDERS, ORDERS]);
      assert.deepEqual(report.afterCall, BOTH);
    });

    test(`HTTP adapters (${format}): importing them loads neither`, async () => {
      const report = await inFreshNode(format, [
        `${packages}core/dist/${file}`,
        'reflect-metadata',
        '@spiffe-ts/fastify',
        '@spiffe-ts/express',
        '@spiffe-ts/nestjs',
      ]);
      assert.deepEqual(report.afterImport, NOTHING);
    });
  }
});
