// SPIFFE ID matchers and the allowlist forms every adapter accepts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  AuthorizationError,
  authorize,
  matchAll,
  matchAny,
  matchId,
  matchMemberOf,
  matchOneOf,
  matchSome,
  matchWhen,
  SpiffeError,
  type SpiffeIdMatcher,
  TrustDomain,
  toMatcher,
} from '@spiffe-ts/core';
import { id, throwsIdError } from './ids.js';

const ORDERS = id('spiffe://example.org/service/orders');
const PAYMENTS = id('spiffe://example.org/service/payments');
const TD_ROOT = id('spiffe://example.org');
const PARTNER = id('spiffe://partner.example/service/orders');
const SUBDOMAIN = id('spiffe://sub.example.org/service/orders');
const ALL = [ORDERS, PAYMENTS, TD_ROOT, PARTNER, SUBDOMAIN];

/** The IDs of ALL the matcher accepts, as strings (so assertions show which ones). */
function accepted(m: SpiffeIdMatcher): string[] {
  return ALL.filter((x) => m(x)).map(String);
}

describe('matcher constructors', () => {
  test('matchAny accepts every ID', () => {
    assert.deepEqual(accepted(matchAny()), ALL.map(String));
  });

  test('matchId accepts exactly one ID (string or SpiffeId)', () => {
    assert.deepEqual(accepted(matchId('spiffe://example.org/service/orders')), [String(ORDERS)]);
    assert.deepEqual(accepted(matchId(ORDERS)), [String(ORDERS)]);
    assert.deepEqual(accepted(matchId('spiffe://example.org')), [String(TD_ROOT)]);
    // No prefix or case-insensitive matching.
    assert.equal(matchId('spiffe://example.org/service')(ORDERS), false);
    assert.equal(matchId('spiffe://example.org/service/orders')(id('spiffe://example.org/service/orders/x')), false);
    assert.equal(matchId('spiffe://example.org/service/Orders')(ORDERS), false);
  });

  test('matchId rejects an invalid ID at construction', () => {
    throwsIdError(() => matchId('spiffe://example.org/service/'), 'SPIFFEID_TRAILING_SLASH');
    throwsIdError(() => matchId('example.org'), 'SPIFFEID_WRONG_SCHEME');
    throwsIdError(() => matchId('spiffe://EXAMPLE.org/a'), 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR');
    throwsIdError(() => matchId(''), 'SPIFFEID_EMPTY');
    throwsIdError(() => matchId(undefined as unknown as string), 'SPIFFEID_NOT_STRING');
  });

  test('matchOneOf accepts any listed ID', () => {
    assert.deepEqual(accepted(matchOneOf(ORDERS, 'spiffe://partner.example/service/orders')), [
      String(ORDERS),
      String(PARTNER),
    ]);
    assert.deepEqual(accepted(matchOneOf(PAYMENTS)), [String(PAYMENTS)]);
    assert.deepEqual(accepted(matchOneOf(PAYMENTS, PAYMENTS)), [String(PAYMENTS)]);
  });

  test('matchOneOf with no IDs denies everything', () => {
    assert.deepEqual(accepted(matchOneOf()), []);
  });

  test('matchOneOf rejects any invalid entry at construction', () => {
    throwsIdError(() => matchOneOf(ORDERS, 'spiffe://example.org/a?b'), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR');
    throwsIdError(() => matchOneOf('spiffe://example.org/../x'), 'SPIFFEID_DOT_SEGMENT');
  });

  test('matchMemberOf accepts every ID of the trust domain and nothing else', () => {
    const expected = [String(ORDERS), String(PAYMENTS), String(TD_ROOT)];
    assert.deepEqual(accepted(matchMemberOf('example.org')), expected);
    assert.deepEqual(accepted(matchMemberOf(TrustDomain.parse('example.org'))), expected);
    assert.deepEqual(accepted(matchMemberOf('spiffe://example.org')), expected);
    assert.deepEqual(accepted(matchMemberOf('partner.example')), [String(PARTNER)]);
    // Not a suffix match: sub.example.org is a different trust domain.
    assert.deepEqual(accepted(matchMemberOf('sub.example.org')), [String(SUBDOMAIN)]);
    assert.deepEqual(accepted(matchMemberOf('org')), []);
  });

  test('matchMemberOf rejects an invalid trust domain at construction', () => {
    throwsIdError(() => matchMemberOf('Example.org'), 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR');
    throwsIdError(() => matchMemberOf(''), 'SPIFFEID_MISSING_TRUST_DOMAIN');
    throwsIdError(() => matchMemberOf('example.org:443'), 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR');
    throwsIdError(() => matchMemberOf('https://example.org'), 'SPIFFEID_WRONG_SCHEME');
  });

  test('matchWhen uses the predicate and receives the ID', () => {
    const seen: string[] = [];
    const m = matchWhen((x) => {
      seen.push(x.toString());
      return x.path.startsWith('/service/');
    });
    assert.deepEqual(accepted(m), [String(ORDERS), String(PAYMENTS), String(PARTNER), String(SUBDOMAIN)]);
    assert.deepEqual(seen, ALL.map(String));
  });

  test('matchWhen: a predicate that throws denies', () => {
    const m = matchWhen(() => {
      throw new Error('boom');
    });
    assert.deepEqual(accepted(m), []);
    assert.doesNotThrow(() => m(ORDERS));
    // ...and authorize turns that into an AuthorizationError, not the predicate's error.
    assert.throws(() => authorize(m, ORDERS), AuthorizationError);
  });

  test('matchWhen: only a literal `true` allows (truthy values and promises deny)', () => {
    for (const v of [1, 'yes', {}, [], Promise.resolve(true), undefined, null]) {
      const m = matchWhen(() => v as unknown as boolean);
      assert.equal(m(ORDERS), false, String(v));
    }
    assert.equal(matchWhen(() => true)(ORDERS), true);
  });
});

describe('composition', () => {
  test('matchAll requires every matcher', () => {
    const m = matchAll(
      matchMemberOf('example.org'),
      matchWhen((x) => x.path.startsWith('/service/')),
    );
    assert.deepEqual(accepted(m), [String(ORDERS), String(PAYMENTS)]);
    assert.deepEqual(accepted(matchAll(matchAny())), ALL.map(String));
    assert.deepEqual(accepted(matchAll(matchAny(), matchOneOf())), []);
  });

  test('matchSome requires at least one matcher', () => {
    const m = matchSome(matchId(ORDERS), matchMemberOf('partner.example'));
    assert.deepEqual(accepted(m), [String(ORDERS), String(PARTNER)]);
    assert.deepEqual(accepted(matchSome(matchOneOf(), matchId(PAYMENTS))), [String(PAYMENTS)]);
  });

  test('matchAll and matchSome with no matchers deny everything', () => {
    assert.deepEqual(accepted(matchAll()), []);
    assert.deepEqual(accepted(matchSome()), []);
  });

  test('nested composition', () => {
    // (example.org AND not payments) OR partner's orders
    const m = matchSome(
      matchAll(
        matchMemberOf('example.org'),
        matchWhen((x) => !x.equals(PAYMENTS)),
      ),
      matchId('spiffe://partner.example/service/orders'),
    );
    assert.deepEqual(accepted(m), [String(ORDERS), String(TD_ROOT), String(PARTNER)]);
  });

  test('a throwing predicate inside a composition denies without hiding the other branches', () => {
    const boom = matchWhen(() => {
      throw new Error('boom');
    });
    assert.deepEqual(accepted(matchSome(boom, matchId(ORDERS))), [String(ORDERS)]);
    assert.deepEqual(accepted(matchAll(matchAny(), boom)), []);
  });
});

describe('toMatcher', () => {
  test('a function is used as is', () => {
    const fn: SpiffeIdMatcher = (x) => x.equals(PAYMENTS);
    assert.equal(toMatcher(fn), fn);
  });

  test('a string or SpiffeId is an exact ID', () => {
    assert.deepEqual(accepted(toMatcher('spiffe://example.org/service/orders')), [String(ORDERS)]);
    assert.deepEqual(accepted(toMatcher(PARTNER)), [String(PARTNER)]);
    assert.deepEqual(accepted(toMatcher('spiffe://example.org')), [String(TD_ROOT)]);
  });

  test('a bare trust domain name as a string is not silently widened: it throws', () => {
    throwsIdError(() => toMatcher('example.org'), 'SPIFFEID_WRONG_SCHEME');
  });

  test('a TrustDomain or { trustDomain } is every member', () => {
    const expected = [String(ORDERS), String(PAYMENTS), String(TD_ROOT)];
    assert.deepEqual(accepted(toMatcher(TrustDomain.parse('example.org'))), expected);
    assert.deepEqual(accepted(toMatcher({ trustDomain: 'example.org' })), expected);
    assert.deepEqual(accepted(toMatcher({ trustDomain: TrustDomain.parse('example.org') })), expected);
  });

  test('an array is any of its entries', () => {
    const m = toMatcher([
      'spiffe://example.org/service/orders',
      { trustDomain: 'partner.example' },
      (x) => x.trustDomain.name === 'sub.example.org',
    ]);
    assert.deepEqual(accepted(m), [String(ORDERS), String(PARTNER), String(SUBDOMAIN)]);
    assert.deepEqual(accepted(toMatcher([PAYMENTS, TrustDomain.parse('partner.example')])), [
      String(PAYMENTS),
      String(PARTNER),
    ]);
    // IDs only (a set lookup inside): exactly those IDs, given as SpiffeId or string.
    assert.deepEqual(accepted(toMatcher([ORDERS, String(PAYMENTS)])), [String(ORDERS), String(PAYMENTS)]);
  });

  test('an empty array denies everything', () => {
    assert.deepEqual(accepted(toMatcher([])), []);
  });

  test('invalid entries throw at construction, not at match time', () => {
    throwsIdError(() => toMatcher('spiffe://example.org/'), 'SPIFFEID_TRAILING_SLASH');
    throwsIdError(() => toMatcher(['spiffe://example.org/ok', 'spiffe://example.org/bad/']), 'SPIFFEID_TRAILING_SLASH');
    throwsIdError(() => toMatcher({ trustDomain: 'Example.org' }), 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR');
    throwsIdError(() => toMatcher([{ trustDomain: '' }]), 'SPIFFEID_MISSING_TRUST_DOMAIN');
    throwsIdError(() => toMatcher({ trustDomain: 5 as unknown as string }), 'SPIFFEID_NOT_STRING');
  });

  test('values of the wrong shape throw TypeError', () => {
    for (const bad of [null, undefined, 42, true, {}, { id: 'spiffe://example.org/a' }, Symbol('x')]) {
      assert.throws(() => toMatcher(bad as unknown as string), TypeError, String(bad));
    }
    assert.throws(() => toMatcher([ORDERS, 42] as unknown as string[]), TypeError);
    assert.throws(() => toMatcher([null] as unknown as string[]), TypeError);
  });
});

describe('authorize', () => {
  test('returns quietly when the matcher accepts', () => {
    assert.equal(authorize(matchId(ORDERS), ORDERS), undefined);
    assert.equal(authorize(toMatcher({ trustDomain: 'example.org' }), PAYMENTS), undefined);
  });

  test('throws AuthorizationError UNAUTHORIZED_SPIFFE_ID when it does not', () => {
    for (const m of [matchId(ORDERS), matchOneOf(), matchAll(), toMatcher([]), matchMemberOf('example.org')]) {
      assert.throws(
        () => authorize(m, PARTNER),
        (err: unknown) => {
          assert.ok(err instanceof AuthorizationError);
          assert.ok(err instanceof SpiffeError);
          assert.equal(err.code, 'UNAUTHORIZED_SPIFFE_ID');
          assert.equal(err.spiffeId, 'spiffe://partner.example/service/orders');
          assert.equal(err.name, 'AuthorizationError');
          assert.match(err.message, /spiffe:\/\/partner\.example\/service\/orders/);
          return true;
        },
      );
    }
  });
});
