// The dev server's bundle endpoint: two dev trust domains federate on one machine through their bundle
// endpoints, and mTLS across them keeps working while one of them rotates its CA.
import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  createSpiffeHttpsAgent,
  FederatedBundleSource,
  fetchBundle,
  matchId,
  peerSpiffeId,
  SpiffeBundle,
  spiffeServerTls,
  withFederatedBundles,
  X509Source,
} from '@spiffe-ts/core';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { rotationUnderLoad } from '@spiffe-ts/dev-server/testing';

const ORDERS = 'spiffe://orders.test/service/orders';
const BILLING = 'spiffe://billing.test/service/billing';

/** Federation with `dev`'s trust domain through its bundle endpoint, bootstrapped with its current bundle. */
function relationshipWith(dev: DevWorkloadApiServer) {
  return {
    trustDomain: dev.trustDomain,
    url: dev.bundleEndpointUrl as string,
    profile: {
      type: 'https_spiffe' as const,
      endpointSpiffeId: dev.bundleEndpointSpiffeId as NonNullable<typeof dev.bundleEndpointSpiffeId>,
      // What an operator hands over out of band: the bundle in SPIFFE format.
      bundle: SpiffeBundle.parse(dev.trustDomain, dev.ca.spiffeBundle().marshal()),
    },
  };
}

describe('dev server bundle endpoint', () => {
  let orders: DevWorkloadApiServer;
  let billing: DevWorkloadApiServer;
  before(async () => {
    orders = await DevWorkloadApiServer.start({
      trustDomain: 'orders.test',
      workloads: { orders: ORDERS },
      svidTtlSeconds: 300,
      bundleEndpoint: { refreshHintSeconds: 1 },
    });
    billing = await DevWorkloadApiServer.start({
      trustDomain: 'billing.test',
      workloads: { billing: BILLING },
      svidTtlSeconds: 300,
      bundleEndpoint: { refreshHintSeconds: 1 },
    });
  });
  after(async () => {
    await orders?.stop();
    await billing?.stop();
  });

  test('serves its own trust domain bundle with the https_spiffe profile', async () => {
    assert.match(orders.bundleEndpointUrl ?? '', /^https:\/\/127\.0\.0\.1:\d+\/$/);
    assert.equal(orders.bundleEndpointSpiffeId?.toString(), 'spiffe://orders.test/bundle-endpoint');
    const b = await fetchBundle(relationshipWith(orders));
    assert.equal(b.refreshHintSeconds, 1);
    assert.equal(b.sequenceNumber, BigInt(orders.ca.sequence));
    assert.deepEqual(
      b.x509Authorities.map((c) => c.fingerprint256),
      orders.ca.x509Bundle().authorities.map((c) => c.fingerprint256),
    );
    assert.deepEqual([...b.jwtAuthorities.keys()], [...orders.ca.jwtBundle().authorities.keys()]);
    const plain = await DevWorkloadApiServer.start({ workloads: {} });
    assert.equal(plain.bundleEndpointUrl, undefined);
    await plain.stop();
  });

  test('two dev trust domains federate; mTLS across them survives a CA rotation at the endpoint', async () => {
    const ordersFed = await FederatedBundleSource.create({
      relationships: [relationshipWith(billing)],
      minRefreshMs: 200,
      timeoutMs: 5000,
    });
    const billingFed = await FederatedBundleSource.create({
      relationships: [relationshipWith(orders)],
      minRefreshMs: 200,
      timeoutMs: 5000,
    });
    const ordersSource = await X509Source.create({ address: orders.address('orders'), timeoutMs: 5000 });
    const billingSource = await X509Source.create({ address: billing.address('billing'), timeoutMs: 5000 });
    const tls = spiffeServerTls(withFederatedBundles(ordersSource, ordersFed), { authorize: matchId(BILLING) });
    const server = https.createServer(tls.options, (req, res) => res.end(String(peerSpiffeId(req.socket))));
    const detach = tls.attach(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const agent = createSpiffeHttpsAgent({
      source: withFederatedBundles(billingSource, billingFed),
      authorize: matchId(ORDERS),
      agentOptions: { keepAlive: false },
    });
    const request = () =>
      new Promise<void>((resolve, reject) => {
        https
          .get(url, { agent }, (res) => {
            let body = '';
            res.on('data', (d) => {
              body += d;
            });
            res.on('end', () =>
              res.statusCode === 200 && body === BILLING ? resolve() : reject(new Error(`${res.statusCode} ${body}`)),
            );
          })
          .on('error', reject);
      });
    try {
      await request();
      const before = billing.ca.currentAuthority.certificate.fingerprint256;
      // The new billing CA is published at the endpoint 1.5 s before it signs anything: more than the refresh
      // hint (1 s), so orders.test has it before the first SVID it signed shows up.
      const r = await rotationUnderLoad({ dev: billing, request, workers: 2, settleMs: 1500 });
      assert.equal(r.failed, 0, r.errors.join('; '));
      assert.ok(r.ok > 5);
      const now = ordersFed.getX509BundleForTrustDomain(billing.trustDomain);
      assert.equal(now.authorities.length, 1);
      assert.notEqual(now.authorities[0]?.fingerprint256, before);
      assert.equal(ordersFed.status()[0]?.lastError, undefined);
    } finally {
      agent.destroy();
      detach();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await ordersSource.close();
      await billingSource.close();
      await ordersFed.close();
      await billingFed.close();
    }
  });
});
