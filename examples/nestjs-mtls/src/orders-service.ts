// The orders service: NestJS (platform-express) over HTTPS with SPIFFE mTLS; its identity comes from the
// Workload API named by SPIFFE_ENDPOINT_SOCKET, and certificates rotate without a restart.
import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { type DynamicModule, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { X509Source } from '@spiffe-ts/core';
import { type NestSpiffeTls, SpiffeModule, spiffeServerTls } from '@spiffe-ts/nestjs';
import { OrdersController } from './orders.controller.js';

@Module({})
class AppModule {
  static register(spiffe: NestSpiffeTls): DynamicModule {
    return { module: AppModule, imports: [SpiffeModule.forRoot({ tls: spiffe })], controllers: [OrdersController] };
  }
}

export async function startOrdersService(options: { address?: string; port?: number } = {}) {
  const source = await X509Source.create({ address: options.address, timeoutMs: 15_000 });
  const spiffe = spiffeServerTls(source); // client certs required, verified by SPIFFE ID
  const app = await NestFactory.create(AppModule.register(spiffe), {
    httpsOptions: spiffe.options,
    logger: ['error', 'warn'],
  });
  await app.listen(options.port ?? 8443, '127.0.0.1');
  const port = (app.getHttpServer().address() as AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}`,
    id: source.getX509Svid().id.toString(),
    close: async () => {
      await app.close();
      await source.close();
    },
  };
}

// Run directly: `SPIFFE_ENDPOINT_SOCKET=unix:///tmp/orders.sock PORT=8443 pnpm exec tsx src/orders-service.ts`
if (import.meta.url === `file://${process.argv[1]}`) {
  const svc = await startOrdersService({ port: Number(process.env.PORT ?? 8443) });
  console.log(JSON.stringify({ listening: svc.url, spiffeId: svc.id }));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void svc.close());
}
