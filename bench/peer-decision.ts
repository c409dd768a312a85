// The per-request peer decision timed alone: resolveRequestPeer (what the Fastify, Express and NestJS
// adapters call on every request) on a real server-side TLS socket verified by the SPIFFE wiring, beside
// peerSpiffeId (the per-socket lookup it starts with) as the floor. Information only, no goal.
// Usage (after pnpm build): node --import tsx peer-decision.ts
import type * as tls from 'node:tls';
import { createServer } from 'node:tls';
import {
  createSpiffeTlsSocket,
  matchAny,
  peerSpiffeId,
  resolveRequestPeer,
  StaticX509Source,
  spiffeServerTls,
  toMatcher,
} from '@spiffe-ts/core';
import { DevCa } from '@spiffe-ts/dev-server';

const CALLS = 100_000;
const ca = await DevCa.create({ trustDomain: 'example.org', svidTtlSeconds: 3600 });
const bundle = ca.x509Bundle();
const server = new StaticX509Source(await ca.issueX509Svid('spiffe://example.org/server'), bundle);
const client = new StaticX509Source(await ca.issueX509Svid('spiffe://example.org/client'), bundle);

const wiring = spiffeServerTls(server);
const accepted = new Promise<tls.TLSSocket>((resolve) => {
  const srv = createServer(wiring.options, resolve);
  wiring.attach(srv);
  srv.listen(0, '127.0.0.1', () => {
    const { port } = srv.address() as { port: number };
    createSpiffeTlsSocket({ source: client, authorize: matchAny(), host: '127.0.0.1', port }).on('error', () => {});
  });
});
const socket = await accepted;
const options = { allow: toMatcher(['spiffe://example.org/client']) };
if (!resolveRequestPeer(socket, undefined, options).ok) throw new Error('the peer should be allowed');

const perCall = (fn: () => unknown): number => {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) fn();
  return Number(process.hrtime.bigint() - t0) / CALLS;
};
const decision: number[] = [];
const lookup: number[] = [];
for (let round = 0; round < 7; round++) {
  decision.push(perCall(() => resolveRequestPeer(socket, undefined, options)));
  lookup.push(perCall(() => peerSpiffeId(socket)));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
console.log(
  `resolveRequestPeer ${median(decision).toFixed(0)} ns/call, peerSpiffeId ${median(lookup).toFixed(0)} ns/call ` +
    `(median of 7 rounds of ${CALLS.toLocaleString('en')} calls)`,
);
process.exit(0);
