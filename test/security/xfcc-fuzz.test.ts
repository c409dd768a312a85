// Property/fuzz tests for the x-forwarded-client-cert parser, which reads a header anyone can send: every
// input parses or throws XfccError (never another exception, never a hang), nothing outside Envoy's grammar
// is accepted (checked against an independent regular expression written from the format), well-formed
// headers round-trip, and crafted long inputs parse in linear time. FUZZ_RUNS (default 1500) sets the runs.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { forwardedSpiffeId, MAX_XFCC_LENGTH, parseXfcc, SpiffeId, type XfccElement, XfccError } from '@spiffe-ts/core';
import fc from 'fast-check';

const RUNS = Number(process.env.FUZZ_RUNS ?? 1500);
const MAX_MS_PER_INPUT = 1000;

// The grammar as a regex, independent of the hand-written parser: pairs of a known key and a plain or
// quoted value, ";" between pairs, "," (with optional spaces or tabs) between elements.
const KEY =
  '(?:[Bb][Yy]|[Hh][Aa][Ss][Hh]|[Cc][Ee][Rr][Tt]|[Cc][Hh][Aa][Ii][Nn]|[Ss][Uu][Bb][Jj][Ee][Cc][Tt]|[Uu][Rr][Ii]|[Dd][Nn][Ss])';
const VALUE = '(?:[!#-+\\--:<>-~]+|"(?:[ !#-\\[\\]-~]|\\\\[ -~])*")';
const PAIR = `${KEY}=${VALUE}`;
const ELEMENT = `${PAIR}(?:;${PAIR})*`;
const GRAMMAR = new RegExp(`^${ELEMENT}(?:[ \\t]*,[ \\t]*${ELEMENT})*$`);

function parse(s: string): XfccElement[] | undefined {
  const t0 = performance.now();
  try {
    return parseXfcc(s);
  } catch (err) {
    assert.ok(err instanceof XfccError, `parseXfcc threw ${String(err)} for ${JSON.stringify(s.slice(0, 80))}`);
    assert.equal(err.code, 'XFCC_MALFORMED');
    return undefined;
  } finally {
    assert.ok(performance.now() - t0 < MAX_MS_PER_INPUT, 'a single input took too long');
  }
}

const pieces = fc.constantFrom(
  'By',
  'URI',
  'uri',
  'DNS',
  'Hash',
  'Subject',
  'Cert',
  'Chain',
  'Foo',
  '=',
  ';',
  ',',
  ', ',
  '"',
  '\\',
  '\\"',
  'spiffe://example.org/a',
  'x',
  ' ',
  '\t',
  '\n',
  '\u0000',
  'é',
  '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688',
);
const nearXfcc = fc.array(pieces, { maxLength: 40 }).map((a) => a.join(''));

// Structured elements and a serializer that quotes whenever a value needs it.
const plainValue = fc.stringMatching(/^[A-Za-z0-9:/._~%+-]{1,30}$/);
const anyValue = fc.string({ maxLength: 30 }).map((s) => s.replace(/[^\x20-\x7e]/g, 'x'));
const spiffeUri = fc
  .tuple(
    fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,15}$/),
    fc.array(fc.stringMatching(/^[A-Za-z0-9._-]{1,8}$/), { maxLength: 4 }),
  )
  .map(([td, segs]) => `spiffe://${td}${segs.map((s) => `/${s}`).join('')}`);
