// Property/fuzz tests for every parser that reads untrusted input: SPIFFE IDs, bundle JSON, PEM/DER and
// JWTs. Each input must either parse or throw the parser's typed error (never another exception, never a
// hang), and nothing invalid may be accepted: SPIFFE IDs are checked against an independent oracle written
// from the SPIFFE ID standard, mutated certificates and tokens must never verify.
// FUZZ_RUNS (default 1500) sets the runs per property; the totals are printed.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  BundleError,
  CertificateError,
  insecureParseJwtSvid,
  JwtBundle,
  JwtBundleSet,
  JwtSvidError,
  parseAndValidateJwtSvid,
  parseCertificates,
  parsePrivateKey,
  SpiffeBundle,
  SpiffeError,
  SpiffeId,
  SpiffeIdError,
  TrustDomain,
  verifyX509Svid,
  X509Bundle,
  X509BundleSet,
  X509Svid,
  X509SvidError,
} from '@spiffe-ts/core';
import { DevCa } from '@spiffe-ts/dev-server';
import fc from 'fast-check';

const RUNS = Number(process.env.FUZZ_RUNS ?? 1500);
// No single input may take this long: a parser that is superlinear on crafted input fails here.
const MAX_MS_PER_INPUT = 1000;

interface Tally {
  inputs: number;
  accepted: number;
  rejected: number;
  maxMs: number;
}
const tallies = new Map<string, Tally>();

function record(name: string, startedAt: number, accepted: boolean): boolean {
  const t = tallies.get(name) ?? { inputs: 0, accepted: 0, rejected: 0, maxMs: 0 };
  tallies.set(name, t);
  t.inputs++;
  if (accepted) t.accepted++;
  else t.rejected++;
  const ms = performance.now() - startedAt;
  t.maxMs = Math.max(t.maxMs, ms);
  if (ms > MAX_MS_PER_INPUT) throw new Error(`${name}: one input took ${ms.toFixed(0)} ms`);
  return accepted;
}

