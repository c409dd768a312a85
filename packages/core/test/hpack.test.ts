// HPACK for the Workload API transport, checked against RFC 7541 Appendix C (the same header lists decoded
// with and without Huffman coding, dynamic table contents and sizes, evictions) and against malformed input.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeLiterals, HpackDecoder, HpackError } from '../src/workloadapi/hpack.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
type Step = { block: string; fields: [string, string][]; tableSize: number };

function series(tableSize: number, steps: Step[]): void {
  const d = new HpackDecoder(tableSize);
  for (const [i, step] of steps.entries()) {
    assert.deepEqual(d.decode(hex(step.block)), step.fields, `step ${i}`);
    assert.equal(d.tableSize, step.tableSize, `table size after step ${i}`);
  }
}

const request1: [string, string][] = [
  [':method', 'GET'],
  [':scheme', 'http'],
  [':path', '/'],
  [':authority', 'www.example.com'],
];
const request2: [string, string][] = [...request1, ['cache-control', 'no-cache']];
const request3: [string, string][] = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':path', '/index.html'],
  [':authority', 'www.example.com'],
  ['custom-key', 'custom-value'],
];
const date21 = 'Mon, 21 Oct 2013 20:13:21 GMT';
const response1: [string, string][] = [
  [':status', '302'],
  ['cache-control', 'private'],
  ['date', date21],
  ['location', 'https://www.example.com'],
];
const response2: [string, string][] = [[':status', '307'], ...response1.slice(1)];
const response3: [string, string][] = [
  [':status', '200'],
  ['cache-control', 'private'],
  ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'],
  ['location', 'https://www.example.com'],
  ['content-encoding', 'gzip'],
  ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'],
];

/** A literal field "x" whose value is the given Huffman-coded bytes. */
const huffmanValue = (bytes: number[]) => Buffer.from([0x00, 0x01, 0x78, 0x80 | bytes.length, ...bytes]);

describe('HPACK decoder (RFC 7541 Appendix C)', () => {
  // Each example is three header blocks on one connection; the RFC gives each list encoded both ways.
  const requests = { fields: [request1, request2, request3], tableSizes: [57, 110, 164], table: 4096 };
  const responses = { fields: [response1, response2, response3], tableSizes: [222, 222, 215], table: 256 };
  const examples: [string, typeof requests, string[]][] = [
    [
      'C.3: requests without Huffman coding, sharing the dynamic table',
      requests,
      [
        '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
        '8286 84be 5808 6e6f 2d63 6163 6865',
        '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
      ],
    ],
    [
      'C.4: the same requests with Huffman coding',
      requests,
      [
        '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
        '8286 84be 5886 a8eb 1064 9cbf',
        '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
      ],
    ],
    [
      'C.5: responses with a 256-octet table, evicting entries',
      responses,
      [
        `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
         6c65 2e63 6f6d`,
        '4803 3330 37c1 c0bf',
        `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
         54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
         5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
         3d31`,
      ],
    ],
    [
      'C.6: the same responses with Huffman coding',
      responses,
      [
        `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
        '4883 640e ffc1 c0bf',
        `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
         9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
      ],
    ],
  ];
  for (const [name, expected, blocks] of examples) {
    test(name, () =>
      series(
        expected.table,
        blocks.map((block, i) => ({
          block,
          fields: expected.fields[i] as [string, string][],
          tableSize: expected.tableSizes[i] as number,
        })),
      ),
    );
  }

  test('a literal never indexed (C.2.3) and one without indexing (C.2.2) stay out of the table', () => {
    const d = new HpackDecoder();
    assert.deepEqual(d.decode(hex('1008 7061 7373 776f 7264 0673 6563 7265 74')), [['password', 'secret']]);
    assert.deepEqual(d.decode(hex('040c 2f73 616d 706c 652f 7061 7468')), [[':path', '/sample/path']]);
    assert.equal(d.tableSize, 0);
  });

  test('a table size update shrinks the table (evicting) and may not exceed our setting', () => {
    const d = new HpackDecoder(4096);
    d.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572')); // C.2.1: 55 octets
    assert.equal(d.tableSize, 55);
    assert.deepEqual(d.decode(Buffer.from([0x20])), []); // size 0: everything evicted
    assert.equal(d.tableSize, 0);
    assert.throws(() => d.decode(Buffer.from([0xbe])), HpackError);
    // Back to 4096 (an integer past the 5-bit prefix), then a field is indexed again.
    d.decode(
      Buffer.from([0x3f, 0xe1, 0x1f, ...hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572')]),
    );
    assert.deepEqual(d.decode(Buffer.from([0xbe])), [['custom-key', 'custom-header']]);
  });
});

describe('HPACK decoder rejects malformed blocks with HpackError', () => {
  const rejects = (block: Buffer, message: RegExp, d = new HpackDecoder()) =>
    assert.throws(
      () => d.decode(block),
      (err: unknown) => err instanceof HpackError && message.test(err.message),
    );

  test('indexes 0 and past the tables', () => {
    rejects(Buffer.from([0x80]), /index 0/);
    rejects(Buffer.from([0xbe]), /index 62 is not in the table/); // empty dynamic table
  });
  test('Huffman padding longer than 7 bits, not all ones, or containing EOS', () => {
    rejects(huffmanValue([0xff]), /padding/); // 8 bits of padding
    rejects(huffmanValue([0x1f, 0xff]), /padding/); // "a" then a whole octet of padding
    rejects(huffmanValue([0x1f, 0xff, 0xff, 0xff]), /padding/);
    rejects(huffmanValue([0x52, 0xbc, 0x30, 0xff, 0xff, 0xff, 0xff]), /padding|EOS/); // ends inside a symbol
    rejects(huffmanValue([0x00]), /padding/); // "0" (00000) then 000: zeros are not EOS padding
    rejects(huffmanValue([0xff, 0xff, 0xff, 0xff, 0xfc]), /EOS/);
  });
  test('truncated integers and strings, integers past 32 bits', () => {
    rejects(Buffer.from([0xff]), /truncated integer/);
    rejects(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]), /integer too large/);
    rejects(Buffer.from([0x00, 0x05, 0x61]), /truncated string/);
    rejects(Buffer.from([0x00]), /truncated string/);
  });
  test('a table size update above our setting, or after a field', () => {
    rejects(Buffer.from([0x3f, 0xe2, 0x1f]), /above the limit/); // 4097 > 4096
    rejects(Buffer.from([0x82, 0x20]), /after a header field/);
  });
  test('a header list over the limit', () => {
    const d = new HpackDecoder(4096, 100);
    const big = encodeLiterals([['x-big', 'v'.repeat(80)]]);
    rejects(big, /header list too large/, d);
  });
});

describe('HPACK encoder', () => {
  test('literals without indexing decode to the same fields and leave no table state', () => {
    const fields: [string, string][] = [
      [':method', 'POST'],
      [':path', '/SpiffeWorkloadAPI/FetchJWTSVID'],
      ['workload.spiffe.io', 'true'],
      ['x-long', 'y'.repeat(300)], // a length past the 7-bit prefix
    ];
    const block = encodeLiterals(fields);
    assert.equal(block[0], 0x02, ':method by its static name index, literal without indexing');
    const d = new HpackDecoder();
    assert.deepEqual(d.decode(block), fields);
    assert.equal(d.tableSize, 0);
  });
});
