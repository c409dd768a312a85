// Conformance tests for the SPIFFE ID standard (SPIFFE ID and trust domain parsing and building).
// Vectors mirror go-spiffe's spiffeid package tests (id_test.go, trustdomain_test.go, path_test.go).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  MAX_SPIFFE_ID_LENGTH,
  MAX_TRUST_DOMAIN_LENGTH,
  SpiffeError,
  type SpiffeErrorCode,
  SpiffeId,
  SpiffeIdError,
  TrustDomain,
  toSpiffeId,
  toTrustDomain,
  validatePath,
} from '@spiffe-ts/core';

/** Asserts that fn throws a SpiffeIdError with exactly this code. */
function throwsCode(fn: () => unknown, code: SpiffeErrorCode, label?: string): void {
  assert.throws(
    fn,
    (err: unknown) => {
      assert.ok(err instanceof SpiffeIdError, `${label ?? ''}: expected SpiffeIdError, got ${String(err)}`);
      assert.ok(err instanceof SpiffeError);
      assert.equal(err.code, code, `${label ?? ''}: ${err.message}`);
      return true;
    },
    label,
  );
}

// Characters the standard allows (go-spiffe: isValidTrustDomainChar / isValidPathSegmentChar).
const TD_CHARS = new Set('abcdefghijklmnopqrstuvwxyz0123456789.-_');
const PATH_CHARS = new Set('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_');

// Every code point 0..255, plus a few beyond Latin-1 (non-ASCII must be refused everywhere).
const ALL_CHARS: string[] = [
  ...Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)),
  '\u00e9', // e acute
  '\u0131', // dotless i: uppercases to "I"
  '\u212a', // Kelvin sign: lowercases to "k"
  '\u2028', // line separator
  '\u{1f600}', // astral (surrogate pair)
];

function show(c: string): string {
  return `U+${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')} ${JSON.stringify(c)}`;
}

describe('SpiffeId.parse: valid IDs', () => {
  const valid: Array<[string, string, string]> = [
    ['spiffe://trustdomain', 'trustdomain', ''],
    ['spiffe://example.org', 'example.org', ''],
    ['spiffe://example.org/path', 'example.org', '/path'],
    ['spiffe://example.org/path/element', 'example.org', '/path/element'],
    ['spiffe://example.org/ns/default/sa/web', 'example.org', '/ns/default/sa/web'],
    ['spiffe://a', 'a', ''],
    ['spiffe://0', '0', ''],
    ['spiffe://my-td_1.example.org/x', 'my-td_1.example.org', '/x'],
    ['spiffe://-.-_./-', '-.-_.', '/-'],
    ['spiffe://example.org/UPPER/Case/Path', 'example.org', '/UPPER/Case/Path'],
    // Dots inside segments are fine; only "." and ".." are dot segments.
    ['spiffe://trustdomain/.path', 'trustdomain', '/.path'],
    ['spiffe://trustdomain/..path', 'trustdomain', '/..path'],
    ['spiffe://trustdomain/path.', 'trustdomain', '/path.'],
    ['spiffe://trustdomain/path..', 'trustdomain', '/path..'],
    ['spiffe://trustdomain/...', 'trustdomain', '/...'],
    ['spiffe://trustdomain/a/.../b', 'trustdomain', '/a/.../b'],
    ['spiffe://trustdomain/_/-/0', 'trustdomain', '/_/-/0'],
  ];
  for (const [input, td, path] of valid) {
    test(`accepts ${input}`, () => {
      const id = SpiffeId.parse(input);
      assert.equal(id.toString(), input);
      assert.equal(String(id), input);
      assert.equal(id.trustDomain.name, td);
      assert.equal(id.path, path);
      assert.ok(id.trustDomain instanceof TrustDomain);
      assert.ok(id.memberOf(td));
    });
  }
});

