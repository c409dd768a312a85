// Smoke test of the go-spiffe federation program (go/federation): its bundle endpoint server (`-mode serve`,
// go-spiffe's federation.NewHandler) and client (`-mode fetch`, federation.FetchBundle) work against each
// other over both profiles, with CA material from our dev server's CA. It is the peer that our own
// federation client and server are tested against. Run with test/interop/run.sh.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createAuthority, DevCa, issueX509SvidWith } from '@spiffe-ts/dev-server';
import { bin, binariesPresent, GO_SPIFFE_VERSION, goFetchBundle, startJson } from './harness.js';

const TD = 'fed.example';
const ENDPOINT_ID = `spiffe://${TD}/bundle-endpoint`;

describe(`go-spiffe ${GO_SPIFFE_VERSION} federation program: serve and fetch`, {
  skip: !binariesPresent() && 'run test/interop/run.sh',
}, () => {
  let dir: string;
  let ca: DevCa;
  const file = (name: string) => join(dir, name);
  const write = (name: string, text: string) => writeFileSync(file(name), text, { mode: 0o600 });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'interop-federation-'));
    ca = await DevCa.create({ trustDomain: TD });
    write('bundle.json', ca.spiffeBundle().marshal());
    const svid = (await ca.issueX509Svid(ENDPOINT_ID)).toPem();
    write('svid.pem', svid.certificates);
    write('svid-key.pem', svid.privateKey);
    // https_web: a server certificate for localhost from a CA that is not the trust domain's.
    const web = await createAuthority({ subject: 'CN=interop web CA' });
    const webLeaf = (await issueX509SvidWith(web, ENDPOINT_ID, { uris: [], dnsNames: ['localhost'] })).toPem();
    write('web.pem', webLeaf.certificates);
    write('web-key.pem', webLeaf.privateKey);
    write('web-ca.pem', web.certificate.toString());
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('https_spiffe: fetch authenticates the endpoint’s SVID and reads the bundle it serves', async () => {
    const srv = await startJson(bin.federation, [
      '-mode',
      'serve',
      '-td',
      TD,
      '-bundle',
      file('bundle.json'),
      '-svid-cert',
      file('svid.pem'),
      '-svid-key',
      file('svid-key.pem'),
    ]);
    try {
      const url = srv.first.url as string;
      const fetch = (endpointId: string) =>
        goFetchBundle(TD, url, { type: 'https_spiffe', endpointId, bundleFile: file('bundle.json') });
      const r = await fetch(ENDPOINT_ID);
      assert.equal(r.code, 0, JSON.stringify(r.lines) + r.stderr);
      const served = ca.spiffeBundle();
      assert.deepEqual(r.lines[0], {
        trustDomain: TD,
        x509Authorities: served.x509Bundle().authorities.length,
        jwtKids: [...served.jwtBundle().authorities.keys()].sort(),
        sequenceNumber: ca.sequence,
        refreshHint: Math.max(1, Math.floor(ca.svidTtlSeconds / 2)),
      });

      // The server reads the file on every request: a rotated JWT authority shows on the next fetch.
      await ca.rotateJwtAuthority();
      write('bundle.json', ca.spiffeBundle().marshal());
      const rotated = await fetch(ENDPOINT_ID);
      assert.equal(rotated.code, 0, rotated.stderr);
      assert.deepEqual(rotated.lines[0]?.jwtKids, [...ca.jwtBundle().authorities.keys()].sort());
      assert.equal(ca.jwtBundle().authorities.size, 2);

      // Expecting another endpoint ID: go-spiffe refuses the server.
      const wrong = await fetch(`spiffe://${TD}/somebody-else`);
      assert.equal(wrong.code, 1);
      assert.match(String(wrong.lines[0]?.error), /unexpected ID|somebody-else/);
    } finally {
      await srv.stop();
    }
  });

  test('https_web: fetch checks the server certificate against the given roots', async () => {
    const srv = await startJson(bin.federation, [
      '-mode',
      'serve',
      '-profile',
      'https_web',
      '-td',
      TD,
      '-bundle',
      file('bundle.json'),
      '-web-cert',
      file('web.pem'),
      '-web-key',
      file('web-key.pem'),
    ]);
    try {
      const port = (srv.first.address as string).split(':').pop();
      const fetch = (url: string, ca: string) => goFetchBundle(TD, url, { type: 'https_web', caFile: ca });
      const r = await fetch(`https://localhost:${port}/`, file('web-ca.pem'));
      assert.equal(r.code, 0, JSON.stringify(r.lines) + r.stderr);
      assert.equal(r.lines[0]?.trustDomain, TD);
      assert.equal(r.lines[0]?.x509Authorities, ca.x509Bundle().authorities.length);

      // Roots that did not issue the server's certificate: refused.
      const untrusted = await fetch(`https://localhost:${port}/`, file('svid.pem'));
      assert.equal(untrusted.code, 1);
      assert.match(String(untrusted.lines[0]?.error), /certificate/);
    } finally {
      await srv.stop();
    }
  });
});
