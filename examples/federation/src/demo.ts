// One command, no SPIRE: two trust domains, each with its own dev Workload API serving its bundle endpoint
// (SPIFFE Federation, https_spiffe profile). The orders service (example.org) and two partner.test workloads
// run as separate processes; each side fetches the other trust domain's bundle from its bundle endpoint,
// bootstrapped with a bundle file handed over out of band. The orders service admits partner.test's billing
// service and refuses its other workload, which is just as verified but not on the allowlist.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { runWorkloads } from '@spiffe-ts/dev-server/testing';

/** Environment that federates a workload with `peer`'s trust domain through `peer`'s bundle endpoint. */
async function federationEnv(peer: DevWorkloadApiServer, dir: string): Promise<Record<string, string>> {
  const file = join(dir, `${peer.trustDomain.name}.bundle.json`);
  await writeFile(file, peer.ca.spiffeBundle().marshal(), { mode: 0o600, flag: 'wx' });
  return {
    FEDERATED_TRUST_DOMAIN: peer.trustDomain.name,
    FEDERATED_BUNDLE_ENDPOINT_URL: peer.bundleEndpointUrl as string,
    FEDERATED_ENDPOINT_SPIFFE_ID: String(peer.bundleEndpointSpiffeId),
    FEDERATED_BOOTSTRAP_BUNDLE: file,
  };
}

export async function demo(log: (s: string) => void = console.log): Promise<boolean> {
  const dir = await mkdtemp(join(tmpdir(), 'spiffe-federation-'));
  const example = await DevWorkloadApiServer.start({
    trustDomain: 'example.org',
    workloads: { orders: 'spiffe://example.org/service/orders' },
    svidTtlSeconds: 300,
    bundleEndpoint: {},
  });
  const partner = await DevWorkloadApiServer.start({
    trustDomain: 'partner.test',
    workloads: {
      billing: 'spiffe://partner.test/service/billing',
      reports: 'spiffe://partner.test/service/reports',
    },
    svidTtlSeconds: 300,
    bundleEndpoint: {},
  });
  const services = runWorkloads(example, import.meta.url);
  const clients = runWorkloads(partner, import.meta.url);
  try {
    log(`trust domain example.org: bundle endpoint ${example.bundleEndpointUrl} (${example.bundleEndpointSpiffeId})`);
    log(`trust domain partner.test: bundle endpoint ${partner.bundleEndpointUrl} (${partner.bundleEndpointSpiffeId})`);
    const service = await services.start('./orders-service.ts', 'orders', {
      PORT: '0',
      ...(await federationEnv(partner, dir)),
    });
    const { listening, spiffeId } = JSON.parse(service.line) as { listening: string; spiffeId: string };
    log(`orders service listening on ${listening} as ${spiffeId}, federated with partner.test`);

    const clientEnv = { ORDERS_URL: listening, ...(await federationEnv(example, dir)) };
    let ok = true;
    for (const [workload, expected] of [
      ['billing', 200],
      ['reports', 403],
    ] as const) {
      const line = await clients.run('./client.ts', workload, clientEnv);
      const r = JSON.parse(line) as { me: string; status: number; body: string };
      const verdict = r.status === 200 ? 'ALLOWED ' : 'REJECTED';
      log(`${verdict} ${r.me} -> GET /orders: ${r.status} ${r.body}`);
      if (r.status !== expected) ok = false;
    }
    log(ok ? 'demo OK: only partner.test billing was allowed' : 'demo FAILED: unexpected outcome');
    return ok;
  } finally {
    services.stop();
    clients.stop();
    await example.stop();
    await partner.stop();
    await rm(dir, { recursive: true, force: true });
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
