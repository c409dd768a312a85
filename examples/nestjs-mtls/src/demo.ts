// One command, no SPIRE: starts the local development Workload API, then the NestJS orders service and two client
// workloads as separate processes, each with its own SPIFFE_ENDPOINT_SOCKET, and reports who got in.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

function run(
  script: string,
  env: Record<string, string>,
  untilLine = false,
): Promise<{ line: string; kill: () => void }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, here(script)], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (untilLine && out.includes('\n'))
        resolve({ line: out.split('\n')[0] as string, kill: () => child.kill('SIGTERM') });
    });
    child.on('exit', (code) => {
      if (!untilLine)
        code === 0
          ? resolve({ line: out.trim(), kill: () => undefined })
          : reject(new Error(`${script} exited ${code}`));
      else reject(new Error(`${script} exited ${code} before it was ready`));
    });
  });
}

export async function demo(log: (s: string) => void = console.log): Promise<boolean> {
  const dev = await DevWorkloadApiServer.start({
    trustDomain: 'example.org',
    workloads: {
      orders: 'spiffe://example.org/service/orders',
      'payment-processor': 'spiffe://example.org/service/payment-processor',
      inventory: 'spiffe://example.org/service/inventory',
    },
    svidTtlSeconds: 300,
  });
  log(`dev Workload API for trust domain ${dev.trustDomain} (sockets in ${dev.socketDir})`);
  let service: { line: string; kill: () => void } | undefined;
  try {
    service = await run('./orders-service.ts', { SPIFFE_ENDPOINT_SOCKET: dev.address('orders'), PORT: '0' }, true);
    const { listening, spiffeId } = JSON.parse(service.line) as { listening: string; spiffeId: string };
    log(`orders service listening on ${listening} as ${spiffeId}`);

    let ok = true;
    for (const [workload, expected] of [
      ['payment-processor', 200],
      ['inventory', 403],
    ] as const) {
      const { line } = await run('./client.ts', {
        SPIFFE_ENDPOINT_SOCKET: dev.address(workload),
        ORDERS_URL: listening,
      });
      const r = JSON.parse(line) as { me: string; status: number; body: string };
      const verdict = r.status === 200 ? 'ALLOWED ' : 'REJECTED';
      log(`${verdict} ${r.me} -> GET /orders: ${r.status} ${r.body}`);
      if (r.status !== expected) ok = false;
    }
    log(ok ? 'demo OK: only the payment processor was allowed' : 'demo FAILED: unexpected outcome');
    return ok;
  } finally {
    service?.kill();
    await dev.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  demo().then(
    (ok) => process.exit(ok ? 0 : 1),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
