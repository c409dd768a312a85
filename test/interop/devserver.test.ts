// Interoperability of our local development Workload API server with SPIFFE software we did not write:
// go-spiffe's Workload API client and `spire-agent api` (direction 3), and JWT-SVIDs it issues validated by
// go-spiffe (direction 4). Run with test/interop/run.sh.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import {
  JwtSource,
  parseAndValidateJwtSvid,
  SpiffeError,
  verifyX509Svid,
  X509Bundle,
  X509BundleSet,
  X509Svid,
} from '@spiffe-ts/core';
import { DevCa, DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { bin, binariesPresent, GO_SPIFFE_VERSION, runJson, SPIRE_VERSION } from './harness.js';

const run = promisify(execFile);
const ID = 'spiffe://example.org/go-workload';

describe(`our dev Workload API server, used by go-spiffe ${GO_SPIFFE_VERSION} and spire-agent ${SPIRE_VERSION}`, {
  skip: !binariesPresent() && 'run test/interop/run.sh',
}, () => {
  let dev: DevWorkloadApiServer;
  let partner: DevCa;
  let addr: string;
  let sock: string;

  before(async () => {
    partner = await DevCa.create({ trustDomain: 'partner.example' });
    dev = await DevWorkloadApiServer.start({
      workloads: { go: ID, node: 'spiffe://example.org/node' },
      federatedWith: [partner],
      tcp: { workload: 'go' },
    });
    addr = dev.address('go');
    sock = dev.socketPath('go');
  });
  after(async () => {
    await dev?.stop();
  });

  /** go-spiffe's jwtsvid.ParseAndValidate of `token` for `audience`, with the JWT bundles our server serves. */
  const goValidate = (token: string, audience: string) =>
    runJson(bin.fetch, ['-workload-api', addr, '-mode', 'validate', '-token', token, '-audience', audience]);

  test('go-spiffe fetches the X.509 context (unix and TCP): SVID, own and federated bundles', async () => {
    for (const address of [addr, dev.tcpAddress as string]) {
      const r = await runJson(bin.fetch, ['-workload-api', address, '-mode', 'x509']);
      assert.equal(r.code, 0, JSON.stringify(r.lines) + r.stderr);
      const x = r.lines[0] as {
        id: string;
        trustDomains: string[];
        chainLength: number;
        bundles: Record<string, number>;
      };
      assert.equal(x.id, ID);
      assert.deepEqual(x.trustDomains, ['example.org', 'partner.example']);
      assert.ok(x.chainLength >= 1);
      assert.equal(x.bundles['example.org'], dev.ca.x509Bundle().authorities.length);
    }
  });

  test('go-spiffe fetches JWT bundles with the same key IDs we serve', async () => {
    const r = await runJson(bin.fetch, ['-workload-api', addr, '-mode', 'jwtbundles']);
    assert.equal(r.code, 0, r.stderr);
    const b = (r.lines[0] as { bundles: Record<string, string[]> }).bundles;
    assert.deepEqual(b['example.org'], [...dev.ca.jwtBundle().authorities.keys()].sort());
    assert.ok(b['partner.example']?.length);
  });

  test('JWT-SVID fetched by go-spiffe from our server validates in our core', async () => {
    const r = await runJson(bin.fetch, ['-workload-api', addr, '-mode', 'jwt', '-audience', 'svc-a']);
    assert.equal(r.code, 0, r.stderr);
    const token = (r.lines[0] as { token: string }).token;
    const svid = await parseAndValidateJwtSvid(token, dev.ca.jwtBundle(), 'svc-a');
    assert.equal(svid.id.toString(), ID);
  });

  test('JWT-SVIDs our server issues are validated by go-spiffe; wrong audience and tampering are rejected', async () => {
    const jwt = await JwtSource.create({ address: dev.address('node'), timeoutMs: 10_000 });
    try {
      const svid = await jwt.fetchJwtSvid({ audience: 'go-service' });
      const ok = await goValidate(svid.token, 'go-service');
      assert.equal(ok.code, 0, JSON.stringify(ok.lines));
      assert.equal(ok.lines[0]?.id, 'spiffe://example.org/node');

      const aud = await goValidate(svid.token, 'other');
      assert.equal(aud.code, 1);
      assert.match(String(aud.lines[0]?.error), /audience/i);

      const [h, p, s] = svid.token.split('.') as [string, string, string];
      const flipped = `${h}.${p}.${s.slice(0, -4)}${s.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
      const bad = await goValidate(flipped, 'go-service');
      assert.equal(bad.code, 1);
    } finally {
      await jwt.close();
    }
  });

  test('spire-agent api fetch x509 reads our server; the files it writes parse and verify in our core', async () => {
    const { stdout } = await run(bin.spireAgent, ['api', 'fetch', 'x509', '-socketPath', sock, '-output', 'json']);
    const json = JSON.parse(stdout) as { svids: Array<{ spiffe_id: string }> };
    assert.equal(json.svids[0]?.spiffe_id, ID);

    const dir = mkdtempSync(join(tmpdir(), 'agent-write-'));
    try {
      await run(bin.spireAgent, ['api', 'fetch', 'x509', '-socketPath', sock, '-write', dir]);
      const svid = X509Svid.parse(readFileSync(join(dir, 'svid.0.pem')), readFileSync(join(dir, 'svid.0.key')));
      const bundle = X509Bundle.parse('example.org', readFileSync(join(dir, 'bundle.0.pem')));
      assert.equal(svid.id.toString(), ID);
      verifyX509Svid(svid.certificates, new X509BundleSet([bundle]));
      const federated = readFileSync(join(dir, 'federated_bundle.0.0.pem'), 'utf8');
      assert.match(federated, /BEGIN CERTIFICATE/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('spire-agent api fetch jwt and validate jwt against our server', async () => {
    const { stdout } = await run(bin.spireAgent, [
      'api',
      'fetch',
      'jwt',
      '-audience',
      'svc-b',
      '-socketPath',
      sock,
      '-output',
      'json',
    ]);
    const token = /"svid":\s*"([^"]+)"/.exec(stdout)?.[1];
    assert.ok(token, stdout);
    const svid = await parseAndValidateJwtSvid(token, dev.ca.jwtBundle(), 'svc-b');
    assert.equal(svid.id.toString(), ID);
    await assert.rejects(parseAndValidateJwtSvid(token, dev.ca.jwtBundle(), 'svc-c'), SpiffeError);

    // ValidateJWTSVID served by our server, called by SPIRE's CLI.
    const v = await run(bin.spireAgent, [
      'api',
      'validate',
      'jwt',
      '-audience',
      'svc-b',
      '-svid',
      token,
      '-socketPath',
      sock,
    ]);
    assert.match(v.stdout, /SVID is valid/i);
    await assert.rejects(
      run(bin.spireAgent, ['api', 'validate', 'jwt', '-audience', 'svc-c', '-svid', token, '-socketPath', sock]),
    );
  });
});
