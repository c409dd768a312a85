// CPU cost of each synchronous step between a new X.509-SVID arriving and a server presenting it, and of a
// client's first verification of that new leaf (bench/README.md, "Rotation latency"). Each SVID is fresh (its
// own key and certificate), as after a real rotation, so nothing is served from a cache keyed by bytes or
// objects; the trust domain's CA is the same object throughout, as it is across rotations.
//
// Last, the floor after the swap: one whole handshake on loopback (SPIFFE client and attached server in this
// process, one at a time, nothing else running), which is what the first handshake with the new SVID costs
// at best.
//
// Usage (after pnpm build): cd bench && node --import tsx rotation-steps.ts [svids=200]
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import {
  createSpiffeTlsServer,
  createSpiffeTlsSocket,
  StaticX509Source,
  verifyX509Svid,
  X509BundleSet,
  X509Svid,
} from '@spiffe-ts/core';
import { DevCa } from '@spiffe-ts/dev-server';
import { StepTimes } from './steps.js';

const N = Number(process.argv[2] ?? 200);
const ID = 'spiffe://example.org/server';
const ca = await DevCa.create({ trustDomain: 'example.org' });
const bundles = new X509BundleSet([ca.x509Bundle()]);
const caPem = ca.x509Bundle().authorities.map((c) => c.toString());

// What the Workload API delivers: the chain as DER and the key as PKCS#8 DER.
const wire: { chain: Buffer; key: Buffer }[] = [];
for (let i = 0; i < N; i++) {
  const s = await ca.issueX509Svid(ID);
  wire.push({
    chain: Buffer.concat(s.certificates.map((c) => c.raw)),
    key: s.privateKey.export({ format: 'der', type: 'pkcs8' }) as Buffer,
  });
}

const steps = new StepTimes();
const time = <T>(step: string, f: () => T): T => steps.time(step, f);

for (const { chain, key } of wire) {
  // The parts of X509Svid.parse, timed alone (on their own copies, so the next line starts cold).
  time('  of which: certificate (OpenSSL)', () => new X509Certificate(chain));
  time('  of which: private key (OpenSSL)', () => createPrivateKey({ key, format: 'der', type: 'pkcs8' }));
  const svid = time('server: X509Svid.parse (all X.509-SVID rules)', () => X509Svid.parse(chain, key));
  time('server: verify against own bundle', () => verifyX509Svid(svid.certificates, bundles));
  const pem = time('server: key and chain as PEM', () => svid.toPem());
  time('server: tls.createSecureContext', () =>
    tls.createSecureContext({ key: pem.privateKey, cert: pem.certificates, ca: caPem }),
  );
  // A client meets the new leaf in a handshake: a fresh certificate object, verified in full.
  time('client: first verification of the new leaf', () => verifyX509Svid([new X509Certificate(chain)], bundles));
}

// One handshake at a time with a fresh server SVID each (so the client verifies a new leaf every time, as the
// first handshake after a rotation does).
const clientSource = new StaticX509Source(await ca.issueX509Svid('spiffe://example.org/client'), bundles);
for (const { chain, key } of wire.slice(0, Math.min(N, 100))) {
  const spiffe = createSpiffeTlsServer({
    source: new StaticX509Source(X509Svid.parse(chain, key), bundles),
    authorize: ['spiffe://example.org/client'],
  });
  const server = tls.createServer(spiffe.options, (s) => s.end());
  const detach = spiffe.attach(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const socket = createSpiffeTlsSocket({ source: clientSource, authorize: [ID], host: '127.0.0.1', port });
    socket.once('secureConnect', () => {
      steps.since('handshake: one whole, new server leaf (wall)', t0);
      socket.destroy();
      resolve();
    });
    socket.once('error', reject);
  });
  detach();
  await new Promise((r) => server.close(r));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;
const warm = Math.min(20, N >> 2); // the first SVIDs also pay JIT compilation
console.log(`rotation steps, ${N - warm} fresh SVIDs (after ${warm} warm-up), CPU ms: min / median`);
let serverTotal = 0;
for (const [step, xs] of steps.samples) {
  const kept = xs.length > warm * 2 ? xs.slice(warm) : xs.slice(Math.min(5, xs.length - 1));
  const min = Math.min(...kept);
  const med = median(kept);
  if (step.startsWith('server:')) serverTotal += med;
  console.log(`  ${step.padEnd(50)} ${min.toFixed(3).padStart(7)} / ${med.toFixed(3).padStart(7)}`);
}
console.log(`  ${'server: sum of medians before setSecureContext'.padEnd(50)} ${serverTotal.toFixed(3).padStart(17)}`);
