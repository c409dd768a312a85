// Server side of the benchmarks, in its own process so the load generator does not share its event loop.
// Usage: child.ts <role> <materialDir>; prints one JSON line when ready, then serves until killed.
//   tls-spiffe | tls-plain                     mTLS echo server (handshake benchmark)
//   fastify-spiffe | fastify-bare | express-spiffe | express-bare   HTTPS apps (requests/s benchmark)
//   devserver                                  dev Workload API; on IPC {rotate: n} re-issues SVIDs n times
import { constants as cryptoConstants } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { createSpiffeTlsServer, matchAny, StaticX509Source, X509Bundle, X509Svid } from '@spiffe-ts/core';
import { DevCa, DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { allowSpiffeIds, createSpiffeHttpsServer } from '@spiffe-ts/express';
import { fastifySpiffe, spiffeHttpsOptions } from '@spiffe-ts/fastify';
import express from 'express';
import Fastify from 'fastify';

const [role, dir] = process.argv.slice(2) as [string, string];
const read = (f: string) => readFileSync(join(dir, f), 'utf8');
const CLIENT_ID = 'spiffe://example.org/bench-client';

function plainTlsOptions(): tls.TlsOptions {
  return {
    cert: read('server.pem'),
    key: read('server.key'),
    ca: read('bundle.pem'),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    // Same as the SPIFFE server: full handshakes only.
    secureOptions: cryptoConstants.SSL_OP_NO_TICKET,
  };
}

function source(): StaticX509Source {
  return new StaticX509Source(
    X509Svid.parse(read('server.pem'), read('server.key')),
    X509Bundle.parse('example.org', read('bundle.pem')),
  );
}

function ready(info: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(info)}\n`);
}

async function main(): Promise<void> {
  switch (role) {
    case 'tls-spiffe':
    case 'tls-plain': {
      const handler = (socket: tls.TLSSocket) => {
        if (!socket.destroyed) socket.end('ok');
      };
      let server: tls.Server;
      if (role === 'tls-spiffe') {
        const spiffe = createSpiffeTlsServer({ source: source(), authorize: [CLIENT_ID] });
        server = tls.createServer(spiffe.options, handler);
        spiffe.attach(server);
      } else {
        server = tls.createServer(plainTlsOptions(), handler);
      }
      server.listen(0, '127.0.0.1', () => ready({ port: (server.address() as { port: number }).port }));
      break;
    }
    case 'fastify-spiffe':
    case 'fastify-bare': {
      let app: ReturnType<typeof Fastify>;
      if (role === 'fastify-spiffe') {
        const spiffe = spiffeHttpsOptions(source(), { authorize: matchAny() });
        app = Fastify({ https: spiffe.https });
        await app.register(fastifySpiffe, { tls: spiffe, allow: [CLIENT_ID] });
      } else {
        app = Fastify({ https: plainTlsOptions() });
      }
      app.get('/', async () => ({ hello: 'world' }));
      await app.listen({ port: 0, host: '127.0.0.1' });
      ready({ port: (app.server.address() as { port: number }).port });
      break;
    }
    case 'express-spiffe':
    case 'express-bare': {
      const app = express();
      if (role === 'express-spiffe') app.use(allowSpiffeIds(CLIENT_ID));
      app.get('/', (_req, res) => {
        res.json({ hello: 'world' });
      });
      const server =
        role === 'express-spiffe' ? createSpiffeHttpsServer(app, source()) : https.createServer(plainTlsOptions(), app);
      server.listen(0, '127.0.0.1', () => ready({ port: (server.address() as { port: number }).port }));
      break;
    }
    case 'devserver': {
      const ca = await DevCa.create({ trustDomain: 'example.org', svidTtlSeconds: 3600 });
      const dev = await DevWorkloadApiServer.start({
        ca,
        workloads: { node: 'spiffe://example.org/bench-node', go: 'spiffe://example.org/bench-go' },
        autoRotate: false,
      });
      process.on('message', async (msg: { rotate?: number }) => {
        for (let i = 0; i < (msg.rotate ?? 0); i++) await dev.rotateSvids(['node']);
        process.send?.({ rotated: msg.rotate });
      });
      ready({ node: dev.address('node'), go: dev.address('go') });
      break;
    }
    default:
      throw new Error(`unknown role ${role}`);
  }
}

void main();
