// The shared denial path: authenticateBearer / authorizeSocketPeer produce one SpiffeAuthError shape.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import {
  authenticateBearer,
  authorizeSocketPeer,
  JwtBundleSet,
  matchAny,
  SpiffeAuthError,
  SpiffeError,
} from '@spiffe-ts/core';
import { DevCa } from '@spiffe-ts/dev-server';

const AUD = 'spiffe://example.org/api';
let ca: DevCa;
let bundles: JwtBundleSet;

before(async () => {
  ca = await DevCa.create({ trustDomain: 'example.org' });
  bundles = new JwtBundleSet([ca.jwtBundle()]);
});

describe('authenticateBearer', () => {
  test('no token: 401 JWTSVID_MISSING with a bare RFC 6750 challenge', async () => {
    const d = await authenticateBearer(undefined, { bundles, audience: AUD, realm: 'orders' });
    assert.equal(d.ok, false);
    if (d.ok) return;
    assert.ok(d.error instanceof SpiffeAuthError && d.error instanceof SpiffeError);
    assert.equal(d.error.code, 'JWTSVID_MISSING');
    assert.equal(d.error.statusCode, 401);
    assert.equal(d.error.status, 401);
    assert.deepEqual(d.error.headers, { 'WWW-Authenticate': 'Bearer realm="orders"' });
  });

  test('wrong audience: 401 with the validation code, invalid_token, and no detail in message or header', async () => {
    const token = (await ca.issueJwtSvid('spiffe://example.org/client', ['spiffe://example.org/other'])).token;
    const d = await authenticateBearer(`Bearer ${token}`, { bundles, audience: AUD });
    assert.equal(d.ok, false);
    if (d.ok) return;
    assert.equal(d.error.code, 'JWTSVID_AUDIENCE_MISMATCH');
    assert.equal(d.error.statusCode, 401);
    assert.equal(d.error.headers['WWW-Authenticate'], 'Bearer realm="spiffe", error="invalid_token"');
    assert.equal(d.error.message, 'invalid JWT-SVID');
    assert.ok(d.error.cause instanceof SpiffeError, 'the validation error is kept as the cause for logs');
    assert.deepEqual(d.error.toDenial('/x'), {
      code: 'JWTSVID_AUDIENCE_MISMATCH',
      message: 'invalid JWT-SVID',
      statusCode: 401,
      route: '/x',
    });
  });

  test('subject not allowed: 403 UNAUTHORIZED_SPIFFE_ID, insufficient_scope, subject kept, allowlist not shown', async () => {
    const token = (await ca.issueJwtSvid('spiffe://example.org/client', [AUD])).token;
    const d = await authenticateBearer(`Bearer ${token}`, {
      bundles,
      audience: AUD,
      allow: 'spiffe://example.org/secret-admin',
    });
    assert.equal(d.ok, false);
    if (d.ok) return;
    assert.equal(d.error.code, 'UNAUTHORIZED_SPIFFE_ID');
    assert.equal(d.error.statusCode, 403);
    assert.equal(d.error.subject?.toString(), 'spiffe://example.org/client');
    assert.equal(d.error.headers['WWW-Authenticate'], 'Bearer realm="spiffe", error="insufficient_scope"');
    assert.doesNotMatch(JSON.stringify(d.error.toDenial()) + d.error.message, /secret-admin/);
  });

  test('valid token and allowed subject pass', async () => {
    const token = (await ca.issueJwtSvid('spiffe://example.org/client', [AUD])).token;
    const d = await authenticateBearer(`Bearer ${token}`, {
      bundles,
      audience: AUD,
      allow: { trustDomain: 'example.org' },
    });
    assert.equal(d.ok, true);
  });
});

describe('authorizeSocketPeer', () => {
  test('a socket without a verified peer: 403 PEER_NOT_VERIFIED and no ID', () => {
    const d = authorizeSocketPeer(undefined, matchAny());
    assert.equal(d.ok, false);
    if (d.ok) return;
    assert.equal(d.id, undefined);
    assert.equal(d.error.code, 'PEER_NOT_VERIFIED');
    assert.equal(d.error.statusCode, 403);
    assert.deepEqual(d.error.headers, {});
    assert.equal(d.error.spiffeId, undefined);
  });
});
