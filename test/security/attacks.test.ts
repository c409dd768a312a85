// Attacks, each its own test. X.509 attacks are presented by a hostile client over a real TLS socket to a
// SPIFFE mTLS server (which must never admit it), and checked for the exact typed error in the core. JWT
// attacks are crafted with jose and must fail with the expected JwtSvidError code.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { type KeyObject, webcrypto } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, watch } from 'node:fs';
import {
  chmod,
  chown,
  lchown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import * as https from 'node:https';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tls from 'node:tls';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { All, Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  createSpiffeTlsServer,
  createSpiffeTlsSocket,
  FileX509Source,
  JwtBundleSet,
  JwtSvidError,
  matchWhen,
  parseAndValidateJwtSvid,
  peerSpiffeId,
  type SpiffeError,
  type SpiffeErrorCode,
  StaticX509Source,
  verifyX509Svid,
  X509Bundle,
  X509BundleSet,
  type X509Context,
  X509Source,
  type X509Svid,
  X509SvidError,
} from '@spiffe-ts/core';
import { createAuthority, DevCa, DevWorkloadApiServer, issueX509SvidWith, KeyUsage } from '@spiffe-ts/dev-server';
import { createSpiffeHttpsServer, requirePeer, spiffeErrorHandler } from '@spiffe-ts/express';
import { fastifySpiffe, spiffeHttpsOptions } from '@spiffe-ts/fastify';
import { AllowSpiffeIds, spiffeHttpsOptions as nestHttpsOptions, SpiffeModule } from '@spiffe-ts/nestjs';
import express from 'express';
import Fastify from 'fastify';
import { SignJWT } from 'jose';
// The CLI's file writer from source: the cross-package test package does not depend on @spiffe-ts/cli.
import { UnsafeDirectoryError, writeAtomic, writeJwtFile, writeX509Files } from '../../packages/cli/src/files.js';

let caA: DevCa; // example.org
let caB: DevCa; // other.org
let serverSvid: X509Svid;
let goodClient: X509Svid;
const TD_A = 'example.org';
const CLIENT = `spiffe://${TD_A}/client`;
const report: string[] = [];
setFlagsFromString('--expose-gc'); // the memory check below forces collections

before(async () => {
  caA = await DevCa.create({ trustDomain: TD_A });
  caB = await DevCa.create({ trustDomain: 'other.org' });
  serverSvid = await caA.issueX509Svid(`spiffe://${TD_A}/server`);
  goodClient = await caA.issueX509Svid(CLIENT);
});
after(() => {
  console.log(`attacks: ${report.length} attacks tried, ${report.length} rejected, 0 accepted`);
  for (const r of report) console.log(`  rejected: ${r}`);
});

interface Server {
  port: number;
  admitted: string[];
  source: StaticX509Source;
  allow: { value: boolean };
  close(): Promise<void>;
}

/** A SPIFFE mTLS server trusting example.org and other.org; every admitted peer gets "ok <id>". */
async function startServer(tlsOptions: tls.TlsOptions = {}): Promise<Server> {
  const source = new StaticX509Source(serverSvid, [caA.x509Bundle(), caB.x509Bundle()]);
  const allow = { value: true };
  const spiffe = createSpiffeTlsServer({ source, authorize: matchWhen(() => allow.value), tlsOptions });
  const admitted: string[] = [];
  const server = tls.createServer(spiffe.options, (socket) => {
    if (socket.destroyed) return;
    const id = peerSpiffeId(socket)?.toString() ?? 'NONE';
    admitted.push(id);
    socket.end(`ok ${id}\n`);
  });
  const detach = spiffe.attach(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as { port: number }).port,
    admitted,
    source,
    allow,
    close: async () => {
      detach();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

interface Outcome {
  data: string;
  error?: Error;
  reused: boolean;
  session?: Buffer;
}

/** Resolves when the socket closes, with what it received, whether it resumed, and its session. */
function collect(socket: tls.TLSSocket): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => {
    const out: Outcome = { data: '', reused: false };
    socket.on('session', (s: Buffer) => {
      out.session = s;
    });
    socket.on('secureConnect', () => {
      out.reused = socket.isSessionReused();
    });
    socket.on('data', (d: Buffer) => {
      out.data += d.toString();
    });
    socket.on('error', (e) => {
      out.error = e;
    });
    socket.on('close', () => resolve(out));
  });
}

/** A hostile client: presents any chain and key, checks nothing about the server. */
function present(port: number, svid: Pick<X509Svid, 'certificates' | 'privateKey'>, extra: tls.ConnectionOptions = {}) {
  return collect(
    tls.connect({
      host: '127.0.0.1',
      port,
      rejectUnauthorized: false,
      cert: svid.certificates.map((c) => c.toString()).join(''),
      key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }),
      ...extra,
    }),
  );
}

async function assertRejected(name: string, svid: X509Svid, code: SpiffeErrorCode) {
  assert.throws(
    () => verifyX509Svid(svid.certificates, new X509BundleSet([caA.x509Bundle(), caB.x509Bundle()])),
    (e: X509SvidError) => e instanceof X509SvidError && e.code === code,
  );
  const server = await startServer();
  try {
    const out = await present(server.port, svid);
    assert.equal(out.data, '', 'the attacker received application data');
    assert.deepEqual(server.admitted, []);
    // The same server admits a good client: the rejection is about the attack, not the setup.
    const good = await present(server.port, goodClient);
    assert.equal(good.data, `ok ${CLIENT}\n`);
  } finally {
    await server.close();
  }
  report.push(`${name} (${code}, handshake refused)`);
}

describe('X.509-SVID attacks over real TLS', () => {
  test('cross-trust-domain signing: an example.org ID signed by other.org’s CA (both trusted)', async () => {
    const forged = await issueX509SvidWith(caB.currentAuthority, `spiffe://${TD_A}/admin`);
    await assertRejected('cross-trust-domain signing', forged, 'X509SVID_UNTRUSTED');
  });

  test('leaf that is a CA', async () => {
    const leaf = await caA.issueX509Svid(`spiffe://${TD_A}/ca-leaf`, {
      isCa: true,
      keyUsage: KeyUsage.digitalSignature | KeyUsage.keyCertSign,
    });
    await assertRejected('leaf that is a CA', leaf, 'X509SVID_LEAF_IS_CA');
  });

  test('intermediate without keyCertSign', async () => {
    const intermediate = await createAuthority({
      parent: caA.currentAuthority,
      keyUsage: KeyUsage.digitalSignature | KeyUsage.cRLSign,
      uri: `spiffe://${TD_A}`,
    });
    const leaf = await issueX509SvidWith(intermediate, `spiffe://${TD_A}/via-bad-intermediate`, {
      chain: [intermediate.certificate],
    });
    await assertRejected('intermediate without keyCertSign', leaf, 'X509SVID_SIGNING_CERT_KEY_USAGE');
  });

  test('SVID with two URI SANs', async () => {
    const leaf = await caA.issueX509Svid(CLIENT, { uris: [CLIENT, `spiffe://${TD_A}/admin`] });
    await assertRejected('two URI SANs', leaf, 'X509SVID_MULTIPLE_URI_SANS');
  });

  test('expired leaf', async () => {
    const now = Date.now();
    const leaf = await caA.issueX509Svid(CLIENT, {
      notBefore: new Date(now - 7_200_000),
      notAfter: new Date(now - 3_600_000),
    });
    await assertRejected('expired leaf', leaf, 'X509SVID_EXPIRED');
  });

  test('not-yet-valid leaf', async () => {
    const leaf = await caA.issueX509Svid(CLIENT, { notBefore: new Date(Date.now() + 3_600_000), ttlSeconds: 3600 });
    await assertRejected('not-yet-valid leaf', leaf, 'X509SVID_NOT_YET_VALID');
  });

  test('expired intermediate', async () => {
    const now = Date.now();
    const intermediate = await createAuthority({
      parent: caA.currentAuthority,
      uri: `spiffe://${TD_A}`,
      notBefore: new Date(now - 7_200_000),
      notAfter: new Date(now - 3_600_000),
    });
    const leaf = await issueX509SvidWith(intermediate, CLIENT, {
      chain: [intermediate.certificate],
      notBefore: new Date(now - 7_000_000),
      ttlSeconds: 36_000,
    });
    await assertRejected('expired intermediate', leaf, 'X509SVID_EXPIRED');
  });
});

