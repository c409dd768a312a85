import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  createSpiffeTlsServer,
  FileX509Source,
  matchId,
  peerSpiffeId,
  SourceError,
  StaticX509Source,
  X509BundleSet,
} from '@spiffe-ts/core';
import { createSpiffeDispatcher } from '@spiffe-ts/core/undici';
import { DevCa } from '@spiffe-ts/dev-server';

const ID = 'spiffe://example.org/service/files';

test('FileX509Source reads PEM files, reloads on change, ignores a half-written update', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'spiffe-files-'));
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const write = async (svidPem: string, keyPem: string) => {
    await writeFile(join(dir, 'svid_key.pem'), keyPem);
    await writeFile(join(dir, 'svid.pem'), svidPem);
  };
  const first = (await ca.issueX509Svid(ID)).toPem();
  await write(first.certificates, first.privateKey);
  await writeFile(join(dir, 'svid_bundle.pem'), ca.x509Bundle().toPem());
  const errors: string[] = [];
  const src = new FileX509Source({
    certFile: join(dir, 'svid.pem'),
    keyFile: join(dir, 'svid_key.pem'),
    bundleFile: join(dir, 'svid_bundle.pem'),
    pollIntervalMs: 50,
    onError: (e) => errors.push(e.code),
  });
  try {
    const s1 = src.getX509Svid();
    assert.equal(s1.id.toString(), ID);
    assert.equal(src.getX509BundleForTrustDomain(s1.id.trustDomain).authorities.length, 1);

    // A torn write (key of the new SVID, chain not yet replaced) must not be served.
    const second = (await ca.issueX509Svid(ID)).toPem();
    await writeFile(join(dir, 'svid_key.pem'), second.privateKey);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(src.getX509Svid().leaf.serialNumber, s1.leaf.serialNumber, 'old material kept');
    assert.ok(errors.includes('X509SVID_KEY_MISMATCH'), `reload error reported (${errors})`);

    const updated = new Promise<void>((resolve) => src.onUpdate(() => resolve()));
    await writeFile(join(dir, 'svid.pem'), second.certificates);
    await updated;
    assert.notEqual(src.getX509Svid().leaf.serialNumber, s1.leaf.serialNumber);
  } finally {
    src.close();
    await rm(dir, { recursive: true, force: true });
  }
  assert.throws(() => src.getX509Svid(), { code: 'SOURCE_CLOSED' });
  assert.throws(
    () => new FileX509Source({ certFile: '/nonexistent/a', keyFile: '/nonexistent/b', bundleFile: '/nonexistent/c' }),
    (e: SourceError) => e.code === 'FILE_SOURCE_ERROR',
  );
});

test('sources refuse to serve an expired SVID', async () => {
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const expired = await ca.issueX509Svid(ID, {
    notBefore: new Date(Date.now() - 7200_000),
    notAfter: new Date(Date.now() - 1000),
  });
  const src = new StaticX509Source(expired, ca.x509Bundle());
  assert.throws(() => src.getX509Svid(), { code: 'SOURCE_SVID_EXPIRED' });
});

test("Node's global fetch works with the SPIFFE dispatcher", async () => {
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const bundles = new X509BundleSet([ca.x509Bundle()]);
  const serverSource = new StaticX509Source(await ca.issueX509Svid('spiffe://example.org/server'), bundles);
  const spiffe = createSpiffeTlsServer({ source: serverSource, authorize: matchId(ID) });
  const server = https.createServer(spiffe.options, (req, res) => res.end(String(peerSpiffeId(req.socket))));
  spiffe.attach(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const dispatcher = createSpiffeDispatcher({
    source: new StaticX509Source(await ca.issueX509Svid(ID), bundles),
    authorize: matchId('spiffe://example.org/server'),
  });
  try {
    const res = await fetch(`https://127.0.0.1:${(server.address() as AddressInfo).port}/`, {
      dispatcher,
    } as RequestInit);
    assert.equal(await res.text(), ID);
  } finally {
    await dispatcher.close();
    await new Promise((r) => server.close(r));
  }
});
