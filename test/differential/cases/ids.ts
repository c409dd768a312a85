// SPIFFE ID cases: parsing (FromString / SpiffeId.parse), trust domains (TrustDomainFromString /
// TrustDomain.parse) and the builders (FromSegments / fromSegments, FromPath / fromPath).
import { type Case, Rng } from './types.js';

const TD_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789.-_';
const SEG_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_';
// Characters that are never valid anywhere in a SPIFFE ID, ASCII and not.
const BAD_CHARS = [
  ' ',
  '!',
  '"',
  '#',
  '$',
  '%',
  '&',
  "'",
  '(',
  ')',
  '*',
  '+',
  ',',
  ':',
  ';',
  '<',
  '=',
  '>',
  '?',
  '@',
  '[',
  '\\',
  ']',
  '^',
  '`',
  '{',
  '|',
  '}',
  '~',
  '\t',
  '\n',
  '\r',
  '\0',
  '\x7f',
  'é',
  'ü',
  'ß',
  'İ',
  'ſ',
  'K',
  'Ａ',
  '。',
  '\u00a0',
  '\u200b',
  '\ufeff',
  '😀',
  '中',
];

function validTd(rng: Rng): string {
  return rng.pick([
    () => rng.string('abcdefghijklmnopqrstuvwxyz', 1, 12),
    () => `${rng.string('abcdefghijklmnopqrstuvwxyz0123456789', 1, 10)}.${rng.pick(['org', 'com', 'test', 'local'])}`,
    () => rng.string(TD_CHARS, 1, 30),
    () => `${rng.int(0, 255)}.${rng.int(0, 255)}.${rng.int(0, 255)}.${rng.int(0, 255)}`,
  ])();
}

function validSegment(rng: Rng): string {
  for (;;) {
    const s = rng.next() < 0.1 ? rng.pick(['.a', '..a', '...', 'a.', '-', '_', 'A']) : rng.string(SEG_CHARS, 1, 16);
    if (s !== '.' && s !== '..') return s;
  }
}

function validPath(rng: Rng): string {
  const n = rng.int(0, 5);
  let p = '';
  for (let i = 0; i < n; i++) p += `/${validSegment(rng)}`;
  return p;
}

function insertAt(s: string, at: number, text: string): string {
  return s.slice(0, at) + text + s.slice(at);
}

/** One mutation of a valid SPIFFE ID (which may or may not keep it valid: both sides must agree). */
function mutate(rng: Rng, td: string, path: string): { name: string; value: string } {
  const id = `spiffe://${td}${path}`;
  const tdEnd = 9 + td.length;
  const pos = rng.int(0, id.length);
  const inTd = rng.int(9, tdEnd);
  const inPath = path === '' ? id.length : rng.int(tdEnd + 1, id.length);
  const ops: Array<[string, () => string]> = [
    ['scheme-upper', () => `SPIFFE://${td}${path}`],
    ['scheme-mixed', () => `Spiffe://${td}${path}`],
    [
      'scheme-other',
      () => `${rng.pick(['http', 'https', 'spiffes', 'spiff', 'urn', 'file', 'sparfe'])}://${td}${path}`,
    ],
    ['scheme-one-slash', () => `spiffe:/${td}${path}`],
    ['scheme-no-slash', () => `spiffe:${td}${path}`],
    ['scheme-three-slashes', () => `spiffe:///${td}${path}`],
    ['scheme-missing', () => `${td}${path}`],
    ['leading-space', () => ` ${id}`],
    ['trailing-space', () => `${id} `],
    ['trailing-newline', () => `${id}\n`],
    ['td-upper', () => `spiffe://${td.toUpperCase()}${path}`],
    ['td-upper-one', () => insertAt(id, inTd, rng.pick(['A', 'Z', 'Q']))],
    ['td-port', () => `spiffe://${td}:${rng.pick(['443', '8080', '0', ''])}${path}`],
    ['td-userinfo', () => `spiffe://${rng.pick(['user', 'user:pass', ''])}@${td}${path}`],
    ['td-ipv6', () => `spiffe://[${rng.pick(['::1', 'fe80::1', '2001:db8::'])}]${path}`],
    ['td-percent', () => `spiffe://${td.replace(/./, (c) => `%${c.charCodeAt(0).toString(16)}`)}${path}`],
    ['td-bad-char', () => insertAt(id, inTd, rng.pick(BAD_CHARS))],
    ['td-empty', () => `spiffe://${path}`],
    ['td-dots', () => `spiffe://${rng.pick(['.', '..', '...', '-', '_', 'a..b', '.a', 'a.'])}${path}`],
    ['query', () => `${id}?${rng.pick(['', 'a=b', 'x'])}`],
    ['fragment', () => `${id}#${rng.pick(['', 'frag', 'a/b'])}`],
    ['path-percent', () => `${id}/${rng.pick(['%2F', '%41', '%2e', '%2E%2E', '%00', '%'])}`],
    ['path-percent-mid', () => insertAt(id, inPath, '%20')],
    ['dot-segment', () => `${id}/${rng.pick(['.', '..'])}`],
    ['dot-segment-mid', () => `spiffe://${td}/${rng.pick(['.', '..'])}${path}`],
    ['dot-like-segment', () => `${id}/${rng.pick(['.a', '..a', '...', 'a.', 'a..'])}`],
    ['empty-segment', () => `spiffe://${td}/${path === '' ? '' : `/${path.slice(1)}`}`],
    ['double-slash', () => insertAt(id, inPath, '/')],
    ['trailing-slash', () => `${id}/`],
    ['trailing-slashes', () => `${id}//`],
    ['path-bad-char', () => insertAt(id, inPath, rng.pick(BAD_CHARS))],
    ['path-upper', () => `${id}/${rng.string('ABCDEFGHIJKLMNOPQRSTUVWXYZ', 1, 8)}`],
    ['backslash-sep', () => `${id}\\${validSegment(rng)}`],
    ['any-bad-char', () => insertAt(id, pos, rng.pick(BAD_CHARS))],
    ['delete-char', () => id.slice(0, pos) + id.slice(pos + 1)],
    ['duplicate-char', () => insertAt(id, pos, id[pos] ?? '/')],
    ['swap-case', () => id.replace(/[a-z]/, (c) => c.toUpperCase())],
    ['unicode-lookalike', () => id.replace(/[ks]/, (c) => (c === 'k' ? 'K' : 'ſ'))],
    ['nested-id', () => `${id}/spiffe://${td}`],
    ['valid-extension', () => `${id}/${validSegment(rng)}`],
  ];
  const [name, fn] = rng.pick(ops);
  return { name, value: fn() };
}