const element = fc.record(
  {
    by: fc.option(spiffeUri, { nil: undefined }),
    hash: fc.option(fc.stringMatching(/^[0-9a-f]{64}$/), { nil: undefined }),
    subject: fc.option(anyValue, { nil: undefined }),
    cert: fc.option(plainValue, { nil: undefined }),
    uri: fc.array(fc.oneof(spiffeUri, plainValue), { maxLength: 3 }),
    dns: fc.array(plainValue, { maxLength: 3 }),
  },
  { requiredKeys: ['uri', 'dns'] },
);
const quote = (v: string) => (/^[!#-+\--:<>-~]+$/.test(v) ? v : `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`);
function serialize(el: XfccElement): string | undefined {
  const pairs: string[] = [];
  for (const k of ['by', 'hash', 'cert', 'subject'] as const) {
    const v = el[k];
    if (v !== undefined)
      pairs.push(`${k === 'by' ? 'By' : k === 'hash' ? 'Hash' : k === 'cert' ? 'Cert' : 'Subject'}=${quote(v)}`);
  }
  for (const u of el.uri) pairs.push(`URI=${quote(u)}`);
  for (const d of el.dns) pairs.push(`DNS=${quote(d)}`);
  return pairs.length ? pairs.join(';') : undefined;
}
const validHeader = fc.array(element, { minLength: 1, maxLength: 4 }).map((els) =>
  els
    .map(serialize)
    .filter((x) => x !== undefined)
    .join(','),
);
// A valid header with one character inserted, replaced or deleted: near misses around every rule.
const mutated = fc
  .tuple(validHeader, fc.nat(), fc.constantFrom('"', '\\', ';', ',', '=', ' ', '\t', '\n', 'x', ''), fc.boolean())
  .map(([h, at, c, replace]) => {
    const i = h.length === 0 ? 0 : at % h.length;
    return h.slice(0, i) + c + h.slice(replace ? i + 1 : i);
  });
const strip = (el: XfccElement) => Object.fromEntries(Object.entries(el).filter(([, v]) => v !== undefined));

describe('fuzz: x-forwarded-client-cert', () => {
  test('every input parses or throws XfccError, and nothing outside the grammar is accepted', () => {
    let accepted = 0;
    fc.assert(
      fc.property(
        fc.oneof(nearXfcc, mutated, mutated, validHeader, fc.string(), fc.string({ unit: 'binary' })),
        (s) => {
          const r = parse(s);
          if (r) {
            accepted++;
            assert.ok(GRAMMAR.test(s), `accepted outside the grammar: ${JSON.stringify(s)}`);
          }
        },
      ),
      { numRuns: RUNS * 4 },
    );
    console.log(`xfcc fuzz: ${RUNS * 4} inputs, ${accepted} accepted`);
  });

  test('well-formed headers round-trip, and forwardedSpiffeId reads only the last element', () => {
    fc.assert(
      fc.property(fc.array(element, { minLength: 1, maxLength: 5 }), (els) => {
        const parts = els.map(serialize);
        fc.pre(parts.every((p) => p !== undefined));
        const header = parts.join(',');
        const parsed = parse(header);
        assert.ok(parsed, header);
        assert.deepEqual(
          parsed.map(strip),
          els.map((e) => strip(e as XfccElement)),
        );
        const last = els[els.length - 1] as XfccElement;
        let id: SpiffeId | undefined;
        try {
          id = forwardedSpiffeId(header).id;
        } catch (err) {
          assert.ok(err instanceof XfccError);
        }
        let valid = false;
        try {
          valid = last.uri.length === 1 && SpiffeId.parse(last.uri[0] as string).toString() === last.uri[0];
        } catch {
          valid = false;
        }
        assert.equal(id !== undefined, valid, header);
        if (id) assert.equal(id.toString(), last.uri[0]);
      }),
      { numRuns: RUNS },
    );
  });

  test('crafted long inputs are bounded and linear', () => {
    const near = MAX_XFCC_LENGTH - 16;
    const inputs = [
      `Subject="${'\\"'.repeat(near / 2 - 8)}";URI=spiffe://a/b`,
      `URI=${'a'.repeat(near)}`,
      `${'DNS=a;'.repeat(near / 6)}URI=spiffe://a/b`,
      `${'URI=spiffe://a/b,'.repeat(31)}URI=spiffe://a/b`,
      `Subject="${'a;,='.repeat(near / 4 - 4)}"`,
      `"${'\\'.repeat(near)}`,
      'URI=x'.padEnd(MAX_XFCC_LENGTH + 1, ';'),
    ];
    for (const s of inputs) parse(s);
  });
});
