// The test kit (@spiffe-ts/dev-server/testing), exercised the way packages/dev-server/README.md shows it.
import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  createSpiffeHttpsAgent,
  JwtBundleSet,
  matchId,
  parseAndValidateJwtSvid,
  peerSpiffeId,
  spiffeServerTls,
  X509Source,
} from '@spiffe-ts/core';
import type { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import {
  issueTestJwtSvid,
  issueTestSvid,
  rotationUnderLoad,
  runWorkloads,
  startTestWorkloadApi,
} from '@spiffe-ts/dev-server/testing';

describe('@spiffe-ts/dev-server/testing', () => {
  let dev: DevWorkloadApiServer;
  before(async () => {
    dev = await startTestWorkloadApi({ orders: '/service/orders', payments: 'spiffe://example.org/service/payments' });
  });
  after(() => dev.stop());

  test('issueTestSvid / issueTestJwtSvid: by workload name, path or SPIFFE ID', async () => {
    assert.equal((await issueTestSvid(dev, 'payments')).id.toString(), 'spiffe://example.org/service/payments');
    assert.equal((await issueTestSvid(dev, '/service/x')).id.toString(), 'spiffe://example.org/service/x');
    const jwt = await issueTestJwtSvid(dev, 'orders', 'billing');
    const bundles = new JwtBundleSet([dev.ca.jwtBundle()]);
    const parsed = await parseAndValidateJwtSvid(jwt.token, bundles, ['billing']);
    assert.equal(parsed.id.toString(), 'spiffe://example.org/service/orders');
    await assert.rejects(issueTestSvid(dev, 'nope'), /unknown workload/);
  });

  test('rotationUnderLoad: mTLS requests keep succeeding while SVIDs and the CA rotate', async () => {
    const serverSource = await X509Source.create({ address: dev.address('orders') });
    const clientSource = await X509Source.create({ address: dev.address('payments') });
    const spiffe = spiffeServerTls(serverSource, { authorize: matchId('spiffe://example.org/service/payments') });
    const server = https.createServer(spiffe.options, (req, res) => res.end(String(peerSpiffeId(req.socket))));
    spiffe.attach(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const agent = createSpiffeHttpsAgent({
      source: clientSource,
      authorize: matchId('spiffe://example.org/service/orders'),
    });
    const fresh = createSpiffeHttpsAgent({
      source: clientSource,
      authorize: matchId('spiffe://example.org/service/orders'),
      agentOptions: { keepAlive: false },
    });
    const request = (worker: number) =>
      new Promise<void>((resolve, reject) => {
        https
          .get(`https://127.0.0.1:${port}/`, { agent: worker === 0 ? agent : fresh }, (res) => {
            let body = '';
            res.on('data', (d) => {
              body += d;
            });
            res.on('end', () =>
              body === 'spiffe://example.org/service/payments' ? resolve() : reject(new Error(`got ${body}`)),
            );
          })
          .on('error', reject);
      });
    const serial = () => serverSource.getX509Svid().leaf.serialNumber;
    const s0 = serial();
    try {
      const r = await rotationUnderLoad({
        dev,
        request,
        afterSvidRotation: () => assert.notEqual(serial(), s0, 'server SVID rotated'),
        afterCaRotation: () => assert.equal(serverSource.bundles.get('example.org')?.authorities.length, 1),
      });
      assert.equal(r.failed, 0, r.errors.join('; '));
      assert.equal(r.rotations, 2);
      assert.ok(r.ok > 10, `enough requests ran (${r.ok})`);

      // a throwing hook stops the workers and is rethrown
      await assert.rejects(
        rotationUnderLoad({
          dev,
          request,
          rotateCa: false,
          settleMs: 50,
          afterSvidRotation: () => assert.fail('boom'),
        }),
        /boom/,
      );
    } finally {
      agent.destroy();
      fresh.destroy();
      server.close();
      await Promise.all([serverSource.close(), clientSource.close()]);
    }
  });

  test('runWorkloads: separate processes, each with its workload socket', async () => {
    const workloads = runWorkloads(dev, import.meta.url);
    try {
      const server = await workloads.start('./fixtures/print-socket.ts', 'orders', { WAIT: '1' });
      assert.equal(server.line, dev.address('orders'));
      assert.equal(await workloads.run('./fixtures/print-socket.ts', 'payments'), dev.address('payments'));
      await assert.rejects(workloads.run('./fixtures/print-socket.ts', 'payments', { FAIL: '1' }), /exited 3/);
    } finally {
      workloads.stop();
    }
  });
});