function expectTyped(name: string, err: unknown, errorClass: new (...a: never[]) => SpiffeError): void {
  if (!(err instanceof errorClass) || typeof err.code !== 'string') {
    throw new Error(`${name}: unexpected ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
  }
}

/** Runs `fn` on one input: true if it parsed, false on the expected typed error; anything else fails. */
function attempt(name: string, errorClass: new (...a: never[]) => SpiffeError, fn: () => unknown): boolean {
  const start = performance.now();
  let ok = true;
  try {
    fn();
  } catch (err) {
    expectTyped(name, err, errorClass);
    ok = false;
  }
  return record(name, start, ok);
}

async function attemptAsync(name: string, fn: () => Promise<unknown>): Promise<boolean> {
  const start = performance.now();
  let ok = true;
  try {
    await fn();
  } catch (err) {
    expectTyped(name, err, JwtSvidError);
    ok = false;
  }
  return record(name, start, ok);
}

after(() => {
  let total = 0;
  for (const [name, t] of tallies) {
    total += t.inputs;
    console.log(
      `fuzz ${name}: ${t.inputs} inputs, ${t.accepted} accepted, ${t.rejected} rejected with the typed error, ` +
        `0 crashes, slowest ${t.maxMs.toFixed(1)} ms`,
    );
  }
  console.log(`fuzz total: ${total} inputs tried, 0 crashes, 0 hangs, 0 invalid values accepted`);
});

// ---- SPIFFE IDs ---------------------------------------------------------------------------------------

/** The SPIFFE ID standard, written independently of the implementation under test. */
function oracleValidSpiffeId(s: string): boolean {
  if (Buffer.byteLength(s) > 2048) return false;
  const m = /^spiffe:\/\/([a-z0-9._-]+)((?:\/[A-Za-z0-9._-]+)*)$/.exec(s);
  if (!m) return false;
  if ((m[1] as string).length > 255) return false;
  return (m[2] as string)
    .split('/')
    .slice(1)
    .every((seg) => seg !== '.' && seg !== '..');
}

const pick = (chars: string) => fc.constantFrom(...chars.split(''));
const join = (a: string[]) => a.join('');
// Near-valid IDs: the right shape built from a mix of allowed and forbidden characters.
const nearSpiffeId = fc
  .tuple(
    fc.constantFrom('spiffe://', 'spiffe://', 'spiffe://', 'SPIFFE://', 'spiffe:/', 'spiffe:///', 'http://', ''),
    fc.oneof(
      fc.array(pick('abcxyz019.-_'), { maxLength: 12 }).map(join),
      fc.array(pick('aZ0.-_:@%/ ?#é'), { maxLength: 8 }).map(join),
    ),
    fc.array(
      fc.oneof(
        fc.array(pick('aZz09.-_'), { maxLength: 6 }).map(join),
        fc.constantFrom('.', '..', '', '%2e', 'a b', 'é', 'a?b', 'a#b'),
      ),
      { maxLength: 4 },
    ),
    fc.boolean(),
  )
  .map(([scheme, td, segs, trailing]) => `${scheme}${td}${segs.map((s) => `/${s}`).join('')}${trailing ? '/' : ''}`);
const longSpiffeId = fc
  .tuple(fc.integer({ min: 240, max: 270 }), fc.integer({ min: 1700, max: 2100 }))
  .map(([td, path]) => `spiffe://${'a'.repeat(td)}/${'b'.repeat(path)}`);

describe('fuzz: SPIFFE ID and trust domain parsing', () => {
  test('every input parses or throws SpiffeIdError, and is accepted exactly when the standard allows it', () => {
    fc.assert(
      fc.property(
        fc.oneof(nearSpiffeId, nearSpiffeId, fc.string(), fc.string({ unit: 'binary' }), longSpiffeId),
        (s) => {
          let id: SpiffeId | undefined;
          const ok = attempt('SpiffeId.parse', SpiffeIdError, () => {
            id = SpiffeId.parse(s);
          });
          assert.equal(ok, oracleValidSpiffeId(s), `SpiffeId.parse(${JSON.stringify(s.slice(0, 80))}) accepted=${ok}`);
          if (id) {
            assert.equal(id.toString(), s);
            assert.ok(SpiffeId.parse(id.toString()).equals(id));
            assert.ok(id.memberOf(id.trustDomain));
          }
        },
      ),
      { numRuns: RUNS * 4 },
    );
  });

  test('non-string input gives SpiffeIdError, not a TypeError', () => {
    fc.assert(
      fc.property(fc.anything(), (v) => {
        fc.pre(typeof v !== 'string');
        assert.equal(
          attempt('SpiffeId.parse (non-string)', SpiffeIdError, () => SpiffeId.parse(v as string)),
          false,
        );
      }),
      { numRuns: RUNS },
    );
  });

  test('trust domain names: parse or SpiffeIdError; accepted names re-parse to the same value', () => {
    fc.assert(
      fc.property(fc.oneof(fc.array(pick('abz09.-_A:/ %'), { maxLength: 20 }).map(join), fc.string()), (s) => {
        let td: TrustDomain | undefined;
        attempt('TrustDomain.parse', SpiffeIdError, () => {
          td = TrustDomain.parse(s);
        });
        if (td) {
          assert.match(td.name, /^[a-z0-9._-]+$/);
          assert.ok(TrustDomain.parse(td.name).equals(td));
        }
      }),
      { numRuns: RUNS },
    );
  });
});

// ---- Bundles, certificates, keys, JWTs: built from a real CA --------------------------------------------

let ca: DevCa;
let svid: X509Svid;
let bundleJson: Record<string, unknown>;
let token: string;
let jwtBundles: JwtBundleSet;

before(async () => {
  ca = await DevCa.create({ trustDomain: 'example.org' });
  svid = await ca.issueX509Svid('spiffe://example.org/fuzz');
  bundleJson = ca.spiffeBundle().toJSON();
  token = (await ca.issueJwtSvid('spiffe://example.org/fuzz', 'fuzz-audience')).token;
  jwtBundles = new JwtBundleSet([ca.jwtBundle()]);
});

/** Applies a random edit at a random path of a JSON value (replace, delete, or wrap). */
function mutateJson(value: unknown, path: number[], replacement: unknown, op: number): unknown {
  if (path.length === 0 || value === null || typeof value !== 'object') {
    return op % 3 === 0 ? replacement : op % 3 === 1 ? [value] : { value };
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value);
  if (entries.length === 0) return replacement;
  const [key, child] = entries[(path[0] as number) % entries.length] as readonly [string | number, unknown];
  const copy = (Array.isArray(value) ? [...value] : { ...(value as object) }) as Record<string | number, unknown>;
  if (path.length === 1 && op % 5 === 4) {
    if (Array.isArray(copy)) (copy as unknown[]).splice(key as number, 1);
    else delete copy[key];
  } else {
    copy[key] = mutateJson(child, path.slice(1), replacement, op);
  }
  return copy;
}
const jsonEdit = fc.tuple(fc.array(fc.nat(), { maxLength: 5 }), fc.jsonValue({ maxDepth: 2 }), fc.nat());

describe('fuzz: bundle JSON (SPIFFE bundle and JWKS)', () => {
  test('mutated and arbitrary documents parse or throw BundleError; accepted ones round-trip', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          jsonEdit.map(([p, r, op]) => mutateJson(bundleJson, p, r, op)),
          jsonEdit.map(([p, r, op]) => JSON.stringify(mutateJson(bundleJson, p, r, op))),
          fc.jsonValue(),
          fc.string(),
          fc.uint8Array({ maxLength: 200 }),
        ),
        (input) => {
          let b: SpiffeBundle | undefined;
          attempt('SpiffeBundle.parse', BundleError, () => {
            b = SpiffeBundle.parse('example.org', input as object);
          });
          if (b) {
            const again = SpiffeBundle.parse('example.org', b.marshal());
            assert.deepEqual(
              again.x509Bundle().authorities.map((c) => c.fingerprint256),
              b.x509Bundle().authorities.map((c) => c.fingerprint256),
            );
            assert.deepEqual([...again.jwtBundle().authorities.keys()], [...b.jwtBundle().authorities.keys()]);
          }
          attempt('JwtBundle.parse', BundleError, () => JwtBundle.parse('example.org', input as object));
        },
      ),
      { numRuns: RUNS },
    );
  });

  // spiffe_sequence is read from the JSON text itself (JSON.parse loses digits above 2^53): the scanner must find
  // the top-level member whatever surrounds it. Oracle: the bigint the document was written with.
  test('spiffe_sequence is read exactly from any document layout (the member among decoys)', () => {
    const decoyKey = fc.constantFrom('spiffe_sequence', 'spiffe_sequence ', 'x":1,"spiffe_sequence', 'k', '\\"');
    const decoy = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.dictionary(decoyKey, fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 70n }).map(String), fc.string())),
    );
    const ws = fc.constantFrom('', ' ', '\n\t ', '\r\n');
    const doc = structuredClone(bundleJson) as Record<string, unknown>;
    delete doc.spiffe_sequence;
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.array(fc.tuple(fc.string(), decoy), { maxLength: 4 }),
        fc.nat(),
        ws,
        ws,
        (sequence, extra, at, w1, w2) => {
          const members = [
            ...Object.entries(doc).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`),
            // Distinct member names: a document repeating one is refused (tested in the core's bundle tests).
            ...extra
              .filter(([k], i) => k !== 'spiffe_sequence' && !(k in doc) && extra.findIndex(([o]) => o === k) === i)
              .map(([k, v]) => `${JSON.stringify(k)}${w1}:${w2}${JSON.stringify(v)}`),
          ];
          members.splice(at % (members.length + 1), 0, `"spiffe_sequence"${w1}:${w2}${sequence}`);
          const text = `{${w1}${members.join(`,${w2}`)}${w1}}`;
          const parsed = SpiffeBundle.parse('example.org', text);
          assert.equal(parsed.sequenceNumber, sequence);
          assert.equal(SpiffeBundle.parse('example.org', parsed.marshal()).sequenceNumber, sequence);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe('fuzz: PEM and DER input (certificates, keys, X.509-SVIDs)', () => {
  const der = () => Buffer.from(svid.leaf.raw);
  const mutatedDer = fc
    .tuple(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat())
    .map(([flips, cut]) => {
      const b = Buffer.from(der());
      for (const [pos, x] of flips) b[pos % b.length] = (b[pos % b.length] as number) ^ x;
      return cut % 4 === 0 ? b.subarray(0, cut % b.length) : b;
    });

  test('mutated DER certificates never verify; they parse or throw the typed error', () => {
    const bundles = new X509BundleSet([ca.x509Bundle()]);
    const original = svid.leaf.fingerprint256;
    fc.assert(
      fc.property(mutatedDer, (bytes) => {
        attempt('parseCertificates (mutated DER)', CertificateError, () => parseCertificates(bytes));
        const verified = attempt('verifyX509Svid (mutated DER)', X509SvidError, () => verifyX509Svid(bytes, bundles));
        if (verified)
          assert.equal(new X509Certificate(bytes).fingerprint256, original, 'a modified certificate verified');
      }),
      { numRuns: RUNS },
    );
  });

  test('random bytes and PEM-shaped text: parse or typed error, for certificates, bundles, keys and SVIDs', () => {
    const pemish = fc
      .tuple(
        fc.constantFrom('CERTIFICATE', 'PRIVATE KEY', 'EC PRIVATE KEY', 'X', ''),
        fc.oneof(fc.base64String({ maxLength: 400 }), fc.string(), fc.constant(der().toString('base64'))),
        fc.boolean(),
      )
      .map(([label, body, closed]) => `-----BEGIN ${label}-----\n${body}\n${closed ? `-----END ${label}-----\n` : ''}`);
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 600 }), pemish, fc.string()), (input) => {
        attempt('parseCertificates', CertificateError, () => parseCertificates(input));
        attempt('X509Bundle.parse', BundleError, () => X509Bundle.parse('example.org', input));
        attempt('parsePrivateKey', CertificateError, () => parsePrivateKey(input));
        const accepted = attempt('X509Svid.parse (random chain)', X509SvidError, () =>
          X509Svid.parse(input, svid.privateKey),
        );
        if (accepted) assert.equal(parseCertificates(input)[0]?.fingerprint256, svid.leaf.fingerprint256);
      }),
      { numRuns: RUNS },
    );
  });

  test('crafted inputs stay linear: megabytes of PEM boundaries, huge IDs and tokens parse or fail in time', () => {
    const big = [
      '-----BEGIN CERTIFICATE-----\n'.repeat(40_000),
      `-----BEGIN ${'A'.repeat(1_000_000)}`,
      '-----BEGIN A'.repeat(100_000),
      `-----BEGIN CERTIFICATE-----\n${'A'.repeat(2_000_000)}`,
    ];
    for (const input of big) {
      attempt('parseCertificates (crafted, MBs)', CertificateError, () => parseCertificates(input));
      attempt('parsePrivateKey (crafted, MBs)', CertificateError, () => parsePrivateKey(input));
    }
    attempt('SpiffeId.parse (1 MB)', SpiffeIdError, () => SpiffeId.parse(`spiffe://${'a'.repeat(1_000_000)}`));
    attempt('insecureParseJwtSvid (1 MB)', JwtSvidError, () => insecureParseJwtSvid('.'.repeat(1_000_000)));
  });
});

