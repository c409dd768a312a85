// A client workload in trust domain partner.test: calls the orders service of example.org over SPIFFE mTLS,
// and accepts the server only if it proves the orders SPIFFE ID, verified with example.org's bundle fetched
// from example.org's bundle endpoint.
import { matchId, withFederatedBundles, X509Source } from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import { request } from 'undici';
import { federatedBundlesFromEnv } from './federation.js';

export const ORDERS = 'spiffe://example.org/service/orders';

export async function callOrders(options: { url: string }) {
  const source = await X509Source.create({ timeoutMs: 15_000 });
  const federated = await federatedBundlesFromEnv();
  const dispatcher = createSpiffeDispatcher({
    source: withFederatedBundles(source, federated),
    authorize: matchId(ORDERS),
  });
  try {
    const res = await request(`${options.url}/orders`, { dispatcher });
    return { me: source.getX509Svid().id.toString(), status: res.statusCode, body: await res.body.text() };
  } finally {
    await dispatcher.close();
    await federated.close();
    await source.close();
  }
}

// Run directly: `SPIFFE_ENDPOINT_SOCKET=... FEDERATED_TRUST_DOMAIN=example.org ... ORDERS_URL=https://127.0.0.1:8443 pnpm client`
if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await callOrders({ url: process.env.ORDERS_URL ?? 'https://127.0.0.1:8443' });
  console.log(JSON.stringify(result));
}
