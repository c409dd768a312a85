import { HUFFMAN_CODES, HUFFMAN_LENGTHS, STATIC_TABLE } from './hpack-tables.js';

/**
 * HPACK (RFC 7541) for the Workload API transport: a full decoder (dynamic table, Huffman) for what the
 * server sends, and an encoder that only emits literals without indexing, which every decoder accepts and
 * which leaves the server's view of our dynamic table empty.
 */

/** A malformed header block: a connection error (COMPRESSION_ERROR) for HTTP/2. */
export class HpackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HpackError';
  }
}

// Huffman decoding tree, built once: node i has children at tree[2i] (bit 0) and tree[2i+1] (bit 1); a
// value < 0 is a leaf for symbol -(value + 1), 0 is "no child". 256 symbols plus EOS.
const TREE = (() => {
  const tree: number[] = [0, 0];
  let nodes = 1;
  const add = (code: number, len: number, symbol: number) => {
    let node = 0;
    for (let bit = len - 1; bit >= 0; bit--) {
      const slot = 2 * node + ((code >>> bit) & 1);
      if (bit === 0) {
        tree[slot] = -(symbol + 1);
      } else {
        if (tree[slot] === 0) {
          tree[slot] = nodes++;
          tree.push(0, 0);
        }
        node = tree[slot] as number;
      }
    }
  };
  for (let s = 0; s < 256; s++) add(HUFFMAN_CODES[s] as number, HUFFMAN_LENGTHS[s] as number, s);
  add(0x3fffffff, 30, 256);
  return Int32Array.from(tree);
})();

function huffmanDecode(src: Buffer, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe((end - start) * 2); // the shortest code is 5 bits: at most 8/5 symbols per octet
  let n = 0;
  let node = 0;
  let pendingBits = 0; // bits read since the last symbol
  let allOnes = true;
  for (let i = start; i < end; i++) {
    const byte = src[i] as number;
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >>> bit) & 1;
      const next = TREE[2 * node + b] as number;
      pendingBits++;
      if (b === 0) allOnes = false;
      if (next < 0) {
        const symbol = -next - 1;
        if (symbol === 256) throw new HpackError('Huffman string contains EOS');
        out[n++] = symbol;
        node = 0;
        pendingBits = 0;
        allOnes = true;
      } else if (next === 0) {
        throw new HpackError('invalid Huffman code');
      } else {
        node = next;
      }
    }
  }
  // RFC 7541 5.2: padding is the most significant bits of EOS (all ones), strictly shorter than 8 bits.
  if (pendingBits > 7 || !allOnes) throw new HpackError('invalid Huffman padding');
  return out.subarray(0, n);
}

/** Header fields of one block, in order. Names are as sent (HTTP/2 requires lower case). */
export type HeaderList = [name: string, value: string][];

interface Entry {
  name: string;
  value: string;
  size: number;
}

export class HpackDecoder {
  // Newest first, as HPACK indexes it (index 62 is entries[0]).
  #entries: Entry[] = [];
  #size = 0;
  #maxSize: number;
  readonly #limit: number;
  readonly #maxListBytes: number;

  /**
   * `tableSize`: our SETTINGS_HEADER_TABLE_SIZE, the largest table the peer may ask for.
   * `maxListBytes`: the largest decoded header list accepted (names + values + 32 per field, as in 6.5.2).
   */
  constructor(tableSize = 4096, maxListBytes = 64 * 1024) {
    this.#maxSize = tableSize;
    this.#limit = tableSize;
    this.#maxListBytes = maxListBytes;
  }

  /** The dynamic table's current size in octets (RFC 7541 4.1). */
  get tableSize(): number {
    return this.#size;
  }