describe('TLS session resumption never bypasses SPIFFE verification', () => {
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    test(`${version}: server side, after the peer’s ID is no longer allowed and after its CA left the bundle`, async () => {
      const server = await startServer({ minVersion: 'TLSv1.2', maxVersion: version });
      try {
        const first = await present(server.port, goodClient, { maxVersion: version });
        assert.equal(first.data, `ok ${CLIENT}\n`);
        assert.equal(server.admitted.length, 1);

        // The ID is no longer allowed: a client offering its previous session is refused.
        server.allow.value = false;
        const denied = await present(server.port, goodClient, { maxVersion: version, session: first.session });
        assert.equal(denied.data, '');
        assert.equal(denied.reused, false, 'the server resumed a session');

        // Allowed again, but the client's CA is removed from the bundle (the server keeps its own SVID chain
        // from a new CA): the old session is useless.
        server.allow.value = true;
        const rotated = await DevCa.create({ trustDomain: TD_A });
        server.source.update(await rotated.issueX509Svid(`spiffe://${TD_A}/server`), [rotated.x509Bundle()]);
        const removed = await present(server.port, goodClient, { maxVersion: version, session: first.session });
        assert.equal(removed.data, '');
        assert.equal(removed.reused, false);
        assert.equal(server.admitted.length, 1, 'no connection was admitted after revocation');
      } finally {
        await server.close();
      }
      report.push(`${version} session resumption after revocation, server side`);
    });

    test(`${version}: client side, a resumable server whose CA left our bundle is refused`, async () => {
      // A server that does offer resumption (tickets and a session cache), unlike ours.
      const serverCerts = serverSvid.certificates.map((c) => c.toString()).join('');
      const ticketServer = tls.createServer(
        {
          cert: serverCerts,
          key: serverSvid.privateKey.export({ format: 'pem', type: 'pkcs8' }),
          maxVersion: version,
          sessionTimeout: 300,
        },
        (s) => s.end('hello\n'),
      );
      const sessions = new Map<string, Buffer>();
      ticketServer.on('newSession', (id: Buffer, data: Buffer, cb: () => void) => {
        sessions.set(id.toString('hex'), data);
        cb();
      });
      ticketServer.on('resumeSession', (id: Buffer, cb: (e: Error | null, d: Buffer | null) => void) => {
        cb(null, sessions.get(id.toString('hex')) ?? null);
      });
      ticketServer.listen(0, '127.0.0.1');
      await once(ticketServer, 'listening');
      const port = (ticketServer.address() as { port: number }).port;
      const source = new StaticX509Source(goodClient, [caA.x509Bundle()]);
      const connect = (session?: Buffer) =>
        collect(
          createSpiffeTlsSocket({
            source,
            authorize: `spiffe://${TD_A}/server`,
            host: '127.0.0.1',
            port,
            tlsOptions: { minVersion: 'TLSv1.2', maxVersion: version, session },
          }),
        );
      try {
        const first = await connect();
        assert.equal(first.data, 'hello\n', String(first.error));
        assert.ok(first.session, 'the server issued a session');
        // Our bundle no longer holds the server's CA: even a resumed session must not be trusted.
        const other = await DevCa.create({ trustDomain: TD_A });
        source.update(goodClient, [other.x509Bundle()]);
        const second = await connect(first.session);
        assert.ok(second.error, 'connection to an untrusted server succeeded');
        assert.equal(second.data, '');
      } finally {
        await new Promise<void>((r) => ticketServer.close(() => r()));
      }
      report.push(`${version} session resumption after CA removal, client side`);
    });
  }
});

