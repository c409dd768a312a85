// The orders service: HTTPS with SPIFFE mTLS. Its identity comes from the Workload API named by
// SPIFFE_ENDPOINT_SOCKET; only the payment processor may call /orders.
import type { AddressInfo } from 'node:net';
import { X509Source } from '@spiffe-ts/core';
import { fastifySpiffe, spiffeServerTls } from '@spiffe-ts/fastify';
import Fastify from 'fastify';

export const PAYMENT_PROCESSOR = 'spiffe://example.org/service/payment-processor';

export async function startOrdersService(options: { address?: string; port?: number } = {}) {
  const source = await X509Source.create({ address: options.address, timeoutMs: 15_000 });
  const spiffe = spiffeServerTls(source);
  const app = Fastify({ https: spiffe.options, logger: { level: 'warn' } });
  await app.register(fastifySpiffe, { tls: spiffe, allow: [PAYMENT_PROCESSOR] });

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
      await source.close();
    },
  };
}

// Run directly: `SPIFFE_ENDPOINT_SOCKET=unix:///tmp/orders.sock pnpm service`
if (import.meta.url === `file://${process.argv[1]}`) {
  const svc = await startOrdersService({ port: Number(process.env.PORT ?? 8443) });
  console.log(JSON.stringify({ listening: svc.url, spiffeId: svc.id }));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void svc.close());
}
