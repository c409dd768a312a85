// Server side of the benchmarks, in its own process so the load generator does not share its event loop.
// Usage: child.ts <role> <materialDir>; prints one JSON line when ready, then serves until killed.
//   tls-spiffe | tls-plain                     mTLS echo server (handshake benchmark)
//   fastify-spiffe | fastify-bare | express-spiffe | express-bare   HTTPS apps (requests/s benchmark)
//   express-bare-layer                         express-bare with one no-op middleware
//   tls-spiffe-fed                             tls-spiffe trusting 1,000 federated trust domains besides its own
//   fastify-spiffe-big                         fastify-spiffe with an allowlist of 10,000 IDs + 1,000 trust domains
//   devserver [federated]                      dev Workload API (serving `federated` federated bundles, default 0);
//                                              on IPC {rotate: n} re-issues SVIDs n times, answers {rotated, sentAt}
//   rotation-clients <address> <port>          two SPIFFE clients (X509Source at <address>) handshaking with the
//                                              rotation benchmark's server all the time; reports each new leaf
//                                              {presented: base64 DER, at}; on IPC {stop} answers {failed, handshakes}
import { constants as cryptoConstants } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import { join } from 'node:path';
import * as tls from 'node:tls';
import {
  createSpiffeTlsServer,
  createSpiffeTlsSocket,
  matchAny,
  type SpiffeIdAllowlist,
  StaticX509Source,
  X509Bundle,
  X509BundleSet,
  X509Source,
  X509Svid,
} from '@spiffe-ts/core';
import { DevCa, DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { allowSpiffeIds, createSpiffeHttpsServer } from '@spiffe-ts/express';
import { fastifySpiffe, spiffeHttpsOptions } from '@spiffe-ts/fastify';
import express from 'express';
import Fastify from 'fastify';
import { federatedBundles, federatedTd } from './federated.js';

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

async function source(federated = 0): Promise<StaticX509Source> {
  const own = X509Bundle.parse('example.org', read('bundle.pem'));
  return new StaticX509Source(
    X509Svid.parse(read('server.pem'), read('server.key')),
    federated > 0 ? new X509BundleSet([own, ...(await federatedBundles(federated))]) : own,
  );
}

/** An allowlist of 10,000 exact IDs (the client's among them) and 1,000 whole trust domains. */
function bigAllowlist(): SpiffeIdAllowlist {
  const ids = Array.from({ length: 9_999 }, (_, i) => `spiffe://example.org/service-${i}`);
  const tds = Array.from({ length: 1_000 }, (_, i) => ({ trustDomain: federatedTd(i) }));
  return [...ids, CLIENT_ID, ...tds];
}

function ready(info: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(info)}\n`);
}

async function main(): Promise<void> {
  switch (role) {
    case 'tls-spiffe':
    case 'tls-spiffe-fed':
    case 'tls-plain': {
      const handler = (socket: tls.TLSSocket) => {
        if (!socket.destroyed) socket.end('ok');
      };
      let server: tls.Server;
      if (role !== 'tls-plain') {
        const spiffe = createSpiffeTlsServer({
          source: await source(role === 'tls-spiffe-fed' ? 1000 : 0),
          authorize: [CLIENT_ID],
        });
        server = tls.createServer(spiffe.options, handler);
        spiffe.attach(server);
      } else {
        server = tls.createServer(plainTlsOptions(), handler);
      }
      server.listen(0, '127.0.0.1', () => ready({ port: (server.address() as { port: number }).port }));
      break;
    }
    case 'fastify-spiffe':
    case 'fastify-spiffe-big':
    case 'fastify-bare': {
      let app: ReturnType<typeof Fastify>;
      if (role !== 'fastify-bare') {
        const spiffe = spiffeHttpsOptions(await source(), { authorize: matchAny() });
        app = Fastify({ https: spiffe.https });
        await app.register(fastifySpiffe, {
          tls: spiffe,
          allow: role === 'fastify-spiffe-big' ? bigAllowlist() : [CLIENT_ID],
        });
      } else {
        app = Fastify({ https: plainTlsOptions() });
      }
      app.get('/', async () => ({ hello: 'world' }));
      await app.listen({ port: 0, host: '127.0.0.1' });
      ready({ port: (app.server.address() as { port: number }).port });
      break;
    }
    case 'express-spiffe':
    case 'express-bare':
    case 'express-bare-layer': {
      const app = express();
      if (role === 'express-spiffe') app.use(allowSpiffeIds(CLIENT_ID));
      if (role === 'express-bare-layer') app.use((_req, _res, next) => next());
      app.get('/', (_req, res) => {
        res.json({ hello: 'world' });
      });
      const server =
        role === 'express-spiffe'
          ? createSpiffeHttpsServer(app, await source())
          : https.createServer(plainTlsOptions(), app);
      server.listen(0, '127.0.0.1', () => ready({ port: (server.address() as { port: number }).port }));
      break;
    }
    case 'devserver': {
      const federated = Number(process.argv[4] ?? 0);
      const ca = await DevCa.create({ trustDomain: 'example.org', svidTtlSeconds: 3600 });
      const dev = await DevWorkloadApiServer.start({
        ca,
        workloads: { node: 'spiffe://example.org/bench-node', go: 'spiffe://example.org/bench-go' },
        autoRotate: false,
      });
      // Federated bundles as a thousand-trust-domain agent delivers them: in every X.509 update, same bytes
      // each time (the dev server's own federation would make a CA per trust domain).
      if (federated > 0) dev.setFault({ kind: 'x509', federatedBundles: await federatedBundles(federated) });
      process.on('message', async (msg: { rotate?: number }) => {
        for (let i = 0; i < (msg.rotate ?? 0); i++) await dev.rotateSvids(['node']);
        // When the last update was handed to the streams (the rotation benchmark's start time).
        process.send?.({ rotated: msg.rotate, sentAt: performance.timeOrigin + performance.now() });
      });
      ready({ node: dev.address('node'), go: dev.address('go') });
      break;
    }
    case 'rotation-clients': {
      // The rotation benchmark's load, in a process of its own: in the server's process its handshakes (client
      // side included) shared the event loop that receives, verifies and swaps the new SVID.
      const [address, port] = [process.argv[4] as string, Number(process.argv[5])];
      const clientSource = await X509Source.create({ address });
      let leaf: Buffer | undefined;
      let failed = 0;
      let handshakes = 0;
      let running = true;
      const one = () =>
        new Promise<void>((resolve) => {
          const socket = createSpiffeTlsSocket({
            source: clientSource,
            authorize: ['spiffe://example.org/bench-node'],
            host: '127.0.0.1',
            port,
          });
          socket.once('secureConnect', () => {
            const at = performance.timeOrigin + performance.now();
            handshakes++;
            const presented = socket.getPeerX509Certificate()?.raw;
            if (presented && !presented.equals(leaf ?? Buffer.alloc(0))) {
              leaf = presented;
              process.send?.({ presented: presented.toString('base64'), at });
            }
          });
          socket.on('data', () => undefined);
          socket.once('error', () => {
            failed++;
            resolve();
          });
          socket.once('close', () => resolve());
        });
      const loops = Array.from({ length: 2 }, async () => {
        while (running) await one();
      });
      process.on('message', async (msg: { stop?: boolean }) => {
        if (!msg.stop) return;
        running = false;
        await Promise.all(loops);
        await clientSource.close();
        process.send?.({ failed, handshakes });
      });
      ready({});
      break;
    }
    default:
      throw new Error(`unknown role ${role}`);
  }
}

// The load generator asks for this process's CPU time around each round (µs, user + system).
process.on('message', (msg: { cpu?: boolean }) => {
  if (msg.cpu) {
    const { user, system } = process.cpuUsage();
    process.send?.({ cpu: user + system });
  }
});
// Stopped with SIGTERM: exit normally so that --cpu-prof (BENCH_CHILD_CPU_PROF in run.ts) writes its profile.
process.once('SIGTERM', () => process.exit(0));

void main();
