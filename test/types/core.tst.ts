// Type tests (tstyche): the shared vocabulary of the four adapters, from @spiffe-ts/core.
import {
  isSpiffeAuthError,
  type JwtBundleSet,
  SpiffeAuthError,
  type SpiffeAuthErrorCode,
  type SpiffeDenial,
  type SpiffeId,
  type SpiffeIdAllowlist,
  type SpiffeJwtOptions,
  TrustDomain,
} from '@spiffe-ts/core';
import { describe, expect, test } from 'tstyche';

declare const bundles: JwtBundleSet;
declare const id: SpiffeId;

describe('SpiffeAuthError', () => {
  test('fields', () => {
    expect<SpiffeAuthError['statusCode']>().type.toBe<401 | 403>();
    expect<SpiffeAuthError['status']>().type.toBe<401 | 403>();
    expect<SpiffeAuthError['headers']>().type.toBe<Readonly<Record<string, string>>>();
    expect<SpiffeAuthError['code']>().type.toBe<SpiffeAuthErrorCode>();
    expect<SpiffeAuthError['expose']>().type.toBe<true>();
    expect<SpiffeAuthError['spiffeId']>().type.toBe<SpiffeId | undefined>();
    expect<SpiffeAuthError['subject']>().type.toBe<SpiffeId | undefined>();
    expect<SpiffeAuthError>().type.toBeAssignableTo<Error>();
  });

  test('codes are the denial subset of SpiffeErrorCode', () => {
    expect<'UNAUTHORIZED_SPIFFE_ID'>().type.toBeAssignableTo<SpiffeAuthErrorCode>();
    expect<'PEER_NOT_VERIFIED'>().type.toBeAssignableTo<SpiffeAuthErrorCode>();
    expect<'BUNDLE_NOT_FOUND'>().type.not.toBeAssignableTo<SpiffeAuthErrorCode>();
    expect<'not a code'>().type.not.toBeAssignableTo<SpiffeAuthErrorCode>();
  });

  test('constructor: a denial code and a 401 or 403 status only', () => {
    expect(SpiffeAuthError).type.toBeConstructableWith('UNAUTHORIZED_SPIFFE_ID', { statusCode: 403 });
    expect(SpiffeAuthError).type.toBeConstructableWith('PEER_NOT_VERIFIED', {
      statusCode: 401,
      headers: { 'www-authenticate': 'Bearer' },
      spiffeId: id,
    });
    expect(SpiffeAuthError).type.not.toBeConstructableWith('UNAUTHORIZED_SPIFFE_ID', { statusCode: 500 });
    expect(SpiffeAuthError).type.not.toBeConstructableWith('BUNDLE_NOT_FOUND', { statusCode: 403 });
    expect(SpiffeAuthError).type.not.toBeConstructableWith('UNAUTHORIZED_SPIFFE_ID', {
      statusCode: 403,
      headers: { retry: 1 },
    });
  });

  test('isSpiffeAuthError narrows', () => {
    const err: unknown = undefined;
    if (isSpiffeAuthError(err)) expect(err).type.toBe<SpiffeAuthError>();
  });

  test('SpiffeDenial', () => {
    expect<SpiffeDenial['statusCode']>().type.toBe<401 | 403>();
    expect<SpiffeDenial['code']>().type.toBe<SpiffeAuthErrorCode>();
    expect<SpiffeDenial['spiffeId']>().type.toBe<SpiffeId | undefined>();
  });
});

describe('SpiffeIdAllowlist', () => {
  test('accepts IDs, trust domains, matchers and arrays of them', () => {
    expect<SpiffeIdAllowlist>().type.toBeAssignableFrom('spiffe://example.org/service/payments');
    expect<SpiffeIdAllowlist>().type.toBeAssignableFrom(id);
    expect<SpiffeIdAllowlist>().type.toBeAssignableFrom(TrustDomain.parse('example.org'));
    expect<SpiffeIdAllowlist>().type.toBeAssignableFrom({ trustDomain: 'example.org' });
    expect<SpiffeIdAllowlist>().type.toBeAssignableFrom((candidate: SpiffeId) => candidate.path === '/x');
    expect<SpiffeIdAllowlist>().type.toBeAssignableFrom(['spiffe://example.org/a', id, { trustDomain: 'b.org' }]);
  });

  test('rejects anything else', () => {
    expect<SpiffeIdAllowlist>().type.not.toBeAssignableFrom(42);
    expect<SpiffeIdAllowlist>().type.not.toBeAssignableFrom({ trustDomain: 42 });
    expect<SpiffeIdAllowlist>().type.not.toBeAssignableFrom({ td: 'example.org' });
    expect<SpiffeIdAllowlist>().type.not.toBeAssignableFrom([42]);
    expect<SpiffeIdAllowlist>().type.not.toBeAssignableFrom((candidate: string) => candidate === 'x');
  });
});

describe('SpiffeJwtOptions', () => {
  test('bundles and audience are required; allow, clockTolerance and realm optional', () => {
    expect<SpiffeJwtOptions>().type.toBeAssignableFrom({ bundles, audience: 'orders' });
    expect<SpiffeJwtOptions>().type.toBeAssignableFrom({
      bundles,
      audience: ['orders', 'billing'] as const,
      allow: ['spiffe://example.org/service/payments'],
      clockTolerance: 5,
      realm: 'orders',
    });
    expect<SpiffeJwtOptions>().type.not.toBeAssignableFrom({ bundles });
    expect<SpiffeJwtOptions>().type.not.toBeAssignableFrom({ audience: 'orders' });
  });

  test('a wrong type is an error', () => {
    expect(() => {
      const options: SpiffeJwtOptions = { bundles, audience: 'orders', allow: 42 };
      return options;
    }).type.toRaiseError(2322);
    expect(() => {
      const options: SpiffeJwtOptions = { bundles, audience: 42 };
      return options;
    }).type.toRaiseError(2322);
    expect(() => {
      const options: SpiffeJwtOptions = { bundles, audience: 'orders', audiences: ['x'] };
      return options;
    }).type.toRaiseError("'audiences' does not exist in type 'SpiffeJwtOptions'");
  });
});