function repeatTo(len: number, unit: string): string {
  return unit.repeat(Math.ceil(len / unit.length)).slice(0, len);
}

/** IDs and trust domains at and around the 2048-byte and 255-byte limits. */
function lengthCases(): Array<{ name: string; value: string }> {
  const out: Array<{ name: string; value: string }> = [];
  for (const n of [1, 63, 64, 254, 255, 256, 300, 1000, 2039]) {
    out.push({ name: `td-length-${n <= 255 ? 'ok' : 'over'}`, value: `spiffe://${repeatTo(n, 'abcdefghij.')}` });
  }
  for (const total of [2046, 2047, 2048, 2049, 2050, 2100, 4096, 10000]) {
    const head = 'spiffe://example.org';
    // Path of segments "abcdefg" up to the wanted total length; the last char is never a slash.
    let path = repeatTo(total - head.length, '/abcdefg');
    if (path.endsWith('/')) path = `${path.slice(0, -1)}x`;
    out.push({ name: `id-length-${total <= 2048 ? 'ok' : 'over'}`, value: head + path });
    // The same length with a long trust domain instead (within 255) and a long single segment.
    out.push({
      name: `id-length-${total <= 2048 ? 'ok' : 'over'}`,
      value: `spiffe://${repeatTo(200, 'td')}/${repeatTo(total - 210, 'S')}`,
    });
  }
  return out;
}

/** Vectors from the SPIFFE ID standard and go-spiffe's tests (see the spec digest §7.1). */
const FIXED = [
  'spiffe://trustdomain',
  'spiffe://trustdomain/path',
  'spiffe://example.org/a/b/c',
  'spiffe://example.org/Path/UPPER_case-1.2',
  'spiffe://trust_domain-1.example.com/x',
  'spiffe://1.2.3.4/x',
  'spiffe://trustdomain/.path',
  'spiffe://trustdomain/..path',
  'spiffe://trustdomain/...',
  'spiffe://a',
  'spiffe://example.org/9eebccd2-12bf-40a6-b262-65fe0487d453',
  '',
  's',
  'spiffe:/',
  'Spiffe://trustdomain',
  'SPIFFE://trustdomain/path',
  'spiffe:/trustdomain/path',
  ' spiffe://trustdomain',
  'spiffe://',
  'spiffe:///',
  'spiffe:///path',
  'spiffe://Trustdomain/path',
  'spiffe://trustdomain:8080/path',
  'spiffe://user@trustdomain/path',
  'spiffe://[::1]/path',
  'spiffe://trust$domain',
  'spiffe://%62%61%64/path',
  'spiffe://%F0%9F%A4%AF/path',
  'spiffe://trustdomain?query',
  'spiffe://trustdomain#frag',
  'spiffe://trustdomain/',
  'spiffe://trustdomain/path/',
  'spiffe://trustdomain//',
  'spiffe://trustdomain//path',
  'spiffe://trustdomain/a//b',
  'spiffe://trustdomain/.',
  'spiffe://trustdomain/..',
  'spiffe://trustdomain/./path',
  'spiffe://trustdomain/path/./other',
  'spiffe://trustdomain/path/..',
  'spiffe://trustdomain/../path',
  'spiffe://trustdomain/path/../other',
  'spiffe://trustdomain/%62%61%64',
  'spiffe://trustdomain/path$',
  'spiffe://trustdomain/path?query=1',
  'spiffe://trustdomain/path#frag',
  'spiffe://trustdomain/a b',
  'spiffe://trustdomain/café',
  'spiffe://-',
  'spiffe://.',
  'spiffe://..',
  'spiffe://_/_',
  'spiffe://a..b/c',
  'spiffe://td/-',
  'spiffe://td/_._',
];