describe('fuzz: JWT input', () => {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const parts = () => token.split('.') as [string, string, string];
  const decoded = () => {
    const [h, p] = parts();
    return {
      header: JSON.parse(Buffer.from(h, 'base64url').toString()) as unknown,
      payload: JSON.parse(Buffer.from(p, 'base64url').toString()) as unknown,
    };
  };
  const headerEdit = fc.oneof(
    jsonEdit,
    fc.constantFrom<[number[], unknown, number]>(
      [[0], 'none', 0],
      [[0], 'HS256', 0],
      [[1], 'other-kid', 0],
      [[0], 'RS256', 0],
    ),
  );

  test('mutated tokens (header, claims, signature) never validate; arbitrary strings give JwtSvidError', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.tuple(headerEdit, fc.constant(null), fc.constant(null)),
          fc.tuple(fc.constant(null), jsonEdit, fc.constant(null)),
          fc.tuple(fc.constant(null), fc.constant(null), fc.tuple(fc.nat(), fc.integer({ min: 1, max: 63 }))),
          fc.string().map((s) => [null, null, null, s] as const),
        ),
        async (spec) => {
          const [h, p, s] = parts();
          let candidate: string;
          if (spec.length === 4) candidate = spec[3];
          else if (spec[0])
            candidate = `${b64(mutateJson(decoded().header, spec[0][0], spec[0][1], spec[0][2]))}.${p}.${s}`;
          else if (spec[1])
            candidate = `${h}.${b64(mutateJson(decoded().payload, spec[1][0], spec[1][1], spec[1][2]))}.${s}`;
          else {
            const [pos, x] = spec[2] as [number, number];
            const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
            const i = pos % s.length;
            const c = alphabet[(alphabet.indexOf(s[i] as string) ^ x) % 64] as string;
            candidate = `${h}.${p}.${s.slice(0, i)}${c}${s.slice(i + 1)}`;
          }
          const ok = await attemptAsync('parseAndValidateJwtSvid', () =>
            parseAndValidateJwtSvid(candidate, jwtBundles, 'fuzz-audience'),
          );
          if (ok) {
            // Only re-encodings of the same signed content may pass (e.g. a base64url variant of the signature).
            assert.equal(insecureParseJwtSvid(candidate).claims.sub, 'spiffe://example.org/fuzz');
            const [ch, cp] = candidate.split('.');
            assert.equal(`${ch}.${cp}`, `${h}.${p}`, 'a token with a modified header or payload validated');
          }
          attempt('insecureParseJwtSvid', JwtSvidError, () => insecureParseJwtSvid(candidate));
        },
      ),
      { numRuns: RUNS },
    );
  });
});
