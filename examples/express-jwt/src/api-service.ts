// The orders API: an Express app that accepts JWT-SVID bearer tokens. It validates them against the JWT
// bundles from its own Workload API (SPIFFE_ENDPOINT_SOCKET), requires the audience "orders-api", and lets
// only the payment processor in. Plain HTTP on loopback keeps the example about tokens; in production the
// token travels over TLS (e.g. behind a proxy that terminates it, which is where JWT-SVIDs are useful).
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { JwtSource } from '@spiffe-ts/core';
import { jwtSvid, spiffeErrorHandler } from '@spiffe-ts/express';
import express from 'express';

export const AUDIENCE = 'orders-api';
export const PAYMENT_PROCESSOR = 'spiffe://example.org/service/payment-processor';

export async function startApi(options: { address?: string; port?: number } = {}) {
  const source = await JwtSource.create({ address: options.address, timeoutMs: 15_000 });
  const app = express();
  app.get('/healthz', (_req, res) => {
    res.send('ok');
  });
  app.use('/orders', jwtSvid({ bundles: source, audience: AUDIENCE, allow: [PAYMENT_PROCESSOR] }));
  app.get('/orders', (req, res) => {
    res.json({ orders: [{ id: 'o-1001', total: 42.5 }], servedTo: req.jwtSvid?.id.toString() });
  });
  // Denials arrive here through next(err): answer them as JSON { statusCode, error, code, message }.
  app.use(spiffeErrorHandler());

  const server: Server = await new Promise((resolve) => {
    const s = app.listen(options.port ?? 8080, '127.0.0.1', () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      await new Promise((r) => server.close(r));
      await source.close();
    },
  };
}

// Run directly: `SPIFFE_ENDPOINT_SOCKET=unix:///tmp/orders-api.sock PORT=8080 pnpm exec tsx src/api-service.ts`
if (import.meta.url === `file://${process.argv[1]}`) {
  const api = await startApi({ port: Number(process.env.PORT ?? 8080) });
  console.log(JSON.stringify({ listening: api.url }));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void api.close());
}
