// One command, no SPIRE: starts the local development Workload API, then the orders service and two client
// workloads as separate processes, each with its own SPIFFE_ENDPOINT_SOCKET, and reports who got in.
import { runWorkloads, startTestWorkloadApi } from '@spiffe-ts/dev-server/testing';

export async function demo(log: (s: string) => void = console.log): Promise<boolean> {
  const dev = await startTestWorkloadApi({
    orders: 'spiffe://example.org/service/orders',
    'payment-processor': 'spiffe://example.org/service/payment-processor',
    inventory: 'spiffe://example.org/service/inventory',
  });
  const workloads = runWorkloads(dev, import.meta.url);
  log(`dev Workload API for trust domain ${dev.trustDomain} (sockets in ${dev.socketDir})`);
  try {
    const service = await workloads.start('./orders-service.ts', 'orders', { PORT: '0' });
    const { listening, spiffeId } = JSON.parse(service.line) as { listening: string; spiffeId: string };
    log(`orders service listening on ${listening} as ${spiffeId}`);

    let ok = true;
    for (const [workload, expected] of [
      ['payment-processor', 200],
      ['inventory', 403],
    ] as const) {
      const line = await workloads.run('./client.ts', workload, { ORDERS_URL: listening });
      const r = JSON.parse(line) as { me: string; status: number; body: string };
      const verdict = r.status === 200 ? 'ALLOWED ' : 'REJECTED';
      log(`${verdict} ${r.me} -> GET /orders: ${r.status} ${r.body}`);
      if (r.status !== expected) ok = false;
    }
    log(ok ? 'demo OK: only the payment processor was allowed' : 'demo FAILED: unexpected outcome');
    return ok;
  } finally {
    workloads.stop();
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
