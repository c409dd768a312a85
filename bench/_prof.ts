import { verifyX509Svid, X509BundleSet } from '@spiffe-ts/core';
import { DevCa } from '@spiffe-ts/dev-server';

const ca = await DevCa.create({ trustDomain: 'example.org' });
const svid = await ca.issueX509Svid('spiffe://example.org/x');
const chain = svid.certificates.map((c) => c.raw);
const bundles = new X509BundleSet([ca.x509Bundle()]);
for (let r = 0; r < 3; r++) {
  const t0 = performance.now();
  for (let i = 0; i < 2000; i++) verifyX509Svid(chain, bundles);
  console.log('verify µs', (((performance.now() - t0) / 2000) * 1000).toFixed(1));
}
