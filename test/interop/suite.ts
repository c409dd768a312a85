// What the interop test files share beyond harness.ts: one describe per SPIRE version, and our Fastify service
// that go-spiffe clients call. Kept apart from harness.ts, which bench/run.ts also loads (no node:test or
// Fastify in the benchmark's process).
import { describe } from 'node:test';
import type { SpiffeIdAllowlist, X509MaterialSource } from '@spiffe-ts/core';
import { fastifySpiffe, spiffeHttpsOptions } from '@spiffe-ts/fastify';
import Fastify, { type FastifyInstance } from 'fastify';
import { SPIRE_VERSIONS, spirePresent } from './harness.js';

/**
 * Declares `body` once per SPIRE version under test (`SPIRE_VERSIONS`, newest first) as a describe titled
 * `title(version)`, skipped (with a pointer to run.sh) where build.sh has not built that version.
 */
export function describeEachSpireVersion(title: (version: string) => string, body: (version: string) => void): void {
  for (const version of SPIRE_VERSIONS)
    describe(title(version), { skip: !spirePresent(version) && 'run test/interop/run.sh' }, () => body(version));
}

/**
 * Our Fastify service on 127.0.0.1, SPIFFE mTLS with the SVID and bundles of `source`, admitting only the callers
 * in `allow`: GET /hello answers `{ peer }`, the caller's SPIFFE ID. The caller closes `app`.
 */
export async function startHelloService(
  source: X509MaterialSource,
  allow: SpiffeIdAllowlist,
): Promise<{ app: FastifyInstance; url: string }> {
  const spiffe = spiffeHttpsOptions(source);
  const app = Fastify({ https: spiffe.https });
  try {
    await app.register(fastifySpiffe, { tls: spiffe, allow });
    app.get('/hello', async (req) => ({ peer: req.spiffeId?.toString() ?? null }));
    await app.listen({ port: 0, host: '127.0.0.1' });
  } catch (err) {
    await app.close();
    throw err;
  }
  return { app, url: `https://127.0.0.1:${(app.server.address() as { port: number }).port}/hello` };
}