export function idCases(seed: number): Case[] {
  const rng = new Rng(seed);
  const cases: Case[] = [];
  const add = (kind: Case['kind'], cls: string, fields: Partial<Case>) =>
    cases.push({ id: `${kind}/${cls}/${cases.length}`, kind, class: `${kind}/${cls}`, ...fields });

  for (const v of FIXED) add('id', 'vector', { input: v });
  // Every byte value (as one character) in the trust domain and in the path.
  for (let c = 0; c < 256; c++) {
    const ch = String.fromCharCode(c);
    add('id', 'char-in-td', { input: `spiffe://trust${ch}domain/path` });
    add('id', 'char-in-path', { input: `spiffe://trustdomain/pa${ch}th` });
    add('id', 'char-ends-td', { input: `spiffe://trustdomain${ch}` });
    add('td', 'char', { input: `trust${ch}domain` });
    add('segments', 'char', { td: 'example.org', segments: ['a', `b${ch}c`] });
  }
  for (const { name, value } of lengthCases()) {
    add('id', name, { input: value });
    add('td', name, { input: value });
    add('td', name, { input: value.slice(9).split('/')[0] });
  }
  for (let i = 0; i < 900; i++) {
    add('id', 'valid', { input: `spiffe://${validTd(rng)}${validPath(rng)}` });
  }
  for (let i = 0; i < 2000; i++) {
    const m = mutate(rng, validTd(rng), validPath(rng));
    add('id', `mutation-${m.name}`, { input: m.value });
  }
  // Trust domains: names, IDs (their trust domain is taken) and their mutations.
  for (let i = 0; i < 300; i++) {
    const td = validTd(rng);
    const r = rng.next();
    if (r < 0.3) add('td', 'valid', { input: td });
    else if (r < 0.5) add('td', 'from-id', { input: `spiffe://${td}${validPath(rng)}` });
    else if (r < 0.8) {
      const m = mutate(rng, td, validPath(rng));
      add('td', `id-mutation-${m.name}`, { input: m.value });
    } else {
      const bad = rng.pick([
        td.toUpperCase(),
        `${td}/`,
        `${td}:443`,
        `${td}/path`,
        `user@${td}`,
        `${td}:`,
        `${td}:/`,
        `:/${td}`,
        `spiffe:/${td}`,
        `${td} `,
        `[${td}]`,
        '',
        'spiffe://',
        `${td}?`,
        `${td}#`,
        `SPIFFE://${td}`,
      ]);
      add('td', 'name-mutation', { input: bad });
    }
  }
  // Builders: segments and paths, valid and not.
  for (let i = 0; i < 250; i++) {
    const segs = Array.from({ length: rng.int(0, 4) }, () => validSegment(rng));
    const r = rng.next();
    if (r < 0.4) add('segments', 'valid', { td: validTd(rng), segments: segs });
    else {
      const bad = rng.pick(['', '.', '..', '/', '/foo', 'foo/', 'a/b', '$', 'a b', '%41', 'é', '?', '#', 'A:B']);
      segs.splice(rng.int(0, segs.length), 0, bad);
      add('segments', 'invalid-segment', { td: validTd(rng), segments: segs });
    }
  }
  for (let i = 0; i < 250; i++) {
    const path = validPath(rng);
    const r = rng.next();
    if (r < 0.4) add('path', 'valid', { td: validTd(rng), path });
    else {
      const m = mutate(rng, 'td', path);
      add('path', `mutation-${m.name}`, { td: validTd(rng), path: m.value.replace(/^spiffe:\/\/td/, '') });
    }
  }
  for (const [td, path] of [
    ['example.org', 'foo'],
    ['example.org', '/'],
    ['example.org', ''],
    ['example.org', '//'],
  ] as const) {
    add('path', 'vector', { td, path });
  }
  add('path', 'id-length-ok', { td: 'example.org', path: `/${'x'.repeat(2000)}` });
  add('path', 'id-length-over', { td: 'example.org', path: `/${'x'.repeat(2100)}` });
  add('path', 'td-length-over', { td: 'a'.repeat(256), path: '/x' });
  return cases;
}
