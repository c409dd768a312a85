// A client workload: fetches a JWT-SVID for the API's audience from its Workload API and sends it as a
// bearer token. The JwtSource caches the token until it nears expiry, so repeated calls don't refetch.
import { JwtSource } from '@spiffe-ts/core';
import { request } from 'undici';

export async function callApi(options: { address?: string; url: string; audience: string }) {
  const source = await JwtSource.create({ address: options.address, timeoutMs: 15_000 });
  try {
    const svid = await source.fetchJwtSvid({ audience: options.audience });
    const res = await request(`${options.url}/orders`, { headers: { authorization: `Bearer ${svid.token}` } });
    return { me: svid.id.toString(), status: res.statusCode, body: await res.body.text() };
  } finally {
    await source.close();
  }
}

// Run directly: `SPIFFE_ENDPOINT_SOCKET=unix:///tmp/payments.sock API_URL=http://127.0.0.1:8080 pnpm exec tsx src/client.ts`
if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await callApi({ url: process.env.API_URL ?? 'http://127.0.0.1:8080', audience: 'orders-api' });
  console.log(JSON.stringify(result));
}
