// The Greeter test service (fixtures/greeter.proto) as the gRPC tests use it: its loaded definition and the
// client types. gRPC-only, so it lives here rather than in test/support/adapters.ts (which no framework needs).
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** What every method of the test services answers. */
export interface HelloReply {
  message: string;
  caller: string;
  tokenSubject: string;
}

/** A unary method of a generated client, called with or without request metadata. */
export interface Unary {
  (
    req: { name: string },
    options: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: HelloReply) => void,
  ): grpc.ClientUnaryCall;
  (
    req: { name: string },
    md: grpc.Metadata,
    options: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: HelloReply) => void,
  ): grpc.ClientUnaryCall;
}

/** A client of helloworld.Greeter. */
export interface GreeterClient extends grpc.Client {
  sayHello: Unary;
  whoami: Unary;
}

/** A client of helloworld.Admin (a service no allowlist names). */
export interface AdminClient extends grpc.Client {
  reset: Unary;
}

const definition = protoLoader.loadSync(fileURLToPath(new URL('./fixtures/greeter.proto', import.meta.url)), {
  keepCase: false,
});

/** The loaded helloworld package: service definitions and client constructors. */
export const proto = grpc.loadPackageDefinition(definition) as unknown as {
  helloworld: {
    Greeter: grpc.ServiceClientConstructor;
    Admin: grpc.ServiceClientConstructor;
  };
};
