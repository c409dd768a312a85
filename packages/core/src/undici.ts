// A separate entry point: it reaches the core through the package itself, so that CommonJS and ESM users
// share one copy of the core (one registry of verified sockets, one set of error classes) with this entry.
import type * as tls from 'node:tls';
import { createSpiffeTlsSocket, type SpiffeTlsClientOptions } from '@spiffe-ts/core';
import { Agent, type Dispatcher } from 'undici';

/**
 * An undici dispatcher (for `fetch(url, { dispatcher })` and undici's request API) that presents our SVID
 * and accepts only servers whose SPIFFE ID the authorizer allows. Material is read from the source for
 * every new connection, so rotations apply without rebuilding the agent.
 */
export function createSpiffeDispatcher(
  options: SpiffeTlsClientOptions & { agentOptions?: Omit<Agent.Options, 'connect'> },
): Dispatcher {
  return new Agent({
    ...options.agentOptions,
    connect: (opts, callback) => {
      const socket = createSpiffeTlsSocket({
        ...options,
        tlsOptions: { ...options.tlsOptions, ALPNProtocols: ['http/1.1'] } as tls.ConnectionOptions,
        host: opts.hostname,
        port: Number(opts.port) || 443,
        servername: opts.servername || undefined,
      });
      socket.setNoDelay(true);
      let done = false;
      socket.once('secureConnect', () => {
        if (done) return;
        done = true;
        callback(null, socket);
      });
      socket.once('error', (err) => {
        if (done) return;
        done = true;
        callback(err, null);
      });
      return socket;
    },
  });
}

export type { SpiffeTlsClientOptions } from '@spiffe-ts/core';
