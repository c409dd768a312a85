// The orders service, in trust domain example.org: HTTPS with SPIFFE mTLS. Its identity comes from its
// Workload API (SPIFFE_ENDPOINT_SOCKET); partner.test's bundle comes from partner.test's bundle endpoint, so
// partner.test workloads can be verified. Only the partner's billing service may call /orders.
import type { AddressInfo } from 'node:net';
import { withFederatedBundles, X509Source } from '@spiffe-ts/core';
import { fastifySpiffe, spiffeServerTls } from '@spiffe-ts/fastify';
import Fastify from 'fastify';
import { federatedBundlesFromEnv } from './federation.js';

export const PARTNER_BILLING = 'spiffe://partner.test/service/billing';

export async function startOrdersService(options: { port?: number } = {}) {
  const source = await X509Source.create({ timeoutMs: 15_000 });
  const federated = await federatedBundlesFromEnv();
  // Our own bundles from the Workload API, plus partner.test's from its bundle endpoint (refreshed at its hint).
  const spiffe = spiffeServerTls(withFederatedBundles(source, federated));
  const app = Fastify({ https: spiffe.options, logger: { level: 'warn' } });
  await app.register(fastifySpiffe, { tls: spiffe, allow: [PARTNER_BILLING] });

  app.get('/orders', async (request) => ({
    orders: [{ id: 'o-1001', total: 42.5 }],
    servedTo: request.spiffeId?.toString(),
  }));

  await app.listen({ port: options.port ?? 8443, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}`,
    id: source.getX509Svid().id.toString(),
    close: async () => {
      await app.close();
      await federated.close();
      await source.close();
    },
  };
}

// Run directly: `SPIFFE_ENDPOINT_SOCKET=... FEDERATED_TRUST_DOMAIN=partner.test FEDERATED_BUNDLE_ENDPOINT_URL=...
// FEDERATED_ENDPOINT_SPIFFE_ID=... FEDERATED_BOOTSTRAP_BUNDLE=partner.json pnpm service`
if (import.meta.url === `file://${process.argv[1]}`) {
  const svc = await startOrdersService({ port: Number(process.env.PORT ?? 8443) });
  console.log(JSON.stringify({ listening: svc.url, spiffeId: svc.id }));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void svc.close());
}
