// Per-handshake cost of each step of SPIFFE peer verification on real TLS sockets (bench/README.md, "Honest
// handshake ratio"). One process, client and server on loopback; each synchronous step is timed with
// process.hrtime.bigint() and the medians printed. Each server handshake times one variant (round robin), so
// that every "first call" is the first on its socket.
//
// Usage (after pnpm build): cd bench && node --import tsx handshake-steps.ts [handshakes=3000]
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import {
  createSpiffeTlsServer,
  createSpiffeTlsSocket,
  matchId,
  StaticX509Source,
  spiffeCheckServerIdentity,
  verifyPeer,
  X509Bundle,
} from '@spiffe-ts/core';
import { tlsMaterial } from './material.js';
import { StepTimes } from './steps.js';

const N = Number(process.argv[2] ?? 3000);
const SERVER_ID = 'spiffe://example.org/server';
const CLIENT_ID = 'spiffe://example.org/client';
const { serverSvid, clientSvid, bundlePem } = await tlsMaterial(SERVER_ID, CLIENT_ID);
const serverSource = new StaticX509Source(serverSvid, X509Bundle.parse('example.org', bundlePem));
const clientSource = new StaticX509Source(clientSvid, X509Bundle.parse('example.org', bundlePem));
const sp = serverSvid.toPem();
const cp = clientSvid.toPem();

const steps = new StepTimes();
const time = <T>(k: string, f: () => T): T => steps.time(k, f);

/** DER of a linked certificate and its issuers, leaf first (as peer.ts's derChain). */
function walk(x: tls.DetailedPeerCertificate | import('node:crypto').X509Certificate | undefined): Buffer[] {
  const out: Buffer[] = [];
  let cur = x;
  while (cur && out.length < 16) {
    const raw = cur.raw;
    if (out.some((b) => b.equals(raw))) break;
    out.push(raw);
    cur = 'issuerCertificate' in cur ? (cur.issuerCertificate as typeof cur) : undefined;
  }
  return out;
}

// ---- server steps, a plain server (same options as the baseline of the handshake row) ----------------------
const authorizer = matchId(CLIENT_ID);
const variants = ['x509', 'legacy', 'legacyDetailed', 'x509Twice', 'legacyTwice'] as const;
let seen = 0;
const plainServer = tls.createServer(
  {
    cert: sp.certificates,
    key: sp.privateKey,
    ca: bundlePem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    secureOptions: 0x4000, // SSL_OP_NO_TICKET, as both servers of the row
  },
  (socket) => {
    const v = variants[seen++ % variants.length];
    if (v === 'x509') {
      const x = time('server: getPeerX509Certificate() (first on the socket)', () => socket.getPeerX509Certificate());
      time('server:   X509Certificate .raw', () => x?.raw);
      const chain = time('server:   issuerCertificate walk, .raw each', () => walk(x));
      time('server:   SHA-256 of the chain (old cache key)', () => {
        const h = createHash('sha256');
        for (const c of chain) h.update(c);
        return h.digest('base64');
      });
      time('server:   leaf DER as a latin1 string (new cache key)', () => chain[0]?.toString('latin1'));
      time('server:   verifyPeer, cached (whole-chain key, authorizer)', () =>
        verifyPeer(chain, serverSource, authorizer),
      );
    } else if (v === 'legacy') {
      const c = time('server: getPeerCertificate() (leaf only, first on the socket)', () =>
        socket.getPeerCertificate(),
      );
      time('server:   getPeerCertificate().raw', () => c.raw);
    } else if (v === 'legacyDetailed') {
      time('server: getPeerCertificate(true) (first on the socket)', () => socket.getPeerCertificate(true));
    } else if (v === 'x509Twice') {
      socket.getPeerX509Certificate();
      time('server: getPeerX509Certificate(), second call', () => socket.getPeerX509Certificate());
    } else {
      socket.getPeerCertificate();
      time('server: getPeerCertificate(), second call', () => socket.getPeerCertificate());
    }
    socket.end('ok');
  },
);

// ---- the attached SPIFFE server: its whole secureConnection work, between a listener before and after ----
const spiffe = createSpiffeTlsServer({ source: serverSource, authorize: [CLIENT_ID] });
const spiffeServer = tls.createServer(spiffe.options, (s) => s.end('ok'));
spiffe.attach(spiffeServer);
let t0 = 0n;
spiffeServer.prependListener('secureConnection', () => {
  t0 = process.hrtime.bigint();
});
spiffeServer.on('secureConnection', () => steps.since('server: attached SPIFFE server, whole verification', t0));

await new Promise<void>((r) => plainServer.listen(0, '127.0.0.1', r));
await new Promise<void>((r) => spiffeServer.listen(0, '127.0.0.1', r));
const plainPort = (plainServer.address() as AddressInfo).port;
const spiffePort = (spiffeServer.address() as AddressInfo).port;

// ---- clients ----------------------------------------------------------------------------------------------
const plainOptions: tls.ConnectionOptions = {
  cert: cp.certificates,
  key: cp.privateKey,
  ca: bundlePem,
  rejectUnauthorized: true,
  minVersion: 'TLSv1.3',
};
const shared = tls.createSecureContext(plainOptions);
const check = spiffeCheckServerIdentity(clientSource, [SERVER_ID]);

function connect(kind: 'plain' | 'spiffe' | 'check'): Promise<void> {
  return new Promise((resolve, reject) => {
    const a = process.hrtime.bigint();
    let socket: tls.TLSSocket;
    if (kind === 'spiffe') {
      socket = createSpiffeTlsSocket({
        source: clientSource,
        authorize: [SERVER_ID],
        host: '127.0.0.1',
        port: spiffePort,
      });
      steps.since('client: createSpiffeTlsSocket(), synchronous part', a);
    } else {
      socket = tls.connect({
        ...plainOptions,
        secureContext: shared,
        host: '127.0.0.1',
        port: plainPort,
        checkServerIdentity:
          kind === 'check'
            ? (host, cert) => time('client: spiffeCheckServerIdentity, cached', () => check(host, cert))
            : () => undefined,
      });
      if (kind === 'plain') steps.since('client: tls.connect() with the shared context, synchronous part', a);
      else {
        socket.once('secureConnect', () =>
          time('client: getPeerCertificate(true) (node:tls, before checkServerIdentity)', () =>
            socket.getPeerCertificate(true),
          ),
        );
      }
    }
    let data = '';
    socket.on('data', (d: Buffer) => {
      data += d.toString();
    });
    socket.on('error', reject);
    socket.on('close', () => (data === 'ok' ? resolve() : reject(new Error(`handshake failed (${data})`))));
  });
}

async function run(n: number, kind: 'plain' | 'spiffe' | 'check'): Promise<void> {
  let started = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (started++ < n) await connect(kind);
    }),
  );
}

await run(200, 'plain');
await run(200, 'spiffe');
steps.samples.clear();
seen = 0;
for (let r = 0; r < 3; r++) {
  await run(N / 3, 'plain');
  await run(N / 3, 'spiffe');
  await run(N / 6, 'check');
}
const median = (xs: number[]) => ([...xs].sort((a, b) => a - b)[xs.length >> 1] as number) * 1000; // µs
for (const [k, v] of [...steps.samples].sort(([a], [b]) => (a < b ? -1 : 1))) {
  console.log(`${k.padEnd(78)} n=${String(v.length).padStart(5)}  median ${median(v).toFixed(1).padStart(7)} µs`);
}
plainServer.close();
spiffeServer.close();
