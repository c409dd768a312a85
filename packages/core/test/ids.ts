// Shorthands the matcher tests share (match.test.ts, match-path.test.ts).
import assert from 'node:assert/strict';
import { type SpiffeErrorCode, SpiffeId, SpiffeIdError } from '@spiffe-ts/core';

/** A parsed SPIFFE ID (throws on a bad one, so a typo in a test fails loudly). */
export const id = (s: string): SpiffeId => SpiffeId.parse(s);

/** Asserts that `fn` throws a `SpiffeIdError` with this `code`. */
export function throwsIdError(fn: () => unknown, code: SpiffeErrorCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SpiffeIdError, String(err));
    assert.equal(err.code, code);
    return true;
  });
}
