// The greeter server: gRPC over SPIFFE mTLS with its identity from the Workload API (SPIFFE_ENDPOINT_SOCKET).
// Only the payment processor may call SayHello, and each call must also carry a JWT-SVID for "greeter".

import * as grpc from '@grpc/grpc-js';
import { JwtSource, X509Source } from '@spiffe-ts/core';
import {
  jwtSvidAuthentication,
  jwtSvidOf,
  listenSpiffe,
  peerSpiffeIdOf,
  spiffeAuthorization,
  spiffeServerTls,
} from '@spiffe-ts/grpc';
import { greeter, type HelloReply } from './greeter.js';

export const PAYMENT_PROCESSOR = 'spiffe://example.org/service/payment-processor';

export async function startGreeter(options: { address?: string; port?: number } = {}) {
  const x509 = await X509Source.create({ address: options.address, timeoutMs: 15_000 });
  const jwt = await JwtSource.create({ address: options.address, timeoutMs: 15_000 });
  const server = new grpc.Server({
    interceptors: [
      spiffeAuthorization({ methods: { '/helloworld.Greeter/SayHello': [PAYMENT_PROCESSOR] } }),
      jwtSvidAuthentication({ bundles: jwt, audience: 'greeter' }),
    ],
  });
  server.addService(greeter.service, {
    sayHello: (call: grpc.ServerUnaryCall<{ name: string }, HelloReply>, cb: grpc.sendUnaryData<HelloReply>) => {
      const peer = peerSpiffeIdOf(call); // verified mTLS peer
      const token = jwtSvidOf(call); // validated JWT-SVID
      cb(null, { message: `hello ${call.request.name}, you are ${peer} (token for ${token?.audience.join(',')})` });
    },
  });
  const listener = await listenSpiffe(server, spiffeServerTls(x509), { port: options.port ?? 50051 });
  return {
    target: `127.0.0.1:${listener.port}`,
    id: x509.getX509Svid().id.toString(),
    close: async () => {
      await listener.close();
      server.forceShutdown();
      await jwt.close();
      await x509.close();
    },
  };
}

// Run directly: `SPIFFE_ENDPOINT_SOCKET=unix:///tmp/greeter.sock PORT=50051 pnpm exec tsx src/server.ts`
if (import.meta.url === `file://${process.argv[1]}`) {
  const g = await startGreeter({ port: Number(process.env.PORT ?? 50051) });
  console.log(JSON.stringify({ listening: g.target, spiffeId: g.id }));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void g.close());
}