describe('TLS renegotiation never swaps the verified peer certificate', () => {
  // A real TLS 1.2 client (pyOpenSSL: Node's TLS client cannot change its certificate mid-connection) is
  // verified as CLIENT, then renegotiates on the same connection presenting another certificate.
  // scripts/test.sh prepares the venv (test/security/setup-python.sh); a plain python3 with pyOpenSSL works too.
  const here = dirname(new URL(import.meta.url).pathname);
  const script = join(here, 'renegotiating-client.py');
  const venvPython = join(here, '.venv', 'bin', 'python3');
  const python = existsSync(venvPython) ? venvPython : 'python3';
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spiffe-reneg-'));
    await writePem('allowed', goodClient);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  async function writePem(name: string, svid: X509Svid): Promise<void> {
    const pem = svid.toPem();
    await writeFile(join(dir, `${name}.crt`), pem.certificates);
    await writeFile(join(dir, `${name}.key`), pem.privateKey);
  }

  interface Renegotiation {
    before: string | null;
    renegotiated: boolean;
    after: string | null;
    error: string | null;
  }

  function renegotiate(port: number, swapTo: string, request?: string): Promise<Renegotiation> {
    const args = [script, String(port), ...['allowed', swapTo].flatMap((n) => [`${dir}/${n}.crt`, `${dir}/${n}.key`])];
    if (request) args.push(request);
    return new Promise((resolve, reject) => {
      execFile(python, args, { timeout: 15_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stderr}(needs pyOpenSSL: bash test/security/setup-python.sh)`));
        else resolve(JSON.parse(stdout) as Renegotiation);
      });
    });
  }

  /** A SPIFFE TLS server (TLS 1.2 allowed) admitting only CLIENT; answers each line with what it sees. */
  async function echoServer(tlsOptions: tls.TlsOptions = { minVersion: 'TLSv1.2' }) {
    const source = new StaticX509Source(serverSvid, [caA.x509Bundle(), caB.x509Bundle()]);
    const spiffe = createSpiffeTlsServer({ source, authorize: CLIENT, tlsOptions });
    const server = tls.createServer(spiffe.options, (socket) => {
      socket.on('error', () => undefined);
      socket.on('data', () => {
        const leaf = socket.getPeerX509Certificate()?.subjectAltName ?? 'none';
        socket.write(`${peerSpiffeId(socket) ?? 'NONE'} ${leaf}\n`);
      });
    });
    const detach = spiffe.attach(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return {
      port: (server.address() as { port: number }).port,
      close: async () => {
        detach();
        await new Promise<void>((r) => server.close(() => r()));
      },
    };
  }

  const swaps: Array<[string, () => Promise<X509Svid>]> = [
    ['a valid but disallowed ID', () => caA.issueX509Svid(`spiffe://${TD_A}/admin`)],
    ['an example.org ID signed by other.org’s CA', () => issueX509SvidWith(caB.currentAuthority, CLIENT)],
    ['two URI SANs', () => caA.issueX509Svid(CLIENT, { uris: [CLIENT, `spiffe://${TD_A}/admin`] })],
    [
      'a leaf marked as a CA',
      () => caA.issueX509Svid(CLIENT, { isCa: true, keyUsage: KeyUsage.digitalSignature | KeyUsage.keyCertSign }),
    ],
  ];
  for (const [name, make] of swaps) {
    test(`server side: a verified client renegotiates to ${name}`, async () => {
      const file = name.replace(/\W+/g, '-');
      await writePem(file, await make());
      const server = await echoServer();
      try {
        const out = await renegotiate(server.port, file);
        assert.equal(out.before, `${CLIENT} URI:${CLIENT}\n`, `the allowed client was not served first: ${out.error}`);
        assert.equal(out.renegotiated, false, 'the renegotiation completed');
        assert.equal(out.after, null, `the connection went on after the renegotiation: ${out.after}`);
        assert.match(String(out.error), /renegotiation|EOF|reset|alert/i);
      } finally {
        await server.close();
      }
      report.push(`TLS 1.2 renegotiation to ${name}, server side`);
    });
  }

  test('server side: the default server speaks TLS 1.3 only, so a TLS 1.2 client cannot even connect', async () => {
    const server = await echoServer({});
    try {
      const out = await renegotiate(server.port, 'allowed');
      assert.equal(out.before, null);
      assert.match(String(out.error), /version|alert|EOF/i);
    } finally {
      await server.close();
    }
    report.push('TLS 1.2 client against the default (TLS 1.3) server');
  });

  test('Fastify HTTPS server: the same renegotiation is refused', async () => {
    await writePem('admin', await caA.issueX509Svid(`spiffe://${TD_A}/admin`));
    const source = new StaticX509Source(serverSvid, [caA.x509Bundle(), caB.x509Bundle()]);
    const spiffe = spiffeHttpsOptions(source, { tlsOptions: { minVersion: 'TLSv1.2' } });
    const app = Fastify({ https: spiffe.https });
    await app.register(fastifySpiffe, { tls: spiffe, allow: CLIENT });
    app.get('/', async (req) => `${req.spiffeId}`);
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const port = (app.server.address() as { port: number }).port;
      const out = await renegotiate(port, 'admin', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.match(String(out.before), new RegExp(`^HTTP/1.1 200[\\s\\S]*${CLIENT}$`));
      assert.equal(out.renegotiated, false);
      assert.equal(out.after, null);
    } finally {
      await app.close();
    }
    report.push('TLS 1.2 renegotiation on the Fastify HTTPS server');
  });

  test('client side: a hostile server’s renegotiation to another certificate never reaches the client', async () => {
    // A hostile TLS 1.2 server: verified as the server we allow, then renegotiates presenting a certificate
    // for another ID (which our client would not have accepted at the first handshake).
    const rogue = await caB.issueX509Svid('spiffe://other.org/rogue');
    const rogueContext = tls.createSecureContext({ cert: rogue.toPem().certificates, key: rogue.toPem().privateKey });
    const serverPem = serverSvid.toPem();
    const renegotiated: Array<Error | null> = [];
    const hostile = tls.createServer(
      { cert: serverPem.certificates, key: serverPem.privateKey, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' },
      (socket) => {
        socket.on('error', () => undefined);
        socket.write('first\n');
        socket.setKeyCert(rogueContext);
        // The renegotiation either fails or never completes; after it, or 2 s, the server speaks and hangs up.
        const finish = (err: Error | null) => {
          if (renegotiated.length > 0) return;
          renegotiated.push(err);
          if (!socket.destroyed) socket.end('after\n');
        };
        socket.renegotiate({}, (err) => finish(err ?? null));
        setTimeout(() => finish(new Error('renegotiation did not complete')), 2000).unref();
      },
    );
    hostile.listen(0, '127.0.0.1');
    await once(hostile, 'listening');
    try {
      const socket = createSpiffeTlsSocket({
        source: new StaticX509Source(goodClient, [caA.x509Bundle(), caB.x509Bundle()]),
        authorize: `spiffe://${TD_A}/server`,
        host: '127.0.0.1',
        port: (hostile.address() as { port: number }).port,
        tlsOptions: { minVersion: 'TLSv1.2' },
      });
      // What the client sees with every chunk it reads: the verified ID and the certificate in use.
      const seen: string[] = [];
      socket.on('data', () => seen.push(`${peerSpiffeId(socket)} ${socket.getPeerX509Certificate()?.subjectAltName}`));
      const out = await collect(socket);
      assert.ok(out.data.startsWith('first\n'), String(out.error));
      assert.notEqual(renegotiated[0], null, 'the renegotiation completed');
      const server = `spiffe://${TD_A}/server`;
      assert.ok(seen.length > 0 && seen.every((s) => s === `${server} URI:${server}`), seen.join(', '));
    } finally {
      await new Promise<void>((r) => hostile.close(() => r()));
    }
    report.push('TLS 1.2 renegotiation by a hostile server, client side');
  });
});

describe('Adapters fail closed', () => {
  const INTRUDER = `spiffe://${TD_A}/intruder`;
  const serverSource = () => new StaticX509Source(serverSvid, [caA.x509Bundle()]);
  let intruder: X509Svid;
  before(async () => {
    intruder = await caA.issueX509Svid(INTRUDER);
  });

  /** Sends raw bytes over a SPIFFE mTLS connection as `svid`; resolves with all the server wrote. */
  async function rawExchange(port: number, svid: X509Svid, bytes: string): Promise<string> {
    const socket = createSpiffeTlsSocket({
      source: new StaticX509Source(svid, [caA.x509Bundle()]),
      authorize: `spiffe://${TD_A}/server`,
      host: '127.0.0.1',
      port,
    });
    await once(socket, 'secureConnect');
    socket.write(bytes);
    let data = '';
    socket.on('data', (d: Buffer) => {
      data += d.toString('latin1');
    });
    // Whatever the server answers within a second (or until it hangs up) is the outcome.
    await Promise.race([once(socket, 'close'), new Promise((r) => setTimeout(r, 1000))]);
    socket.destroy();
    return data;
  }

  // A denied request whose body is itself a request, followed by two more on the same connection.
  const smuggled = 'GET /secret HTTP/1.1\r\nHost: x\r\n\r\n';
  const pipeline =
    `POST /secret HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}` +
    'GET /secret HTTP/1.1\r\nHost: x\r\n\r\nHEAD /secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n';

  function assertAllDenied(raw: string, served: number, adapter: string): void {
    const statuses = [...raw.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    assert.ok(statuses.length > 0, `${adapter} answered nothing`);
    assert.ok(
      statuses.every((code) => code === '403'),
      `${adapter} answered ${statuses.join(',')}`,
    );
    assert.equal(served, 0, `${adapter} ran the protected handler`);
  }

  test('Fastify: a route added before the plugin keeps its own allowlist (GET and HEAD)', async () => {
    for (const pluginAllow of [undefined, [CLIENT, INTRUDER]]) {
      const spiffe = spiffeHttpsOptions(serverSource());
      const app = Fastify({ https: spiffe.https });
      let served = 0;
      app.get('/early', { config: { spiffe: { allow: [CLIENT] } } }, async () => {
        served++;
        return 'early';
      });
      await app.register(fastifySpiffe, { tls: spiffe, allow: pluginAllow });
      await app.listen({ port: 0, host: '127.0.0.1' });
      try {
        const port = (app.server.address() as { port: number }).port;
        for (const method of ['GET', 'HEAD']) {
          const denied = await rawExchange(
            port,
            intruder,
            `${method} /early HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
          );
          assert.match(denied, /^HTTP\/1\.1 403/, `${method} /early with plugin allow ${pluginAllow}`);
        }
        assert.equal(served, 0);
        const allowed = await rawExchange(
          port,
          goodClient,
          'GET /early HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
        );
        assert.match(allowed, /^HTTP\/1\.1 200[\s\S]*early$/);
      } finally {
        await app.close();
      }
    }
    report.push('Fastify route registered before the plugin (GET and HEAD)');
  });

  test('Fastify: pipelined and smuggled requests after a denial are all denied', async () => {
    const spiffe = spiffeHttpsOptions(serverSource());
    const app = Fastify({ https: spiffe.https });
    await app.register(fastifySpiffe, { tls: spiffe, allow: [CLIENT] });
    let served = 0;
    app.all('/secret', async () => {
      served++;
      return 'secret';
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const port = (app.server.address() as { port: number }).port;
      assertAllDenied(await rawExchange(port, intruder, pipeline), served, 'Fastify');
    } finally {
      await app.close();
    }
    report.push('HTTP pipelining after a denial, Fastify');
  });

  test('Express: pipelined and smuggled requests after a denial are all denied', async () => {
    const app = express();
    let served = 0;
    app.use(requirePeer([CLIENT]));
    app.all('/secret', (_req, res) => {
      served++;
      res.send('secret');
    });
    app.use(spiffeErrorHandler());
    const server = createSpiffeHttpsServer(app, serverSource());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const port = (server.address() as { port: number }).port;
      assertAllDenied(await rawExchange(port, intruder, pipeline), served, 'Express');
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
    report.push('HTTP pipelining after a denial, Express');
  });

  test('NestJS: pipelined and smuggled requests after a denial are all denied', async () => {
    let served = 0;
    // Decorators applied as calls: the test package compiles without experimentalDecorators.
    class SecretController {
      secret() {
        served++;
        return 'secret';
      }
    }
    const method = Object.getOwnPropertyDescriptor(SecretController.prototype, 'secret') as PropertyDescriptor;
    All('secret')(SecretController.prototype, 'secret', method);
    AllowSpiffeIds(CLIENT)(SecretController.prototype, 'secret', method);
    Controller()(SecretController);
    const spiffe = nestHttpsOptions(serverSource());
    class AppModule {}
    Module({ imports: [SpiffeModule.forRoot({ tls: spiffe })], controllers: [SecretController] })(AppModule);
    const app = await NestFactory.create(AppModule, { httpsOptions: spiffe.https, logger: false });
    await app.listen(0, '127.0.0.1');
    try {
      const port = ((app.getHttpServer() as tls.Server).address() as { port: number }).port;
      assertAllDenied(await rawExchange(port, intruder, pipeline), served, 'NestJS');
    } finally {
      await app.close();
    }
    report.push('HTTP pipelining after a denial, NestJS');
  });
});

describe('Clients node:tls cannot verify never reach a handler (attached servers refuse them themselves)', () => {
  // Attached servers turn node's own refusal off so that refusals can be logged; these clients send their
  // request at once, without waiting for the server, and must never reach the route.
  const serverSource = () => new StaticX509Source(serverSvid, [caA.x509Bundle()]);
  let strangerSvid: X509Svid; // a valid-looking example.org SVID from a CA nobody trusts
  let selfSigned: { cert: string; key: string }; // a self-signed certificate with a SPIFFE ID
  before(async () => {
    strangerSvid = await (await DevCa.create({ trustDomain: TD_A })).issueX509Svid(CLIENT);
    const root = await createAuthority({ uri: CLIENT });
    const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', root.keyPair.keys.privateKey);
    selfSigned = {
      cert: root.certificate.toString(),
      key: `-----BEGIN PRIVATE KEY-----\n${Buffer.from(pkcs8).toString('base64')}\n-----END PRIVATE KEY-----\n`,
    };
  });

  const clients = (): Array<[string, tls.ConnectionOptions]> => [
    ['no certificate', {}],
    [
      'unknown CA',
      {
        cert: strangerSvid.certificates.map((c) => c.toString()).join(''),
        key: strangerSvid.privateKey.export({ format: 'pem', type: 'pkcs8' }),
      },
    ],
    ['self-signed', selfSigned],
  ];

  /** Connects as the given client and writes the request immediately; resolves with what came back. */
  async function early(port: number, client: tls.ConnectionOptions): Promise<string> {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...client });
    socket.on('error', () => {});
    socket.write('GET /secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    let data = '';
    socket.on('data', (d: Buffer) => {
      data += d.toString('latin1');
    });
    await Promise.race([once(socket, 'close'), new Promise((r) => setTimeout(r, 2000))]);
    socket.destroy();
    return data;
  }

  async function check(adapter: string, port: number, served: { count: number }): Promise<void> {
    served.count = 0;
    for (const [name, client] of clients()) {
      const answer = await early(port, client);
      assert.equal(answer, '', `${adapter}, ${name}: the server answered ${JSON.stringify(answer.slice(0, 40))}`);
      report.push(`${name} client sending its request at once, ${adapter}: connection refused`);
    }
    assert.equal(served.count, 0, `${adapter} ran the handler`);
    // Control: the same server serves a client it can verify.
    const good = await early(port, {
      cert: goodClient.certificates.map((c) => c.toString()).join(''),
      key: goodClient.privateKey.export({ format: 'pem', type: 'pkcs8' }),
    });
    assert.match(good, /^HTTP\/1\.1 200[\s\S]*secret$/, `${adapter}: the verified client was not served`);
    assert.equal(served.count, 1);
  }

  test('Fastify, Express, NestJS and a plain attached https server', async () => {
    const quiet = { warn() {}, info() {}, debug() {}, error() {} };
    const served = { count: 0 };
    const handler = () => {
      served.count++;
      return 'secret';
    };
    // Fastify
    const f = spiffeHttpsOptions(serverSource());
    const fastify = Fastify({ https: f.https });
    await fastify.register(fastifySpiffe, { tls: f, allow: [CLIENT], logger: quiet });
    fastify.get('/secret', async () => handler());
    await fastify.listen({ port: 0, host: '127.0.0.1' });
    try {
      await check('Fastify', (fastify.server.address() as { port: number }).port, served);
    } finally {
      await fastify.close();
    }
    // Express
    const app = express();
    app.use(requirePeer([CLIENT]));
    app.get('/secret', (_req, res) => {
      res.send(handler());
    });
    const server = createSpiffeHttpsServer(app, serverSource(), { logger: quiet });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      await check('Express', (server.address() as { port: number }).port, served);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
    // NestJS
    class SecretController {
      secret() {
        return handler();
      }
    }
    const method = Object.getOwnPropertyDescriptor(SecretController.prototype, 'secret') as PropertyDescriptor;
    All('secret')(SecretController.prototype, 'secret', method);
    AllowSpiffeIds(CLIENT)(SecretController.prototype, 'secret', method);
    Controller()(SecretController);
    const n = nestHttpsOptions(serverSource());
    class AppModule {}
    Module({ imports: [SpiffeModule.forRoot({ tls: n, logger: quiet })], controllers: [SecretController] })(AppModule);
    const nest = await NestFactory.create(AppModule, { httpsOptions: n.https, logger: false });
    await nest.listen(0, '127.0.0.1');
    try {
      await check('NestJS', ((nest.getHttpServer() as tls.Server).address() as { port: number }).port, served);
    } finally {
      await nest.close();
    }
    // A plain https server attached by hand
    const spiffe = createSpiffeTlsServer({ source: serverSource(), authorize: matchWhen(() => true) });
    const plain = https.createServer(spiffe.options, (_req, res) => res.end(handler()));
    const detach = spiffe.attach(plain, { logger: quiet });
    plain.listen(0, '127.0.0.1');
    await once(plain, 'listening');
    try {
      await check('node:https', (plain.address() as { port: number }).port, served);
    } finally {
      detach();
      plain.closeAllConnections();
      await new Promise<void>((r) => plain.close(() => r()));
    }
  });
});

describe('Sources never adopt X.509 material that does not verify', () => {
  const ORDERS = `spiffe://${TD_A}/orders`;

  async function until(what: string, check: () => boolean): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** A SPIFFE TLS server on the source: the ID a verifying client sees for it, and what the server answered. */
  async function connectAs(source: X509Source, client: X509Svid, bundles: X509BundleSet) {
    const spiffe = createSpiffeTlsServer({ source, authorize: matchWhen(() => true) });
    const server = tls.createServer(spiffe.options, (s) => s.end(`served ${peerSpiffeId(s)}\n`));
    const detach = spiffe.attach(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const socket = createSpiffeTlsSocket({
        source: new StaticX509Source(client, bundles),
        authorize: matchWhen(() => true),
        host: '127.0.0.1',
        port: (server.address() as { port: number }).port,
      });
      let serverId: string | undefined;
      socket.once('secureConnect', () => {
        serverId = peerSpiffeId(socket)?.toString();
      });
      const out = await collect(socket);
      return { serverId, answer: out.data };
    } finally {
      detach();
      await new Promise<void>((r) => server.close(() => r()));
    }
  }

  for (const allowTrustDomainChange of [false, true]) {
    test(`an update moving the SVID to another trust domain (allowTrustDomainChange: ${allowTrustDomainChange})`, async () => {
      const dev = await DevWorkloadApiServer.start({ workloads: { orders: ORDERS } });
      const evil = await DevCa.create({ trustDomain: 'evil.org' });
      const errors: SpiffeError[] = [];
      const source = await X509Source.create({
        address: dev.address('orders'),
        timeoutMs: 5000,
        allowTrustDomainChange,
        onError: (e) => errors.push(e),
      });
      try {
        let updates = 0;
        source.onUpdate(() => updates++);
        dev.setFault(
          { kind: 'x509', svids: [await evil.issueX509Svid('spiffe://evil.org/orders')], bundle: evil.x509Bundle() },
          'orders',
        );
        await dev.rotateSvids(['orders']);
        if (allowTrustDomainChange) {
          await until('the update', () => updates > 0);
          assert.equal(String(source.getX509Svid().id), 'spiffe://evil.org/orders');
          return;
        }
        await until('the refusal', () => errors.length > 0);
        assert.equal(errors[0]?.code, 'SOURCE_TRUST_DOMAIN_CHANGED');
        assert.equal(updates, 0);
        assert.equal(String(source.getX509Svid().id), ORDERS);
        const client = await dev.ca.issueX509Svid(`spiffe://${TD_A}/client`);
        const seen = await connectAs(source, client, new X509BundleSet([dev.ca.x509Bundle()]));
        assert.deepEqual(seen, { serverId: ORDERS, answer: `served spiffe://${TD_A}/client\n` });
      } finally {
        await source.close();
        await dev.stop();
      }
      if (!allowTrustDomainChange) report.push('Workload API update moving the SVID to another trust domain');
    });
  }

  test('an update whose bundle does not sign its own SVID (a rogue CA for the same trust domain)', async () => {
    const dev = await DevWorkloadApiServer.start({ workloads: { orders: ORDERS } });
    const rogue = await DevCa.create({ trustDomain: TD_A });
    const errors: SpiffeError[] = [];
    const source = await X509Source.create({
      address: dev.address('orders'),
      timeoutMs: 5000,
      onError: (e) => errors.push(e),
    });
    try {
      dev.setFault({ kind: 'x509', svids: [await dev.ca.issueX509Svid(ORDERS)], bundle: rogue.x509Bundle() }, 'orders');
      await dev.rotateSvids(['orders']);
      await until('the refusal', () => errors.length > 0);
      assert.equal(errors[0]?.code, 'SOURCE_UPDATE_UNVERIFIED');
      assert.equal(errors[0]?.cause instanceof X509SvidError, true);
      // The server still admits clients of the real CA and refuses the rogue CA's.
      const trusted = new X509BundleSet([dev.ca.x509Bundle()]); // what both clients trust the server with
      const real = await dev.ca.issueX509Svid(`spiffe://${TD_A}/client`);
      assert.deepEqual(await connectAs(source, real, trusted), {
        serverId: ORDERS,
        answer: `served spiffe://${TD_A}/client\n`,
      });
      const forged = await rogue.issueX509Svid(`spiffe://${TD_A}/client`);
      assert.equal((await connectAs(source, forged, trusted)).answer, '', 'a client of the rogue CA was served');
    } finally {
      await source.close();
      await dev.stop();
    }
    report.push('Workload API update whose bundle does not sign its own SVID');
  });

  test('10,000 federated bundles in one update (under the 4 MiB message limit): adopted, memory bounded', async () => {
    const dev = await DevWorkloadApiServer.start({ workloads: { orders: ORDERS } });
    // One small authority reused under 10,000 trust domain names keeps the message under 4 MiB.
    const authority = await createAuthority({ subject: 'CN=f' });
    const federatedBundles = Array.from(
      { length: 10_000 },
      (_, i) => new X509Bundle(`td${i}.example`, [authority.certificate]),
    );
    dev.setFault({ kind: 'x509', federatedBundles }, 'orders');
    const source = await X509Source.create({ address: dev.address('orders'), timeoutMs: 30_000 });
    const gc = runInNewContext('gc') as () => void;
    try {
      assert.equal(source.bundles.bundles().length, 10_001);
      let updates = 0;
      source.onUpdate(() => updates++);
      const heap: number[] = [];
      for (let round = 1; round <= 3; round++) {
        await dev.rotateSvids(['orders']);
        await until(`update ${round}`, () => updates === round);
        gc();
        heap.push(process.memoryUsage().heapUsed);
      }
      assert.equal(source.bundles.bundles().length, 10_001);
      // Each update replaces the previous one: after the first, no growth beyond noise.
      const growth = Math.max(...heap.slice(1)) - (heap[0] as number);
      assert.ok(growth < 16 * 1024 * 1024, `heap grew ${(growth / 1048576).toFixed(1)} MB over 2 updates`);
    } finally {
      await source.close();
      await dev.stop();
    }
    report.push('10,000 federated bundles per update (adopted; heap bounded)');
  });

  test('FileX509Source: reloaded files with another trust domain, or a bundle that does not sign the SVID', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spiffe-files-'));
    const files = {
      certFile: join(dir, 'svid.pem'),
      keyFile: join(dir, 'key.pem'),
      bundleFile: join(dir, 'bundle.pem'),
    };
    const write = async (svid: X509Svid, bundlePem: string) => {
      const pem = svid.toPem();
      await writeFile(files.keyFile, pem.privateKey);
      await writeFile(files.certFile, pem.certificates);
      await writeFile(files.bundleFile, bundlePem);
    };
    await write(goodClient, caA.x509Bundle().toPem());
    const errors: SpiffeError[] = [];
    const source = new FileX509Source({ ...files, pollIntervalMs: 50, onError: (e) => errors.push(e) });
    try {
      const evil = await DevCa.create({ trustDomain: 'evil.org' });
      await write(await evil.issueX509Svid('spiffe://evil.org/client'), evil.x509Bundle().toPem());
      // The poll may also catch the files half written (a key mismatch): wait for the refusal itself.
      await until('the refusal', () => errors.some((e) => e.code === 'SOURCE_TRUST_DOMAIN_CHANGED'));
      assert.equal(String(source.getX509Svid().id), CLIENT);
      const rogue = await DevCa.create({ trustDomain: TD_A });
      await write(goodClient, rogue.x509Bundle().toPem());
      await until('the second refusal', () => errors.some((e) => e.code === 'SOURCE_UPDATE_UNVERIFIED'));
      assert.equal(String(source.getX509Svid().id), CLIENT);
      assert.ok(
        source.bundles
          .getX509BundleForTrustDomain(caA.trustDomain)
          .authorities[0]?.raw.equals(caA.x509Bundle().authorities[0]?.raw as Buffer),
      );
    } finally {
      source.close();
      await rm(dir, { recursive: true, force: true });
    }
    report.push('FileX509Source reload with another trust domain, and with a bundle that does not sign the SVID');
  });
});

describe('JWT-SVID attacks', () => {
  const AUD = 'api';
  let bundles: JwtBundleSet;
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const claims = (extra: Record<string, unknown> = {}) => ({
    sub: CLIENT,
    aud: [AUD],
    exp: Math.floor(Date.now() / 1000) + 300,
    iat: Math.floor(Date.now() / 1000),
    ...extra,
  });
  before(() => {
    bundles = new JwtBundleSet([caA.jwtBundle(), caB.jwtBundle()]);
  });
  const expectCode = async (name: string, token: string, codes: SpiffeErrorCode[]) => {
    await assert.rejects(parseAndValidateJwtSvid(token, bundles, AUD), (e: JwtSvidError) => {
      assert.ok(e instanceof JwtSvidError, `not a JwtSvidError: ${e}`);
      assert.ok(codes.includes(e.code), `${name}: got ${e.code}`);
      return true;
    });
    report.push(`JWT ${name}`);
  };
  const sign = (payload: Record<string, unknown>, key: KeyObject, header: Record<string, unknown>) =>
    new SignJWT(payload).setProtectedHeader({ alg: 'ES256', typ: 'JWT', ...header }).sign(key);

  test('control: a well-formed token validates', async () => {
    const k = caA.jwtSigningKey;
    const svid = await parseAndValidateJwtSvid(await sign(claims(), k.privateKey, { kid: k.kid }), bundles, AUD);
    assert.equal(svid.id.toString(), CLIENT);
  });

  test('alg none', async () => {
    const k = caA.jwtSigningKey;
    await expectCode('alg none', `${b64({ alg: 'none', typ: 'JWT', kid: k.kid })}.${b64(claims())}.`, [
      'JWTSVID_UNSUPPORTED_ALG',
    ]);
  });

  test('HS256 signed with the public key as the secret (PEM, DER and JWK forms)', async () => {
    const k = caA.jwtSigningKey;
    const pub = k.publicKey;
    const secrets = [
      Buffer.from(pub.export({ format: 'pem', type: 'spki' }).toString()),
      pub.export({ format: 'der', type: 'spki' }),
      Buffer.from(JSON.stringify(pub.export({ format: 'jwk' }))),
    ];
    for (const secret of secrets) {
      const token = await new SignJWT(claims())
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: k.kid })
        .sign(secret);
      await expectCode('HS256 with the public key as secret', token, ['JWTSVID_UNSUPPORTED_ALG']);
    }
  });

  test('kid of another trust domain (other.org’s key signing an example.org subject)', async () => {
    const k = caB.jwtSigningKey;
    await expectCode('kid of another trust domain', await sign(claims(), k.privateKey, { kid: k.kid }), [
      'JWTSVID_UNKNOWN_KID',
    ]);
  });

  test('audience missing', async () => {
    const k = caA.jwtSigningKey;
    await expectCode('audience missing', await sign(claims({ aud: undefined }), k.privateKey, { kid: k.kid }), [
      'JWTSVID_AUDIENCE_MISMATCH',
    ]);
  });

  test('audience wrong', async () => {
    const k = caA.jwtSigningKey;
    await expectCode('audience wrong', await sign(claims({ aud: ['other-api'] }), k.privateKey, { kid: k.kid }), [
      'JWTSVID_AUDIENCE_MISMATCH',
    ]);
  });

  test('token without exp', async () => {
    const k = caA.jwtSigningKey;
    await expectCode('token without exp', await sign(claims({ exp: undefined }), k.privateKey, { kid: k.kid }), [
      'JWTSVID_MISSING_EXP',
    ]);
  });

  test('expired token (beyond the clock tolerance)', async () => {
    const k = caA.jwtSigningKey;
    const exp = Math.floor(Date.now() / 1000) - 120;
    await expectCode('expired', await sign(claims({ exp }), k.privateKey, { kid: k.kid }), ['JWTSVID_EXPIRED']);
  });

  test('signature from an unknown key with a trusted kid', async () => {
    const k = caA.jwtSigningKey;
    const stranger = await DevCa.create({ trustDomain: TD_A });
    await expectCode(
      'foreign key, trusted kid',
      await sign(claims(), stranger.jwtSigningKey.privateKey, { kid: k.kid }),
      ['JWTSVID_BAD_SIGNATURE'],
    );
  });
});

describe('CLI file writing attacks', () => {
  // The attacker (uid 65534 when we run as root) owns a file outside the output directory and has planted
  // symlinks to it at every name the old writer would have used: <file>.tmp-<pid>-<ms> and the targets.
  const ATTACKER_UID = 65534;
  const asRoot = process.geteuid?.() === 0;
  const X509_NAMES = ['svid_key.pem', 'svid.pem', 'svid_bundle.pem', 'federated_bundle.pem'];
  // Every name, the federated bundle file included (the context holds other.org's bundle).
  const NAMES = {
    key: 'svid_key.pem',
    svid: 'svid.pem',
    bundle: 'svid_bundle.pem',
    federatedBundle: 'federated_bundle.pem',
  };
  let base: string;
  let ctx: X509Context;

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'spiffe-file-attacks-'));
    ctx = { svids: [goodClient], bundles: new X509BundleSet([caA.x509Bundle(), caB.x509Bundle()]) };
  });
  after(async () => {
    await rm(base, { recursive: true, force: true });
  });

  /**
   * A 0700 output directory with symlinks to an attacker-owned file at the target names and, for the secret
   * files, at the temp names the old writer would use during the next `windowMs`.
   */
  async function plantedDirectory(name: string, targets: string[], secrets: string[], windowMs: number) {
    const out = join(base, name, 'out');
    const loot = join(base, name, 'attacker', 'loot');
    await mkdir(out, { recursive: true, mode: 0o700 });
    await mkdir(dirname(loot), { mode: 0o777 });
    await chmod(dirname(loot), 0o777);
    await writeFile(loot, 'attacker', { mode: 0o666 });
    await chmod(loot, 0o666);
    const planted = targets.map((f) => join(out, f));
    const start = Date.now();
    for (const f of secrets)
      for (let t = start; t < start + windowMs; t++) planted.push(join(out, `${f}.tmp-${process.pid}-${t}`));
    for (let i = 0; i < planted.length; i += 500)
      await Promise.all(planted.slice(i, i + 500).map((p) => symlink(loot, p)));
    if (asRoot) {
      await chown(loot, ATTACKER_UID, ATTACKER_UID);
      await chown(dirname(loot), ATTACKER_UID, ATTACKER_UID);
      for (let i = 0; i < planted.length; i += 500)
        await Promise.all(planted.slice(i, i + 500).map((p) => lchown(p, ATTACKER_UID, ATTACKER_UID)));
    }
    return { out, loot, planted: new Set(planted.map((p) => basename(p))) };
  }

  /** No regular file owned by the attacker (or reachable through the attacker's file) holds a secret. */
  async function assertNothingLeaked(root: string, loot: string, secrets: string[]): Promise<void> {
    assert.equal(await readFile(loot, 'utf8'), 'attacker', 'the attacker file is unchanged');
    assert.equal((await lstat(loot)).mode & 0o7777, 0o666, 'and not chmod-ed');
    for (const entry of await readdir(root, { recursive: true })) {
      const p = join(root, entry);
      const st = await lstat(p);
      if (!st.isFile()) continue;
      if (st.uid === ATTACKER_UID) {
        const content = await readFile(p, 'utf8');
        for (const s of secrets) assert.ok(!content.includes(s), `${p} (uid ${ATTACKER_UID}) holds a secret`);
      }
    }
  }

  async function assertOwnSecretFile(p: string, content: string): Promise<void> {
    const st = await lstat(p);
    assert.ok(st.isFile() && !st.isSymbolicLink(), `${p} is a regular file, not a symlink`);
    assert.equal(st.mode & 0o7777, 0o600);
    assert.equal(st.uid, process.geteuid?.() ?? st.uid, 'owned by us, not by the attacker');
    assert.equal(await readFile(p, 'utf8'), content);
  }

  test('symlinks planted at the guessable temp names and at the targets: key never written through them', async () => {
    const targets = [...X509_NAMES, 'billing.jwt'];
    const { out, loot, planted } = await plantedDirectory('planted', targets, ['svid_key.pem', 'billing.jwt'], 3000);
    const token = await caA.issueJwtSvid(CLIENT, 'billing');
    const key = ctx.svids[0]?.toPem().privateKey as string;
    // Several rotations, as the helper does: every one of them went through a planted name before.
    for (let i = 0; i < 3; i++) {
      await writeX509Files(out, ctx, NAMES);
      await writeJwtFile(join(out, 'billing.jwt'), token);
    }
    await assertNothingLeaked(join(base, 'planted'), loot, [key, token.token]);
    await assertOwnSecretFile(join(out, 'svid_key.pem'), key);
    await assertOwnSecretFile(join(out, 'billing.jwt'), token.token);
    for (const f of X509_NAMES.slice(1)) assert.ok((await lstat(join(out, f))).isFile(), `${f} is a regular file`);
    report.push(
      `CLI files: ${planted.size} symlinks at pid/time temp names and target names${asRoot ? ` (uid ${ATTACKER_UID})` : ''}, key and JWT written to new 0600 files`,
    );
  });

  test('the temp name cannot be predicted: two writes, two random names, none of them planted', async () => {
    const { out, loot, planted } = await plantedDirectory('random', ['svid_key.pem'], ['svid_key.pem'], 2000);
    const created: string[] = [];
    const watcher = watch(out, (event, name) => {
      if (event === 'rename' && name && name.toString() !== 'svid_key.pem') created.push(name.toString());
    });
    try {
      await writeAtomic(join(out, 'svid_key.pem'), 'secret one', 0o600);
      await writeAtomic(join(out, 'svid_key.pem'), 'secret two', 0o600);
      await new Promise((r) => setTimeout(r, 200)); // inotify events arrive asynchronously
    } finally {
      watcher.close();
    }
    const names = [...new Set(created)];
    assert.equal(names.length, 2, `two different temp names: ${names.join(', ')}`);
    for (const n of names) {
      assert.ok(!planted.has(n), `temp name ${n} was guessed and planted by the attacker`);
      assert.match(n, /^\.svid_key\.pem\.[0-9a-f]{32}\.tmp$/);
    }
    await assertOwnSecretFile(join(out, 'svid_key.pem'), 'secret two');
    await assertNothingLeaked(join(base, 'random'), loot, ['secret one', 'secret two']);
    report.push('CLI files: temp names guessed from pid and time (names are 128 random bits)');
  });

  for (const [label, mode] of [
    ['group-writable', 0o770],
    ['world-writable', 0o777],
    ['sticky world-writable (like /tmp)', 0o1777],
  ] as const) {
    test(`${label} output directory is refused (FILE_UNSAFE_DIRECTORY), nothing written`, async () => {
      const out = join(base, `open-${mode.toString(8)}`);
      await mkdir(out);
      await chmod(out, mode);
      await assert.rejects(writeX509Files(out, ctx), (err: unknown) => {
        assert.ok(err instanceof UnsafeDirectoryError);
        assert.equal(err.code, 'FILE_UNSAFE_DIRECTORY' satisfies SpiffeErrorCode);
        if (mode & 0o1000) assert.match(err.message, /sticky bit/);
        return true;
      });
      await assert.rejects(writeJwtFile(join(out, 'billing.jwt'), await caA.issueJwtSvid(CLIENT, 'billing')), {
        code: 'FILE_UNSAFE_DIRECTORY',
      });
      assert.deepEqual(await readdir(out), []);
      report.push(`CLI files: ${label} output directory (FILE_UNSAFE_DIRECTORY)`);
    });
  }

  test('a directory whose parent others can write to (they could swap it) is refused', async () => {
    const parent = join(base, 'swappable');
    await mkdir(join(parent, 'out'), { recursive: true, mode: 0o700 });
    await chmod(parent, 0o777);
    await assert.rejects(writeX509Files(join(parent, 'out'), ctx), { code: 'FILE_UNSAFE_DIRECTORY' });
    assert.deepEqual(await readdir(join(parent, 'out')), []);
    report.push('CLI files: output directory under a parent writable by others (FILE_UNSAFE_DIRECTORY)');
  });
});

describe('gRPC attacks', () => {
  // Loaded here rather than at the top of this shared file: the gRPC package from source (the cross-package
  // test package does not depend on @spiffe-ts/grpc) and grpc-js.
  type Grpc = typeof import('@grpc/grpc-js');
  type SpiffeGrpc = typeof import('../../packages/grpc/src/index.js');
  let grpc: Grpc;
  let sg: SpiffeGrpc;
  let http2: typeof import('node:http2');
  let net: typeof import('node:net');
  const closers: Array<() => unknown> = [];
  const PATH = '/attack.Probe/Guarded';

  before(async () => {
    grpc = await import('@grpc/grpc-js');
    sg = await import('../../packages/grpc/src/index.js');
    http2 = await import('node:http2');
    net = await import('node:net');
  });
  after(async () => {
    for (const close of closers.reverse()) await close();
  });

  /** One method with raw byte messages; the reply is the handler's spiffeIdOf (or jwtSvidOf subject). */
  function probeServer(interceptors: import('@grpc/grpc-js').ServerInterceptor[]) {
    const raw = (b: Buffer) => b;
    const service = {
      guarded: {
        path: PATH,
        requestStream: false,
        responseStream: false,
        requestSerialize: raw,
        requestDeserialize: raw,
        responseSerialize: raw,
        responseDeserialize: raw,
      },
    };
    const server = new grpc.Server({ interceptors });
    server.addService(service, {
      guarded: (
        call: import('@grpc/grpc-js').ServerUnaryCall<Buffer, Buffer>,
        cb: import('@grpc/grpc-js').sendUnaryData<Buffer>,
      ) => cb(null, Buffer.from(sg.spiffeIdOf(call)?.toString() ?? sg.jwtSvidOf(call)?.id.toString() ?? '')),
    });
    closers.push(() => server.forceShutdown());
    const Client = grpc.makeGenericClientConstructor(service, 'Probe');
    return { server, Client };
  }

  /** Records, for every call, the local port it arrived on, spiffeIdOf in an interceptor and the authorization. */
  function recorder(seen: Array<{ port: number | undefined; id: string; authorization: number }>) {
    const interceptor: import('@grpc/grpc-js').ServerInterceptor = (_d, call) =>
      new grpc.ServerInterceptingCall(call, {
        start: (next) =>
          next({
            onReceiveMetadata: (md, mdNext) => {
              seen.push({
                port: call.getConnectionInfo().localPort,
                id: sg.spiffeIdOf(call)?.toString() ?? '',
                authorization: md.get('authorization').length,
              });
              mdNext(md);
            },
          }),
      });
    return interceptor;
  }

  /** Calls the method through a grpc-js client: the error, if any. */
  function callWith(
    client: import('@grpc/grpc-js').Client,
    metadata: import('@grpc/grpc-js').Metadata,
    options: import('@grpc/grpc-js').CallOptions,
  ) {
    type Unary = (
      req: Buffer,
      md: import('@grpc/grpc-js').Metadata,
      opts: import('@grpc/grpc-js').CallOptions,
      cb: (err: import('@grpc/grpc-js').ServiceError | null) => void,
    ) => void;
    const guarded = (client as unknown as { guarded: Unary }).guarded.bind(client);
    return new Promise<import('@grpc/grpc-js').ServiceError | null>((resolve) =>
      guarded(Buffer.alloc(0), metadata, { deadline: Date.now() + 5000, ...options }, resolve),
    );
  }

  const bind = (server: import('@grpc/grpc-js').Server, creds: import('@grpc/grpc-js').ServerCredentials) =>
    new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', creds, (err, port) => (err ? reject(err) : resolve(port))),
    );

  /** An HTTP/2 session over TLS presenting `svid`, from 127.0.0.1:`localPort` (0: any). */
  async function session(port: number, svid: X509Svid, localPort = 0) {
    const tcp = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1', localPort });
    await once(tcp, 'connect');
    closers.push(() => tcp.destroy());
    const socket = tls.connect({
      socket: tcp,
      ALPNProtocols: ['h2'],
      rejectUnauthorized: false, // the attacker does not care who the server is
      cert: svid.certificates.map((c) => c.toString()).join(''),
      key: svid.privateKey.export({ format: 'pem', type: 'pkcs8' }),
    });
    await once(socket, 'secureConnect');
    const s = http2.connect(`https://127.0.0.1:${port}`, { createConnection: () => socket });
    s.on('error', () => undefined);
    closers.push(() => s.destroy());
    return { session: s, localPort: tcp.localPort as number };
  }

  /** One unary call with an empty message: grpc-status and the reply message. */
  function unary(s: import('node:http2').ClientHttp2Session) {
    return new Promise<{ status: number; reply: string }>((resolve, reject) => {
      const req = s.request({ ':method': 'POST', ':path': PATH, 'content-type': 'application/grpc', te: 'trailers' });
      let status: number | undefined;
      const chunks: Buffer[] = [];
      const take = (h: import('node:http2').IncomingHttpHeaders) => {
        if (h['grpc-status'] !== undefined) status = Number(h['grpc-status']);
      };
      req.on('response', take);
      req.on('trailers', take);
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('error', reject);
      req.on('close', () =>
        status === undefined
          ? reject(new Error('no grpc-status'))
          : resolve({ status, reply: Buffer.concat(chunks).subarray(5).toString() }),
      );
      req.end(Buffer.alloc(5)); // one uncompressed message of length 0
    });
  }

  test('same key, same source port, ordinary TLS port of the same server: no SPIFFE ID there', async () => {
    const seen: Array<{ port: number | undefined; id: string; authorization: number }> = [];
    const { server } = probeServer([recorder(seen), sg.spiffeAuthorization({ methods: { [PATH]: [CLIENT] } })]);
    const source = new StaticX509Source(serverSvid, [caA.x509Bundle()]);
    const spiffe = await sg.listenSpiffe(server, { source });
    closers.push(() => spiffe.close(50));
    // A second SPIFFE listener on the same server that admits another ID only.
    const other = await sg.listenSpiffe(server, { source, authorize: [`spiffe://${TD_A}/someone-else`] });
    closers.push(() => other.close(50));
    // An ordinary grpc-js TLS port: client certificates required and checked against the same CA.
    const ordinary = await bind(
      server,
      grpc.ServerCredentials.createSsl(
        Buffer.from(caA.currentAuthority.certificate.toString()),
        [
          {
            cert_chain: Buffer.from(serverSvid.certificates.map((c) => c.toString()).join('')),
            private_key: Buffer.from(serverSvid.privateKey.export({ format: 'pem', type: 'pkcs8' })),
          },
        ],
        true,
      ),
    );

    // The key holder calls the SPIFFE port and keeps that connection open...
    const first = await session(spiffe.port, goodClient);
    assert.deepEqual(await unary(first.session), { status: grpc.status.OK, reply: CLIENT });
    // ...and connects from the very same source address and port to the ordinary port. TCP allows it: the
    // destination port differs, so it is another connection (node binds with SO_REUSEADDR). The old lookup,
    // keyed by the remote address and port only, gave this connection the SPIFFE port's ID.
    const second = await session(ordinary, goodClient, first.localPort);
    assert.equal(second.localPort, first.localPort);
    const denied = await unary(second.session);
    assert.equal(denied.status, grpc.status.PERMISSION_DENIED, `the ordinary port authorized ${denied.reply}`);
    assert.deepEqual(
      seen.map((s) => [s.port, s.id]),
      [
        [spiffe.port, CLIENT],
        [ordinary, ''],
      ],
    );
    // The same source port to the other SPIFFE listener: its own allowlist decides, at the handshake.
    await assert.rejects(async () => unary((await session(other.port, goodClient, first.localPort)).session));
    assert.equal(seen.length, 2, 'no call reached the server through the other listener');
    // The SPIFFE connection still has its ID.
    assert.deepEqual(await unary(first.session), { status: grpc.status.OK, reply: CLIENT });
    report.push(
      'gRPC: SPIFFE ID of a listenSpiffe connection claimed on an ordinary TLS port from the same source port',
    );
  });

  test('JWT-SVID on a plaintext port: UNAUTHENTICATED', async () => {
    const bundles = new JwtBundleSet([caA.jwtBundle()]);
    const { server, Client } = probeServer([sg.jwtSvidAuthentication({ bundles, audience: 'api' })]);
    const port = await bind(server, grpc.ServerCredentials.createInsecure());
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    closers.push(() => client.close());
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${(await caA.issueJwtSvid(CLIENT, 'api')).token}`);
    const err = await callWith(client, md, {});
    assert.equal(err?.code, grpc.status.UNAUTHENTICATED, 'a valid token was accepted in clear');
    report.push('gRPC: valid JWT-SVID presented on a plaintext port (UNAUTHENTICATED)');
  });

  test('JWT-SVID call credentials given per call on an insecure channel: the token never leaves', async () => {
    const seen: Array<{ port: number | undefined; id: string; authorization: number }> = [];
    const { server, Client } = probeServer([recorder(seen)]);
    const port = await bind(server, grpc.ServerCredentials.createInsecure());
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    closers.push(() => client.close());
    const svid = await caA.issueJwtSvid(CLIENT, 'api');
    const credentials = sg.jwtSvidCallCredentials({ fetchJwtSvid: async () => svid }, { audience: 'api' });
    const outcome = await callWith(client, new grpc.Metadata(), { credentials });
    assert.deepEqual(
      seen.filter((s) => s.authorization > 0),
      [],
      'the bearer token arrived over plaintext',
    );
    assert.equal(outcome?.code, grpc.status.UNAUTHENTICATED);
    report.push('gRPC: JWT-SVID call credentials attached per call to an insecure channel (refused client-side)');
  });
});
