// A client workload: calls the orders service over SPIFFE mTLS with its own SVID, and accepts the server
// only if it proves the orders SPIFFE ID (no hostnames involved).
import { matchId, X509Source } from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import { request } from 'undici';

export const ORDERS = 'spiffe://example.org/service/orders';

export async function callOrders(options: { address?: string; url: string }) {
  const source = await X509Source.create({ address: options.address, timeoutMs: 15_000 });
  const dispatcher = createSpiffeDispatcher({ source, authorize: matchId(ORDERS) });
  try {
    const res = await request(`${options.url}/orders`, { dispatcher });
    return { me: source.getX509Svid().id.toString(), status: res.statusCode, body: await res.body.text() };
  } finally {
    await dispatcher.close();
    await source.close();
  }
}

// Run directly: `SPIFFE_ENDPOINT_SOCKET=unix:///tmp/payments.sock ORDERS_URL=https://127.0.0.1:8443 pnpm client`
if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await callOrders({ url: process.env.ORDERS_URL ?? 'https://127.0.0.1:8443' });
  console.log(JSON.stringify(result));
}
