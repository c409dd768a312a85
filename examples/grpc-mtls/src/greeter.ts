// Loads the Greeter service definition shared by the server and the client.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export interface HelloReply {
  message: string;
}
export interface GreeterClient extends grpc.Client {
  sayHello(
    request: { name: string },
    options: grpc.CallOptions,
    callback: (err: grpc.ServiceError | null, reply?: HelloReply) => void,
  ): grpc.ClientUnaryCall;
}

const definition = protoLoader.loadSync(fileURLToPath(new URL('../proto/greeter.proto', import.meta.url)));
export const greeter = (
  grpc.loadPackageDefinition(definition) as unknown as { helloworld: { Greeter: grpc.ServiceClientConstructor } }
).helloworld.Greeter;