  decode(block: Buffer): HeaderList {
    const out: HeaderList = [];
    let pos = 0;
    let listBytes = 0;
    let fieldsSeen = false;

    const int = (prefixBits: number): number => {
      const max = (1 << prefixBits) - 1;
      let value = (block[pos++] as number) & max;
      if (value < max) return value;
      let shift = 0;
      for (;;) {
        if (pos >= block.length) throw new HpackError('truncated integer');
        const b = block[pos++] as number;
        value += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if (value > 0xffffffff) throw new HpackError('integer too large');
        if ((b & 0x80) === 0) return value;
      }
    };
    const str = (): string => {
      if (pos >= block.length) throw new HpackError('truncated string');
      const huffman = ((block[pos] as number) & 0x80) !== 0;
      const len = int(7);
      if (pos + len > block.length) throw new HpackError('truncated string');
      const start = pos;
      pos += len;
      return huffman ? huffmanDecode(block, start, pos).toString('latin1') : block.toString('latin1', start, pos);
    };
    const lookup = (index: number): [string, string] => {
      if (index === 0) throw new HpackError('index 0');
      if (index <= STATIC_TABLE.length) {
        const e = STATIC_TABLE[index - 1] as readonly [string, string];
        return [e[0], e[1]];
      }
      const e = this.#entries[index - STATIC_TABLE.length - 1];
      if (!e) throw new HpackError(`index ${index} is not in the table`);
      return [e.name, e.value];
    };
    const emit = (name: string, value: string) => {
      listBytes += name.length + value.length + 32;
      if (listBytes > this.#maxListBytes) throw new HpackError('header list too large');
      out.push([name, value]);
      fieldsSeen = true;
    };

    while (pos < block.length) {
      const b = block[pos] as number;
      if (b & 0x80) {
        const [name, value] = lookup(int(7));
        emit(name, value);
      } else if (b & 0x40) {
        const index = int(6);
        const name = index === 0 ? str() : lookup(index)[0];
        const value = str();
        this.#insert(name, value);
        emit(name, value);
      } else if (b & 0x20) {
        // A size update must come before the first field of a block (4.2) and within our setting.
        if (fieldsSeen) throw new HpackError('table size update after a header field');
        const size = int(5);
        if (size > this.#limit) throw new HpackError(`table size ${size} above the limit ${this.#limit}`);
        this.#maxSize = size;
        this.#evict(0);
      } else {
        // Literal without indexing (0000) or never indexed (0001): not added to the table.
        const index = int(4);
        const name = index === 0 ? str() : lookup(index)[0];
        emit(name, str());
      }
    }
    return out;
  }

  #insert(name: string, value: string): void {
    const size = name.length + value.length + 32; // latin1: one octet per character
    if (size > this.#maxSize) {
      // 4.4: an entry larger than the table empties it and is not added.
      this.#entries = [];
      this.#size = 0;
      return;
    }
    this.#evict(size);
    this.#entries.unshift({ name, value, size });
    this.#size += size;
  }

  #evict(room: number): void {
    while (this.#size + room > this.#maxSize) {
      const e = this.#entries.pop() as Entry;
      this.#size -= e.size;
    }
  }
}

function encodeInt(out: number[], value: number, prefixBits: number, flags: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(flags | value);
    return;
  }
  out.push(flags | max);
  let rest = value - max;
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

function encodeString(out: number[], s: string): void {
  const bytes = Buffer.from(s, 'latin1');
  encodeInt(out, bytes.length, 7, 0);
  for (const b of bytes) out.push(b);
}

/**
 * Encodes fields as literals without indexing (RFC 7541 6.2.2), the name by static index where there is one,
 * no Huffman. Values must be latin1 (HTTP/2 field values are octets; ours are ASCII).
 */
export function encodeLiterals(fields: readonly (readonly [string, string])[]): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    const index = STATIC_TABLE.findIndex(([n]) => n === name) + 1;
    if (index > 0) {
      encodeInt(out, index, 4, 0);
    } else {
      out.push(0);
      encodeString(out, name);
    }
    encodeString(out, value);
  }
  return Buffer.from(out);
}