describe('SpiffeId.parse: invalid IDs', () => {
  const invalid: Array<[string, SpiffeErrorCode]> = [
    ['', 'SPIFFEID_EMPTY'],
    // scheme
    ['://trustdomain/path', 'SPIFFEID_WRONG_SCHEME'],
    ['trustdomain/path', 'SPIFFEID_WRONG_SCHEME'],
    ['example.org', 'SPIFFEID_WRONG_SCHEME'],
    ['/path', 'SPIFFEID_WRONG_SCHEME'],
    ['spiffe', 'SPIFFEID_WRONG_SCHEME'],
    ['spiffe:', 'SPIFFEID_WRONG_SCHEME'],
    ['spiffe:/', 'SPIFFEID_WRONG_SCHEME'],
    ['spiffe:/trustdomain/path', 'SPIFFEID_WRONG_SCHEME'],
    ['spiffe:trustdomain/path', 'SPIFFEID_WRONG_SCHEME'],
    ['spiffe//trustdomain/path', 'SPIFFEID_WRONG_SCHEME'],
    ['SPIFFE://trustdomain/path', 'SPIFFEID_WRONG_SCHEME'],
    ['Spiffe://trustdomain/path', 'SPIFFEID_WRONG_SCHEME'],
    ['spiffes://trustdomain/path', 'SPIFFEID_WRONG_SCHEME'],
    ['http://trustdomain/path', 'SPIFFEID_WRONG_SCHEME'],
    ['https://example.org/path', 'SPIFFEID_WRONG_SCHEME'],
    [' spiffe://trustdomain/path', 'SPIFFEID_WRONG_SCHEME'],
    ['urn:spiffe:trustdomain', 'SPIFFEID_WRONG_SCHEME'],
    // trust domain
    ['spiffe://', 'SPIFFEID_MISSING_TRUST_DOMAIN'],
    ['spiffe:///', 'SPIFFEID_MISSING_TRUST_DOMAIN'],
    ['spiffe:///path', 'SPIFFEID_MISSING_TRUST_DOMAIN'],
    ['spiffe://Trustdomain/path', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
    ['spiffe://EXAMPLE.ORG', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
    ['spiffe://example.org:8080/path', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
    ['spiffe://example.org:', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
    ['spiffe://user@example.org/path', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
    ['spiffe://user:password@example.org/path', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
    ['spiffe://example.org?query', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
    ['spiffe://example.org#fragment', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
    ['spiffe://exa%41mple.org', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
    ['spiffe://[::1]/path', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
    ['spiffe://example org', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
    ['spiffe://exämple.org', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
    ['spiffe://example.org\\path', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
    // path
    ['spiffe://trustdomain/', 'SPIFFEID_TRAILING_SLASH'],
    ['spiffe://trustdomain/path/', 'SPIFFEID_TRAILING_SLASH'],
    ['spiffe://trustdomain/a/b/', 'SPIFFEID_TRAILING_SLASH'],
    ['spiffe://trustdomain//', 'SPIFFEID_EMPTY_SEGMENT'],
    ['spiffe://trustdomain//path', 'SPIFFEID_EMPTY_SEGMENT'],
    ['spiffe://trustdomain/path//other', 'SPIFFEID_EMPTY_SEGMENT'],
    ['spiffe://trustdomain/path//', 'SPIFFEID_EMPTY_SEGMENT'],
    ['spiffe://trustdomain/.', 'SPIFFEID_DOT_SEGMENT'],
    ['spiffe://trustdomain/./path', 'SPIFFEID_DOT_SEGMENT'],
    ['spiffe://trustdomain/path/./other', 'SPIFFEID_DOT_SEGMENT'],
    ['spiffe://trustdomain/path/.', 'SPIFFEID_DOT_SEGMENT'],
    ['spiffe://trustdomain/..', 'SPIFFEID_DOT_SEGMENT'],
    ['spiffe://trustdomain/../path', 'SPIFFEID_DOT_SEGMENT'],
    ['spiffe://trustdomain/path/../other', 'SPIFFEID_DOT_SEGMENT'],
    ['spiffe://trustdomain/path/..', 'SPIFFEID_DOT_SEGMENT'],
    ['spiffe://trustdomain/path?query', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ['spiffe://trustdomain/path?', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ['spiffe://trustdomain/path#fragment', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ['spiffe://trustdomain/path#', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ['spiffe://trustdomain/path%20with%20spaces', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ['spiffe://trustdomain/%2e', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ['spiffe://trustdomain/%2F', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ['spiffe://trustdomain/path with spaces', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ['spiffe://trustdomain/path:8080', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ['spiffe://trustdomain/user@host', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ['spiffe://trustdomain/ns~1', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ['spiffe://trustdomain/päth', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ['spiffe://trustdomain/path\\other', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ['spiffe://trustdomain/path\n', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
  ];
  for (const [input, code] of invalid) {
    test(`rejects ${JSON.stringify(input)} with ${code}`, () => {
      throwsCode(() => SpiffeId.parse(input), code, input);
      assert.equal(SpiffeId.tryParse(input), undefined);
    });
  }

  test('non-string input: SPIFFEID_NOT_STRING', () => {
    for (const v of [undefined, null, 42, true, {}, [], Symbol('x'), new String('spiffe://example.org')]) {
      throwsCode(() => SpiffeId.parse(v as unknown as string), 'SPIFFEID_NOT_STRING', String(typeof v));
      assert.equal(SpiffeId.tryParse(v), undefined);
    }
    // A SpiffeId object is not a string either.
    throwsCode(
      () => SpiffeId.parse(SpiffeId.parse('spiffe://example.org') as unknown as string),
      'SPIFFEID_NOT_STRING',
    );
  });
});

describe('SpiffeId.parse: every character in the trust domain and the path', () => {
  test('trust domain: allowed characters accepted, every other one SPIFFEID_BAD_TRUST_DOMAIN_CHAR', () => {
    let accepted = 0;
    for (const c of ALL_CHARS) {
      if (c === '/') continue; // starts the path
      const input = `spiffe://trustdomain${c}`;
      if (TD_CHARS.has(c)) {
        const id = SpiffeId.parse(input);
        assert.equal(id.trustDomain.name, `trustdomain${c}`, show(c));
        assert.equal(id.path, '');
        accepted++;
      } else {
        throwsCode(() => SpiffeId.parse(input), 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR', show(c));
      }
    }
    assert.equal(accepted, TD_CHARS.size);
  });

  test('trust domain: the disallowed character may come first or in the middle', () => {
    for (const c of ALL_CHARS) {
      if (c === '/' || TD_CHARS.has(c)) continue;
      throwsCode(() => SpiffeId.parse(`spiffe://${c}trustdomain/path`), 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR', show(c));
      throwsCode(() => SpiffeId.parse(`spiffe://trust${c}domain/path`), 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR', show(c));
    }
  });

  test('path: allowed characters accepted, every other one SPIFFEID_BAD_PATH_SEGMENT_CHAR', () => {
    let accepted = 0;
    for (const c of ALL_CHARS) {
      if (c === '/') continue; // segment separator, covered by the slash vectors
      const input = `spiffe://trustdomain/path${c}`;
      if (PATH_CHARS.has(c)) {
        const id = SpiffeId.parse(input);
        assert.equal(id.path, `/path${c}`, show(c));
        accepted++;
      } else {
        throwsCode(() => SpiffeId.parse(input), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR', show(c));
        throwsCode(() => SpiffeId.parse(`spiffe://trustdomain/${c}/path`), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR', show(c));
      }
    }
    assert.equal(accepted, PATH_CHARS.size);
  });
});

describe('length limits', () => {
  test(`trust domain of ${MAX_TRUST_DOMAIN_LENGTH} bytes is accepted, one more is SPIFFEID_TRUST_DOMAIN_TOO_LONG`, () => {
    assert.equal(MAX_TRUST_DOMAIN_LENGTH, 255);
    const max = 'a'.repeat(MAX_TRUST_DOMAIN_LENGTH);
    assert.equal(SpiffeId.parse(`spiffe://${max}/p`).trustDomain.name, max);
    assert.equal(TrustDomain.parse(max).name, max);
    throwsCode(() => SpiffeId.parse(`spiffe://${max}a/p`), 'SPIFFEID_TRUST_DOMAIN_TOO_LONG');
    throwsCode(() => TrustDomain.parse(`${max}a`), 'SPIFFEID_TRUST_DOMAIN_TOO_LONG');
    throwsCode(() => SpiffeId.fromPath(`${max}a`, '/p'), 'SPIFFEID_TRUST_DOMAIN_TOO_LONG');
  });

  test(`ID of ${MAX_SPIFFE_ID_LENGTH} bytes is accepted, one more is SPIFFEID_TOO_LONG`, () => {
    assert.equal(MAX_SPIFFE_ID_LENGTH, 2048);
    const prefix = 'spiffe://example.org/';
    const max = prefix + 'a'.repeat(MAX_SPIFFE_ID_LENGTH - prefix.length);
    assert.equal(max.length, MAX_SPIFFE_ID_LENGTH);
    assert.equal(SpiffeId.parse(max).toString(), max);
    throwsCode(() => SpiffeId.parse(`${max}a`), 'SPIFFEID_TOO_LONG');
    // Builders enforce the same limit.
    const path = max.slice('spiffe://example.org'.length);
    assert.equal(SpiffeId.fromPath('example.org', path).toString(), max);
    throwsCode(() => SpiffeId.fromPath('example.org', `${path}a`), 'SPIFFEID_TOO_LONG');
    throwsCode(() => SpiffeId.fromSegments('example.org', `${path.slice(1)}a`), 'SPIFFEID_TOO_LONG');
    throwsCode(() => SpiffeId.parse(max).appendSegments('b'), 'SPIFFEID_TOO_LONG');
    throwsCode(() => SpiffeId.parse('spiffe://example.org').appendSegments('a'.repeat(2048)), 'SPIFFEID_TOO_LONG');
  });
});

describe('TrustDomain', () => {
  test('parse of a name', () => {
    for (const name of ['trustdomain', 'example.org', 'a', 'my-td_1.example.org', '0.0.0.0']) {
      const td = TrustDomain.parse(name);
      assert.equal(td.name, name);
      assert.equal(td.toString(), name);
      assert.equal(td.idString(), `spiffe://${name}`);
      assert.equal(td.id().toString(), `spiffe://${name}`);
      assert.equal(td.id().path, '');
      assert.equal(JSON.stringify({ td }), JSON.stringify({ td: name }));
    }
  });

  test('parse of a SPIFFE ID takes its trust domain (go-spiffe TrustDomainFromString)', () => {
    assert.equal(TrustDomain.parse('spiffe://example.org').name, 'example.org');
    assert.equal(TrustDomain.parse('spiffe://example.org/path/element').name, 'example.org');
    // ...but the whole ID must be valid.
    throwsCode(() => TrustDomain.parse('spiffe://example.org/'), 'SPIFFEID_TRAILING_SLASH');
    throwsCode(() => TrustDomain.parse('spiffe://example.org/a//b'), 'SPIFFEID_EMPTY_SEGMENT');
    throwsCode(() => TrustDomain.parse('spiffe://example.org/a?b'), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR');
    throwsCode(() => TrustDomain.parse('spiffe://'), 'SPIFFEID_MISSING_TRUST_DOMAIN');
    throwsCode(() => TrustDomain.parse('spiffe://Example.org'), 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR');
    throwsCode(() => TrustDomain.parse('http://example.org'), 'SPIFFEID_WRONG_SCHEME');
    throwsCode(() => TrustDomain.parse('SPIFFE://example.org'), 'SPIFFEID_WRONG_SCHEME');
  });

  test('invalid names', () => {
    const cases: Array<[unknown, SpiffeErrorCode]> = [
      ['', 'SPIFFEID_MISSING_TRUST_DOMAIN'],
      ['Example.org', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
      ['example.org:8080', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
      ['user@example.org', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
      ['example.org/path', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
      ['example.org/', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
      [' example.org', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
      ['exa%6dple.org', 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR'],
      [undefined, 'SPIFFEID_NOT_STRING'],
      [null, 'SPIFFEID_NOT_STRING'],
      [7, 'SPIFFEID_NOT_STRING'],
    ];
    for (const [input, code] of cases) {
      throwsCode(() => TrustDomain.parse(input as string), code, String(input));
    }
  });

  test('every character as a name', () => {
    for (const c of ALL_CHARS) {
      const name = `trustdomain${c}`;
      if (TD_CHARS.has(c)) assert.equal(TrustDomain.parse(name).name, name);
      else throwsCode(() => TrustDomain.parse(name), 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR', show(c));
    }
  });

  test('equality', () => {
    const a = TrustDomain.parse('example.org');
    assert.ok(a.equals(TrustDomain.parse('example.org')));
    assert.ok(a.equals(TrustDomain.parse('spiffe://example.org/x')));
    assert.ok(a.equals('example.org'));
    assert.ok(!a.equals(TrustDomain.parse('example.com')));
    assert.ok(!a.equals('example.com'));
    assert.ok(!a.equals('Example.org'));
    assert.ok(!a.equals('spiffe://example.org'));
  });

  test('toTrustDomain passes instances through and validates strings', () => {
    const td = TrustDomain.parse('example.org');
    assert.equal(toTrustDomain(td), td);
    assert.equal(toTrustDomain('example.org').name, 'example.org');
    throwsCode(() => toTrustDomain('BAD'), 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR');
  });

  test('is frozen', () => {
    const td = TrustDomain.parse('example.org');
    assert.ok(Object.isFrozen(td));
    assert.throws(() => {
      (td as unknown as { name: string }).name = 'evil.org';
    }, TypeError);
    assert.equal(td.name, 'example.org');
  });
});

describe('SpiffeId accessors and builders', () => {
  test('toString, trustDomain, path, toJSON', () => {
    const id = SpiffeId.parse('spiffe://example.org/service/orders');
    assert.equal(id.toString(), 'spiffe://example.org/service/orders');
    assert.equal(`${id}`, 'spiffe://example.org/service/orders');
    assert.equal(id.trustDomain.name, 'example.org');
    assert.ok(id.trustDomain.equals(TrustDomain.parse('example.org')));
    assert.equal(id.path, '/service/orders');
    assert.equal(JSON.stringify({ id }), '{"id":"spiffe://example.org/service/orders"}');
    const root = SpiffeId.parse('spiffe://example.org');
    assert.equal(root.path, '');
    assert.equal(root.toString(), 'spiffe://example.org');
  });

  test('memberOf', () => {
    const id = SpiffeId.parse('spiffe://example.org/service');
    assert.equal(id.memberOf('example.org'), true);
    assert.equal(id.memberOf(TrustDomain.parse('example.org')), true);
    assert.equal(id.memberOf('spiffe://example.org'), true);
    assert.equal(id.memberOf('example.com'), false);
    assert.equal(id.memberOf(TrustDomain.parse('org')), false);
    assert.equal(id.memberOf('sub.example.org'), false);
    assert.equal(SpiffeId.parse('spiffe://sub.example.org/x').memberOf('example.org'), false);
    throwsCode(() => id.memberOf('Example.org'), 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR');
  });

  test('fromSegments', () => {
    assert.equal(SpiffeId.fromSegments('example.org').toString(), 'spiffe://example.org');
    assert.equal(SpiffeId.fromSegments('example.org', 'a').toString(), 'spiffe://example.org/a');
    assert.equal(
      SpiffeId.fromSegments(TrustDomain.parse('example.org'), 'service', 'orders').toString(),
      'spiffe://example.org/service/orders',
    );
    assert.equal(SpiffeId.fromSegments('example.org', '...', '.a', 'B_-').path, '/.../.a/B_-');
    throwsCode(() => SpiffeId.fromSegments('example.org', ''), 'SPIFFEID_EMPTY_SEGMENT');
    throwsCode(() => SpiffeId.fromSegments('example.org', 'a', ''), 'SPIFFEID_EMPTY_SEGMENT');
    throwsCode(() => SpiffeId.fromSegments('example.org', '.'), 'SPIFFEID_DOT_SEGMENT');
    throwsCode(() => SpiffeId.fromSegments('example.org', '..'), 'SPIFFEID_DOT_SEGMENT');
    throwsCode(() => SpiffeId.fromSegments('example.org', 'a/b'), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR');
    throwsCode(() => SpiffeId.fromSegments('example.org', '/a'), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR');
    throwsCode(() => SpiffeId.fromSegments('example.org', 'a?b'), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR');
    throwsCode(() => SpiffeId.fromSegments('example.org', 'a%2Fb'), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR');
    throwsCode(() => SpiffeId.fromSegments('example.org', 1 as unknown as string), 'SPIFFEID_NOT_STRING');
    throwsCode(() => SpiffeId.fromSegments('Example.org', 'a'), 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR');
    throwsCode(() => SpiffeId.fromSegments('', 'a'), 'SPIFFEID_MISSING_TRUST_DOMAIN');
    for (const c of ALL_CHARS) {
      if (PATH_CHARS.has(c)) assert.equal(SpiffeId.fromSegments('td', `x${c}`).path, `/x${c}`);
      else throwsCode(() => SpiffeId.fromSegments('td', `x${c}`), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR', show(c));
    }
  });

  test('fromPath', () => {
    assert.equal(SpiffeId.fromPath('example.org', '').toString(), 'spiffe://example.org');
    assert.equal(SpiffeId.fromPath('example.org', '/a/b').toString(), 'spiffe://example.org/a/b');
    assert.equal(SpiffeId.fromPath(TrustDomain.parse('example.org'), '/a').toString(), 'spiffe://example.org/a');
    const cases: Array<[string, SpiffeErrorCode]> = [
      ['a', 'SPIFFEID_NO_LEADING_SLASH'],
      ['a/b', 'SPIFFEID_NO_LEADING_SLASH'],
      ['/', 'SPIFFEID_TRAILING_SLASH'],
      ['/a/', 'SPIFFEID_TRAILING_SLASH'],
      ['//', 'SPIFFEID_EMPTY_SEGMENT'],
      ['//a', 'SPIFFEID_EMPTY_SEGMENT'],
      ['/a//b', 'SPIFFEID_EMPTY_SEGMENT'],
      ['/.', 'SPIFFEID_DOT_SEGMENT'],
      ['/..', 'SPIFFEID_DOT_SEGMENT'],
      ['/a/./b', 'SPIFFEID_DOT_SEGMENT'],
      ['/a/../b', 'SPIFFEID_DOT_SEGMENT'],
      ['/a/..', 'SPIFFEID_DOT_SEGMENT'],
      ['/a?b', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
      ['/a#b', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
      ['/a%20b', 'SPIFFEID_BAD_PATH_SEGMENT_CHAR'],
    ];
    for (const [path, code] of cases) {
      throwsCode(() => SpiffeId.fromPath('example.org', path), code, path);
      throwsCode(() => validatePath(path), code, path);
    }
    throwsCode(() => SpiffeId.fromPath('example.org', undefined as unknown as string), 'SPIFFEID_NOT_STRING');
    throwsCode(() => SpiffeId.fromPath('EXAMPLE.org', '/a'), 'SPIFFEID_BAD_TRUST_DOMAIN_CHAR');
    for (const c of ALL_CHARS) {
      if (c === '/') continue;
      if (PATH_CHARS.has(c)) assert.equal(SpiffeId.fromPath('td', `/p${c}`).path, `/p${c}`);
      else throwsCode(() => SpiffeId.fromPath('td', `/p${c}`), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR', show(c));
    }
  });

  test('appendSegments returns a new ID and leaves the original alone', () => {
    const base = SpiffeId.parse('spiffe://example.org/ns');
    const child = base.appendSegments('default', 'sa', 'web');
    assert.equal(child.toString(), 'spiffe://example.org/ns/default/sa/web');
    assert.equal(base.toString(), 'spiffe://example.org/ns');
    assert.equal(base.appendSegments().toString(), 'spiffe://example.org/ns');
    assert.equal(SpiffeId.parse('spiffe://example.org').appendSegments('a').toString(), 'spiffe://example.org/a');
    throwsCode(() => base.appendSegments(''), 'SPIFFEID_EMPTY_SEGMENT');
    throwsCode(() => base.appendSegments('..'), 'SPIFFEID_DOT_SEGMENT');
    throwsCode(() => base.appendSegments('a/b'), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR');
    throwsCode(() => base.appendSegments('ok', 'not ok'), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR');
  });

  test('equality', () => {
    const a = SpiffeId.parse('spiffe://example.org/a');
    assert.ok(a.equals(SpiffeId.parse('spiffe://example.org/a')));
    assert.ok(a.equals('spiffe://example.org/a'));
    assert.ok(a.equals(SpiffeId.fromSegments('example.org', 'a')));
    assert.ok(!a.equals(SpiffeId.parse('spiffe://example.org/A')));
    assert.ok(!a.equals(SpiffeId.parse('spiffe://example.org/a/b')));
    assert.ok(!a.equals(SpiffeId.parse('spiffe://example.org')));
    assert.ok(!a.equals(SpiffeId.parse('spiffe://example.com/a')));
    assert.ok(!a.equals('spiffe://example.org/a/'));
    assert.notEqual(a, SpiffeId.parse('spiffe://example.org/a'));
  });

  test('toSpiffeId passes instances through and validates strings', () => {
    const id = SpiffeId.parse('spiffe://example.org/a');
    assert.equal(toSpiffeId(id), id);
    assert.equal(toSpiffeId('spiffe://example.org/a').toString(), 'spiffe://example.org/a');
    throwsCode(() => toSpiffeId('spiffe://example.org/a/'), 'SPIFFEID_TRAILING_SLASH');
  });

  test('tryParse', () => {
    assert.equal(SpiffeId.tryParse('spiffe://example.org/a')?.toString(), 'spiffe://example.org/a');
    assert.equal(SpiffeId.tryParse('spiffe://example.org/a/'), undefined);
    assert.equal(SpiffeId.tryParse(undefined), undefined);
  });

  test('is frozen', () => {
    const id = SpiffeId.parse('spiffe://example.org/a');
    assert.ok(Object.isFrozen(id));
    assert.ok(Object.isFrozen(id.trustDomain));
    assert.throws(() => {
      (id as unknown as { path: string }).path = '/evil';
    }, TypeError);
    assert.throws(() => {
      (id as unknown as { trustDomain: TrustDomain }).trustDomain = TrustDomain.parse('evil.org');
    }, TypeError);
    assert.throws(() => {
      (id as unknown as { extra: number }).extra = 1;
    }, TypeError);
    assert.equal(id.toString(), 'spiffe://example.org/a');
    for (const built of [
      SpiffeId.fromPath('example.org', '/a'),
      SpiffeId.fromSegments('example.org', 'a'),
      id.appendSegments('b'),
      TrustDomain.parse('example.org').id(),
    ]) {
      assert.ok(Object.isFrozen(built));
      assert.ok(Object.isFrozen(built.trustDomain));
    }
  });

  test('errors are SpiffeIdError with a name and a message', () => {
    try {
      SpiffeId.parse('spiffe://example.org/a//b');
      assert.fail('expected a throw');
    } catch (err) {
      assert.ok(err instanceof SpiffeIdError);
      assert.equal(err.name, 'SpiffeIdError');
      assert.equal(err.code, 'SPIFFEID_EMPTY_SEGMENT');
      assert.match(err.message, /empty segment/);
    }
  });
});

describe('randomized round trips (seeded)', () => {
  // mulberry32: small deterministic PRNG so failures reproduce.
  function rng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  const tdAlphabet = [...TD_CHARS];
  const pathAlphabet = [...PATH_CHARS];
  const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const word = (r: () => number, alphabet: string[], min: number, max: number): string =>
    Array.from({ length: min + Math.floor(r() * (max - min + 1)) }, () => pick(r, alphabet)).join('');

  test('generated valid IDs parse, round-trip and agree with the builders', () => {
    const r = rng(0x5eed);
    for (let i = 0; i < 500; i++) {
      const td = word(r, tdAlphabet, 1, 20);
      const segments: string[] = [];
      const n = Math.floor(r() * 5);
      for (let j = 0; j < n; j++) {
        let s = word(r, pathAlphabet, 1, 12);
        if (s === '.' || s === '..') s += 'x';
        segments.push(s);
      }
      const str = `spiffe://${td}${segments.map((s) => `/${s}`).join('')}`;
      const id = SpiffeId.parse(str);
      assert.equal(id.toString(), str);
      assert.equal(id.trustDomain.name, td);
      assert.ok(SpiffeId.fromSegments(td, ...segments).equals(id), str);
      assert.ok(SpiffeId.fromPath(td, id.path).equals(id), str);
      assert.ok(SpiffeId.parse(id.toString()).equals(id));
      assert.equal(TrustDomain.parse(str).name, td);
    }
  });

  test('one bad character anywhere in a generated ID is rejected', () => {
    const r = rng(0xbad);
    const bad = ALL_CHARS.filter((c) => c !== '/' && !PATH_CHARS.has(c));
    for (let i = 0; i < 300; i++) {
      const td = word(r, tdAlphabet, 1, 12);
      const seg = word(r, pathAlphabet, 2, 12);
      const at = Math.floor(r() * (seg.length + 1));
      const c = pick(r, bad);
      const input = `spiffe://${td}/${seg.slice(0, at)}${c}${seg.slice(at)}`;
      throwsCode(() => SpiffeId.parse(input), 'SPIFFEID_BAD_PATH_SEGMENT_CHAR', input);
    }
  });
});
