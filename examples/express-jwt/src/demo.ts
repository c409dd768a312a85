// One command, no SPIRE: starts the local development Workload API, then the orders API and two client
// workloads as separate processes, each with its own SPIFFE_ENDPOINT_SOCKET; the clients authenticate with
// JWT-SVIDs fetched from their Workload API. Reports who got in.
import { DevCa } from '@spiffe-ts/dev-server';
import { runWorkloads, startTestWorkloadApi } from '@spiffe-ts/dev-server/testing';

export async function demo(log: (s: string) => void = console.log): Promise<boolean> {
  const dev = await startTestWorkloadApi({
    'orders-api': 'spiffe://example.org/service/orders-api',
    'payment-processor': 'spiffe://example.org/service/payment-processor',
    reporting: 'spiffe://example.org/service/reporting',
  });
  const workloads = runWorkloads(dev, import.meta.url);
  log(`dev Workload API for trust domain ${dev.trustDomain} (sockets in ${dev.socketDir})`);
  try {
    const api = await workloads.start('./api-service.ts', 'orders-api', { PORT: '0' });
    const { listening } = JSON.parse(api.line) as { listening: string };
    log(`orders API listening on ${listening}, accepting JWT-SVIDs for audience "orders-api"`);

    let ok = true;
    for (const [workload, expected] of [
      ['payment-processor', 200],
      ['reporting', 403],
    ] as const) {
      const line = await workloads.run('./client.ts', workload, { API_URL: listening });
      const r = JSON.parse(line) as { me: string; status: number; body: string };
      const verdict = r.status === 200 ? 'ALLOWED ' : 'REJECTED';
      log(`${verdict} ${r.me} (JWT-SVID) -> GET /orders: ${r.status} ${r.body}`);
      if (r.status !== expected) ok = false;
    }
    // A request without a token, and one with a token from a CA nobody trusts, never get in.
    const anonymous = await fetch(`${listening}/orders`);
    log(`REJECTED no token -> GET /orders: ${anonymous.status} (${anonymous.headers.get('www-authenticate')})`);
    const forged = await (await DevCa.create({ trustDomain: 'example.org' })).issueJwtSvid(
      'spiffe://example.org/service/payment-processor',
      'orders-api',
    );
    const forgedRes = await fetch(`${listening}/orders`, { headers: { authorization: `Bearer ${forged.token}` } });
    log(`REJECTED forged payment-processor token -> GET /orders: ${forgedRes.status}`);
    if (anonymous.status !== 401 || forgedRes.status !== 401) ok = false;

    log(ok ? "demo OK: only the payment processor's JWT-SVID was accepted" : 'demo FAILED: unexpected outcome');
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
