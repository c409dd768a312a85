/** One differential case, as both sides read it (the Go program reads the same JSON line). */
export interface Case {
  /** Unique, stable name: `<category>/<generator>/<n>`. */
  id: string;
  kind: 'id' | 'td' | 'segments' | 'path' | 'chain' | 'svid' | 'token' | 'bundle';
  /** Case class used to match documented differences (e.g. `chain/intermediate-no-key-usage`). */
  class: string;
  input?: string;
  td?: string;
  segments?: string[];
  path?: string;
  /** Base64 DER certificates, leaf first. */
  chain?: string[];
  /** Trust domain name -> base64 DER X.509 authorities. */
  roots?: Record<string, string[]>;
  /** RFC 3339 verification time for chains. */
  now?: string;
  /** Base64 PKCS#8 DER private key of the leaf (svid cases). */
  key?: string;
  token?: string;
  /** Trust domain name -> JWKS text. */
  jwks?: Record<string, string>;
  audience?: string[];
  /** SPIFFE bundle document text. */
  doc?: string;
  /**
   * The verdict a standard explicitly asks for, where it does (with the clause). When both sides agree with
   * each other but not with it, the run reports a shared deviation (a note, not a failure).
   */
  spec?: { verdict: 'accept' | 'reject'; clause: string };
}

/** A side's verdict on one case: accepted with a canonical result string, or refused. */
export interface Verdict {
  id: string;
  ok: boolean;
  result?: string;
  error?: string;
}

/** Small seeded PRNG (mulberry32): the same seed gives the same cases on every run. */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)] as T;
  }
  string(alphabet: string, min: number, max: number): string {
    const n = this.int(min, max);
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(this.next() * alphabet.length)];
    return s;
  }
}
