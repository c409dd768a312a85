// bundleEndpointHandler mounted in Fastify and in Express (the way the core README shows), fetched with
// fetchBundle over real HTTPS.
import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { bundleEndpointHandler, fetchBundle, type HttpsWebProfile } from '@spiffe-ts/core';
import { createAuthority, DevCa, issueX509SvidWith } from '@spiffe-ts/dev-server';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';

let ca: DevCa;
let tls: { cert: string; key: string };
let profile: HttpsWebProfile;

async function status(url: string, method: string): Promise<{ status: number; allow?: string }> {
  return new Promise((resolve, reject) => {
    https
      .request(url, { method, ca: profile.ca as string, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, allow: res.headers.allow }));
      })
      .on('error', reject)
      .end();
  });
}

before(async () => {
  ca = await DevCa.create({ trustDomain: 'partner.test' });
  const webCa = await createAuthority({ uri: null, subject: 'CN=example web CA' });
  const cert = (await issueX509SvidWith(webCa, 'spiffe://unused/x', { uris: [], dnsNames: ['localhost'] })).toPem();
  tls = { cert: cert.certificates, key: cert.privateKey };
  profile = { type: 'https_web', ca: webCa.certificate.toString() };
});

describe('bundleEndpointHandler in web frameworks (https_web profile)', () => {
  let fastify: FastifyInstance;
  let expressServer: https.Server;
  after(async () => {
    await fastify?.close();
    expressServer?.closeAllConnections();
    await new Promise<void>((r) => (expressServer ? expressServer.close(() => r()) : r()));
  });

  test('Fastify: reply.hijack() and the handler on the raw request', async () => {
    const handler = bundleEndpointHandler('partner.test', () => ca.spiffeBundle());
    fastify = Fastify({ https: tls });
    fastify.all('/bundle', (request, reply) => {
      reply.hijack();
      handler(request.raw, reply.raw);
    });
    await fastify.listen({ port: 0, host: '127.0.0.1' });
    const url = `https://localhost:${(fastify.server.address() as AddressInfo).port}/bundle`;
    const b = await fetchBundle({ trustDomain: 'partner.test', url, profile });
    assert.equal(b.marshal(), ca.spiffeBundle().marshal());
    assert.deepEqual(await status(url, 'POST'), { status: 405, allow: 'GET, HEAD' });
  });

  test('Express: app.all(path, handler)', async () => {
    const app = express();
    app.all(
      '/.well-known/spiffe-bundle',
      bundleEndpointHandler('partner.test', () => ca.spiffeBundle()),
    );
    expressServer = https.createServer(tls, app);
    await new Promise<void>((r) => expressServer.listen(0, '127.0.0.1', r));
    const url = `https://localhost:${(expressServer.address() as AddressInfo).port}/.well-known/spiffe-bundle`;
    await ca.rotateX509Authority(); // the handler always serves the current bundle
    const b = await fetchBundle({ trustDomain: 'partner.test', url, profile });
    assert.equal(b.x509Authorities.length, 2);
    assert.equal(b.sequenceNumber, BigInt(ca.sequence));
    assert.deepEqual(await status(url, 'DELETE'), { status: 405, allow: 'GET, HEAD' });
  });
});
