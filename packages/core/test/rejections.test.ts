import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { KeyObject } from 'node:crypto';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';
import * as tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { metrics } from '@opentelemetry/api';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import {
  authorizeSocketPeer,
  hasSpiffeTls,
  matchId,
  reportDenial,
  SpiffeAuthError,
  SpiffeMetric,
  type SpiffeRejectEvent,
  StaticX509Source,
  spiffeServerTls,
  X509BundleSet,
  type X509Svid,
} from '@spiffe-ts/core';
import { createAuthority, DevCa, KeyUsage } from '@spiffe-ts/dev-server';
import { type LogLine, recordingLogger, TestReader } from './telemetry.js';

const SERVER = 'spiffe://example.org/service/orders';
const ALLOWED = 'spiffe://example.org/service/payment-processor';
const OTHER = 'spiffe://example.org/service/other';

const pem = (svid: X509Svid) => ({
  cert: svid.certificates.map((c) => c.toString()).join('\n'),
  key: svid.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
});

describe('refused handshakes are reported with their reason', () => {
  let ca: DevCa;
  let stranger: DevCa;
  let server: https.Server;
  let port: number;
  let logger: ReturnType<typeof recordingLogger>;
  let reader: TestReader;
  const rejects: SpiffeRejectEvent[] = [];
  let detach: () => void;

  before(async () => {
    reader = new TestReader();
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
    ca = await DevCa.create({ trustDomain: 'example.org' });
    stranger = await DevCa.create({ trustDomain: 'example.org' });
    const source = new StaticX509Source(await ca.issueX509Svid(SERVER), new X509BundleSet([ca.x509Bundle()]));
    const wiring = spiffeServerTls(source, { authorize: matchId(ALLOWED), onReject: (e) => rejects.push(e) });
    logger = recordingLogger();
    server = https.createServer(wiring.options, (_req, res) => res.end('ok'));
    assert.equal(hasSpiffeTls(server), false);
    detach = wiring.attach(server, { logger });
    assert.equal(hasSpiffeTls(server), true);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    detach();
    server.close();
    metrics.disable();
  });

  /** Connects with these client options; resolves when the server has closed or answered. */
  async function attempt(options: tls.ConnectionOptions): Promise<string> {
    return new Promise((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options }, () => {
        s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      });
      let data = '';
      s.on('data', (d) => {
        data += d;
      });
      s.on('error', () => resolve(`error:${data}`));
      s.on('close', () => resolve(data));
    });
  }

  /** The next log line with this reason (the server may log just after the client sees the close). */
  async function lineFor(reason: string): Promise<LogLine> {
    for (let i = 0; i < 100; i++) {
      const l = logger.lines.find((x) => x.fields.reason === reason);
      if (l) return l;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no log line with reason ${reason}: ${JSON.stringify(logger.lines)}`);
  }

  test('a self-signed client certificate: TLS_SELF_SIGNED with the peer address', async () => {
    const self = await createAuthority({
      isCa: false,
      keyUsage: KeyUsage.digitalSignature,
      uri: ALLOWED,
      subject: 'CN=self-signed',
    });
    const key = KeyObject.from(self.keyPair.keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
    const out = await attempt({ cert: self.certificate.toString(), key });
    assert.doesNotMatch(out, /200 OK/);
    const line = await lineFor('TLS_SELF_SIGNED');
    assert.equal(line.level, 'warn');
    assert.equal(line.message, 'SPIFFE: TLS handshake refused');
    assert.equal(line.fields.remoteAddress, '127.0.0.1');
    assert.equal(line.fields.spiffeId, undefined, 'an unverified ID is never reported as the peer');
    assert.equal(line.fields.detail, 'DEPTH_ZERO_SELF_SIGNED_CERT');
    assert.ok(rejects.some((r) => r.reason === 'TLS_SELF_SIGNED'));
  });

  test('a certificate from an unknown CA: TLS_UNKNOWN_CA', async () => {
    const out = await attempt(pem(await stranger.issueX509Svid(ALLOWED)));
    assert.doesNotMatch(out, /200 OK/);
    await lineFor('TLS_UNKNOWN_CA');
  });

  test('no client certificate: TLS_NO_PEER_CERTIFICATE', async () => {
    const out = await attempt({});
    assert.doesNotMatch(out, /200 OK/);
    await lineFor('TLS_NO_PEER_CERTIFICATE');
  });

  test('a verified peer outside the allowlist: UNAUTHORIZED_SPIFFE_ID with its (verified) SPIFFE ID', async () => {
    const out = await attempt(pem(await ca.issueX509Svid(OTHER)));
    assert.doesNotMatch(out, /200 OK/);
    const line = await lineFor('UNAUTHORIZED_SPIFFE_ID');
    assert.equal(line.fields.spiffeId, OTHER);
  });

  test('plain text on the TLS port: TLS_NOT_TLS', async () => {
    await new Promise<void>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
    await lineFor('TLS_NOT_TLS');
  });

  test('an allowed peer gets through; handshakes are counted by result and reason', async () => {
    const out = await attempt(pem(await ca.issueX509Svid(ALLOWED)));
    assert.match(out, /200 OK/);
    const points = await reader.points(SpiffeMetric.TLS_HANDSHAKES);
    const value = (result: string, reason?: string) =>
      points.find((p) => p.attributes.result === result && p.attributes.reason === reason)?.value;
    assert.ok((value('accepted') ?? 0) >= 1, JSON.stringify(points));
    for (const reason of ['TLS_SELF_SIGNED', 'TLS_UNKNOWN_CA', 'TLS_NO_PEER_CERTIFICATE', 'UNAUTHORIZED_SPIFFE_ID']) {
      assert.ok((value('refused', reason) ?? 0) >= 1, `${reason}: ${JSON.stringify(points)}`);
    }
  });

  test('the options alone (never attached) still refuse unverified clients', async () => {
    const source = new StaticX509Source(await ca.issueX509Svid(SERVER), new X509BundleSet([ca.x509Bundle()]));
    const bare = https.createServer(spiffeServerTls(source).options, (_req, res) => res.end('ok'));
    await new Promise<void>((r) => bare.listen(0, '127.0.0.1', r));
    const barePort = (bare.address() as AddressInfo).port;
    try {
      for (const options of [pem(await stranger.issueX509Svid(ALLOWED)), {}]) {
        const out = await new Promise<string>((resolve) => {
          const s = tls.connect({ host: '127.0.0.1', port: barePort, rejectUnauthorized: false, ...options }, () =>
            s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
          );
          let data = '';
          s.on('data', (d) => {
            data += d;
          });
          s.on('error', () => resolve(data));
          s.on('close', () => resolve(data));
        });
        assert.doesNotMatch(out, /200 OK/);
      }
      // a CA-verified client still gets in (the node:tls check alone, as before)
    } finally {
      bare.close();
    }
  });
});

describe('denied requests are reported through one path', () => {
  test('reportDenial: warning with reason, status, address, verified ID, detail; counted; the onDenied event', () => {
    const logger = recordingLogger();
    const decision = authorizeSocketPeer(new net.Socket(), matchId(ALLOWED));
    assert.equal(decision.ok, false);
    if (decision.ok) return;
    const event = reportDenial(decision.error, { route: 'GET /orders', remoteAddress: '10.0.0.7', logger });
    assert.deepEqual(
      { ...event },
      {
        code: 'PEER_NOT_VERIFIED',
        message: 'no verified SPIFFE ID for this connection',
        statusCode: 403,
        route: 'GET /orders',
        remoteAddress: '10.0.0.7',
      },
    );
    const [line] = logger.lines;
    assert.equal(line?.level, 'warn');
    assert.equal(line?.message, 'SPIFFE: request denied');
    assert.equal(line?.fields.reason, 'PEER_NOT_VERIFIED');
    assert.equal(line?.fields.remoteAddress, '10.0.0.7');
    // the server-side detail says what is most likely wrong: no SPIFFE TLS on this server
    assert.match(String(line?.fields.detail), /not TLS/);
  });

  test('NODE_DEBUG=spiffe shows denials without any logger', () => {
    // debuglog reads NODE_DEBUG when the process starts: a child process of its own.
    const script = `
      import { reportDenial, SpiffeAuthError } from '@spiffe-ts/core';
      reportDenial(new SpiffeAuthError('JWTSVID_MISSING', { statusCode: 401 }), { route: '/x', remoteAddress: '10.1.2.3' });
    `;
    const res = spawnSync(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', script],
      {
        env: { ...process.env, NODE_DEBUG: 'spiffe' },
        cwd: fileURLToPath(new URL('..', import.meta.url)),
        encoding: 'utf8',
      },
    );
    assert.equal(res.status, 0, res.stderr);
    assert.match(
      res.stderr,
      /SPIFFE \d+: SPIFFE: request denied reason="JWTSVID_MISSING" statusCode=401 remoteAddress="10\.1\.2\.3" route="\/x"/,
    );
  });

  test('a logger that throws changes nothing', () => {
    const throwing = {
      warn() {
        throw new Error('x');
      },
      error() {},
      info() {},
      debug() {},
    };
    const error = new SpiffeAuthError('JWTSVID_MISSING', { statusCode: 401 });
    assert.equal(reportDenial(error, { logger: throwing }).code, 'JWTSVID_MISSING');
  });
});
