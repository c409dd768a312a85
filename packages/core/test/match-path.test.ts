// Path matchers (trust domain plus segment pattern or segment prefix) and the allowlist index.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  matchPath,
  matchPathPrefix,
  type SpiffeErrorCode,
  SpiffeIdError,
  type SpiffeIdMatcher,
  TrustDomain,
  toMatcher,
} from '@spiffe-ts/core';
import { id, throwsIdError } from './ids.js';

const ok = (m: SpiffeIdMatcher, s: string) => m(id(s)) === true;

describe('matchPath', () => {
  const m = matchPath('spiffe://example.org/ns/*/sa/payments');
  test('a * segment matches exactly one whole segment', () => {
    assert.ok(ok(m, 'spiffe://example.org/ns/prod/sa/payments'));
    assert.ok(ok(m, 'spiffe://example.org/ns/dev/sa/payments'));
    assert.ok(!ok(m, 'spiffe://example.org/ns/prod/extra/sa/payments'));
    assert.ok(!ok(m, 'spiffe://example.org/ns/sa/payments'));
    assert.ok(!ok(m, 'spiffe://example.org/ns/prod/sa/payments/x'));
    assert.ok(!ok(m, 'spiffe://example.org/ns/prod/sa/payments-v2'));
    assert.ok(!ok(m, 'spiffe://other.org/ns/prod/sa/payments'));
  });
  test('the trust domain and path may be given apart', () => {
    const m2 = matchPath(TrustDomain.parse('example.org'), '/ns/*/sa/*');
    assert.ok(ok(m2, 'spiffe://example.org/ns/a/sa/b'));
    assert.ok(!ok(m2, 'spiffe://example.org/ns/a/sa'));
  });
  test('invalid patterns throw SpiffeIdError with the ID codes at construction', () => {
    const cases: Array<[() => unknown, SpiffeErrorCode]> = [
      [() => matchPath('spiffe://example.org/ns/prod*'), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
      [() => matchPath('spiffe://example.org/ns//sa'), 'SPIFFEID_EMPTY_SEGMENT'],
      [() => matchPath('spiffe://example.org/ns/../sa'), 'SPIFFEID_DOT_SEGMENT'],
      [() => matchPath('spiffe://example.org/ns/'), 'SPIFFEID_TRAILING_SLASH'],
      [() => matchPath('spiffe://example.org'), 'SPIFFEID_NO_LEADING_SLASH'],
      [() => matchPath('spiffe://Example.org/ns/*'), 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
      [() => matchPath('http://example.org/ns/*'), 'SPIFFEID_WRONG_SCHEME'],
      [() => matchPath('example.org', 'ns/*'), 'SPIFFEID_NO_LEADING_SLASH'],
      [() => matchPath('example.org', '/ns/**'), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ];
    for (const [fn, code] of cases) {
      throwsIdError(fn, code);
    }
  });
});

describe('matchPathPrefix', () => {
  test('compares whole segments: /ns/prod never matches /ns/production', () => {
    const m = matchPathPrefix('example.org', '/ns/prod');
    assert.ok(ok(m, 'spiffe://example.org/ns/prod'));
    assert.ok(ok(m, 'spiffe://example.org/ns/prod/sa/x'));
    assert.ok(!ok(m, 'spiffe://example.org/ns/production'));
    assert.ok(!ok(m, 'spiffe://example.org/ns/production/sa/x'));
    assert.ok(!ok(m, 'spiffe://example.org/ns'));
    assert.ok(!ok(m, 'spiffe://other.org/ns/prod/sa/x'));
  });
  test('a trailing slash admits only paths below the prefix', () => {
    const m = matchPathPrefix('example.org', '/ns/prod/');
    assert.ok(!ok(m, 'spiffe://example.org/ns/prod'));
    assert.ok(ok(m, 'spiffe://example.org/ns/prod/sa/x'));
    const root = matchPathPrefix('example.org', '/');
    assert.ok(ok(root, 'spiffe://example.org/a'));
    assert.ok(!ok(root, 'spiffe://example.org'));
  });
  test('invalid prefixes throw at construction; * is literal-invalid in a prefix', () => {
    assert.throws(() => matchPathPrefix('example.org', '/ns/*'), SpiffeIdError);
    assert.throws(() => matchPathPrefix('example.org', 'ns'), SpiffeIdError);
    assert.throws(() => matchPathPrefix('example.org', '/ns//'), SpiffeIdError);
    assert.throws(() => matchPathPrefix('bad domain', '/ns'), SpiffeIdError);
  });
});

describe('allowlist object forms with paths', () => {
  test('{ trustDomain, path } and { trustDomain, pathPrefix } work alone and in arrays', () => {
    const single = toMatcher({ trustDomain: 'example.org', path: '/ns/*/sa/payments' });
    assert.ok(ok(single, 'spiffe://example.org/ns/a/sa/payments'));
    assert.ok(!ok(single, 'spiffe://example.org/ns/a/sa/orders'));
    const list = toMatcher([
      'spiffe://example.org/exact',
      { trustDomain: 'partner.example' },
      { trustDomain: 'example.org', pathPrefix: '/ns/prod' },
      { trustDomain: 'example.org', path: '/ns/*/sa/payments' },
      (x) => x.path === '/custom',
    ]);
    assert.ok(ok(list, 'spiffe://example.org/exact'));
    assert.ok(ok(list, 'spiffe://partner.example/anything'));
    assert.ok(ok(list, 'spiffe://example.org/ns/prod/sa/x'));
    assert.ok(ok(list, 'spiffe://example.org/ns/dev/sa/payments'));
    assert.ok(ok(list, 'spiffe://other.org/custom'));
    assert.ok(!ok(list, 'spiffe://example.org/ns/production/sa/x'));
    assert.ok(!ok(list, 'spiffe://example.org/ns/dev/sa/orders'));
    assert.ok(!ok(list, 'spiffe://example.org/exact/child'));
  });
  test('invalid entries fail when the allowlist is built', () => {
    assert.throws(() => toMatcher([{ trustDomain: 'example.org', path: '/ns/pro*' }]), SpiffeIdError);
    assert.throws(() => toMatcher([{ trustDomain: 'example.org', pathPrefix: '' }]), SpiffeIdError);
    assert.throws(() => toMatcher({ trustDomain: 'example.org', path: '/a', pathPrefix: '/a' }), TypeError);
    assert.throws(() => toMatcher(['spiffe://example.org/ok', { nope: 1 } as never]), TypeError);
  });
  test('a throwing custom matcher in an indexed list denies, and later entries still admit', () => {
    const list = toMatcher([
      { trustDomain: 'a.org' },
      () => {
        throw new Error('boom');
      },
      (x) => x.path === '/yes',
    ]);
    assert.ok(ok(list, 'spiffe://b.org/yes'));
    assert.ok(!ok(list, 'spiffe://b.org/no'));
  });
  test('a large list with trust domain entries answers by index like the exact-ID set', () => {
    const entries: Array<string | { trustDomain: string }> = [];
    for (let i = 0; i < 10_000; i++) entries.push(`spiffe://example.org/svc/${i}`);
    for (let i = 0; i < 1_000; i++) entries.push({ trustDomain: `td${i}.example` });
    let calls = 0;
    const m = toMatcher([
      ...entries,
      () => {
        calls++;
        return false;
      },
    ]);
    assert.ok(ok(m, 'spiffe://example.org/svc/9999'));
    assert.ok(ok(m, 'spiffe://td999.example/x'));
    assert.ok(!ok(m, 'spiffe://example.org/svc/10000'));
    // Only the unmatched ID reached the custom matcher: the indexed entries were not scanned.
    assert.equal(calls, 1);
  });
});

test('nested arrays (as `...allow` decorators pass them) are flattened into the index', () => {
  const m = toMatcher([['spiffe://example.org/a', { trustDomain: 'example.org', pathPrefix: '/ns' }], []] as never);
  assert.ok(ok(m, 'spiffe://example.org/a'));
  assert.ok(ok(m, 'spiffe://example.org/ns/x'));
  assert.ok(!ok(m, 'spiffe://example.org/b'));
  assert.throws(() => toMatcher([['spiffe://bad domain/x']] as never));
});
