import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JwtBundleSet, parseAndValidateJwtSvid, SpiffeId, verifyX509Svid, X509BundleSet } from '@spiffe-ts/core';
import { DevCa } from '@spiffe-ts/dev-server';

test('dev CA issues an X.509-SVID and a JWT-SVID that verify', async () => {
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const svid = await ca.issueX509Svid('spiffe://example.org/service/orders');
  assert.equal(svid.id.toString(), 'spiffe://example.org/service/orders');
  const { id, verifiedChain } = verifyX509Svid(svid.certificates, new X509BundleSet([ca.x509Bundle()]));
  assert.ok(id.equals(SpiffeId.parse('spiffe://example.org/service/orders')));
  assert.equal(verifiedChain.length, 2);
  const jwt = await ca.issueJwtSvid('spiffe://example.org/a', 'aud1');
  const v = await parseAndValidateJwtSvid(jwt.token, new JwtBundleSet([ca.jwtBundle()]), 'aud1');
  assert.equal(v.id.toString(), 'spiffe://example.org/a');
});
