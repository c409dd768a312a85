// A client workload: SPIFFE mTLS channel credentials (accepting only the greeter's SPIFFE ID) plus JWT-SVID
// call credentials, both from its own Workload API.

import * as grpc from '@grpc/grpc-js';
import { JwtSource, X509Source } from '@spiffe-ts/core';
import { jwtSvidCallCredentials, spiffeChannelCredentials } from '@spiffe-ts/grpc';
import { type GreeterClient, greeter } from './greeter.js';

export const GREETER = 'spiffe://example.org/service/greeter';

export async function sayHello(options: { address?: string; target: string; name: string }) {
  const x509 = await X509Source.create({ address: options.address, timeoutMs: 15_000 });
  const jwt = await JwtSource.create({ address: options.address, timeoutMs: 15_000 });
  const credentials = grpc.credentials.combineChannelCredentials(
    spiffeChannelCredentials(x509, { authorize: GREETER }),
    jwtSvidCallCredentials(jwt, { audience: 'greeter' }),
  );
  // grpc.ssl_target_name_override only sets the TLS server name (the server is checked by SPIFFE ID).
  const client = new greeter(options.target, credentials, {
    'grpc.ssl_target_name_override': 'greeter',
  }) as unknown as GreeterClient;
  const me = x509.getX509Svid().id.toString();
  try {
    const reply = await new Promise<{ message: string }>((resolve, reject) =>
      client.sayHello({ name: options.name }, { deadline: Date.now() + 10_000 }, (err, res) =>
        err ? reject(err) : resolve(res as { message: string }),
      ),
    );
    return { me, code: 'OK', message: reply.message };
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { me, code: grpc.status[e.code] ?? String(e.code), message: e.details };
  } finally {
    client.close();
    await jwt.close();
    await x509.close();
  }
}

// Run directly: `SPIFFE_ENDPOINT_SOCKET=unix:///tmp/payments.sock TARGET=127.0.0.1:50051 pnpm exec tsx src/client.ts`
if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await sayHello({ target: process.env.TARGET ?? '127.0.0.1:50051', name: 'world' })));
}
