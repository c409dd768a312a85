// One command, no SPIRE: starts the local development Workload API, then the greeter server and two client
// workloads as separate processes, each with its own SPIFFE_ENDPOINT_SOCKET (mTLS + JWT-SVID call
// credentials). Reports who got in.
import { runWorkloads, startTestWorkloadApi } from '@spiffe-ts/dev-server/testing';

export async function demo(log: (s: string) => void = console.log): Promise<boolean> {
  const dev = await startTestWorkloadApi({
    greeter: 'spiffe://example.org/service/greeter',
    'payment-processor': 'spiffe://example.org/service/payment-processor',
    inventory: 'spiffe://example.org/service/inventory',
  });
  const workloads = runWorkloads(dev, import.meta.url);
  log(`dev Workload API for trust domain ${dev.trustDomain} (sockets in ${dev.socketDir})`);
  try {
    const server = await workloads.start('./server.ts', 'greeter', { PORT: '0' });
    const { listening, spiffeId } = JSON.parse(server.line) as { listening: string; spiffeId: string };
    log(`greeter listening on ${listening} as ${spiffeId}`);

    let ok = true;
    for (const [workload, expected] of [
      ['payment-processor', 'OK'],
      ['inventory', 'PERMISSION_DENIED'],
    ] as const) {
      const line = await workloads.run('./client.ts', workload, { TARGET: listening });
      const r = JSON.parse(line) as { me: string; code: string; message: string };
      const verdict = r.code === 'OK' ? 'ALLOWED ' : 'REJECTED';
      log(`${verdict} ${r.me} -> helloworld.Greeter/SayHello: ${r.code} ${r.message}`);
      if (r.code !== expected) ok = false;
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
