// Differential suite: generates cases, asks go-spiffe (go/main.go, path in argv[2]) and @spiffe-ts/core for
// their verdicts, and compares them. A difference passes only when differences.json documents it.
// Prints per-category counts, every difference, and `differential: N passed, N failed` (N over cases).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { bundleCases } from './cases/bundles.js';
import { chainCases } from './cases/chains.js';
import { idCases } from './cases/ids.js';
import { tokenCases } from './cases/tokens.js';
import type { Case, Verdict } from './cases/types.js';
import { ourVerdict } from './ours.js';

interface Documented {
  /** Regular expression matched against the whole case class. */
  class: string;
  ours: 'accept' | 'reject';
  /** "accept-other-result": both accept, with a different parsed result. */
  theirs: 'accept' | 'reject' | 'accept-other-result';
  /** "documented": deliberate, the spec sides with us. "bug": ours is wrong, to fix (kept green meanwhile). */
  status: 'documented' | 'bug';
  reason: string;
  spec: string;
}

const SEED = Number(process.env.DIFFERENTIAL_SEED ?? 21);
const here = new URL('.', import.meta.url);

function category(c: Case): string {
  if (c.kind === 'id' || c.kind === 'td' || c.kind === 'segments' || c.kind === 'path') return 'spiffe-id';
  return { chain: 'x509-chain', svid: 'x509-parse', token: 'jwt-svid', bundle: 'bundle' }[c.kind];
}

async function goVerdicts(bin: string, cases: readonly Case[]): Promise<Map<string, Verdict>> {
  const child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => chunks.push(b));
  const done = new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? 1));
  });
  for (const c of cases) {
    if (!child.stdin.write(`${JSON.stringify(c)}\n`)) await new Promise((r) => child.stdin.once('drain', r));
  }
  child.stdin.end();
  const code = await done;
  if (code !== 0) throw new Error(`go-spiffe verdict program exited with ${code}`);
  const out = new Map<string, Verdict>();
  for (const line of Buffer.concat(chunks).toString('utf8').split('\n')) {
    if (line === '') continue;
    const v = JSON.parse(line) as Verdict;
    out.set(v.id, v);
  }
  return out;
}

const word = (v: Verdict) => (v.ok ? 'accept' : 'reject');
/** go-spiffe's verdict in the words of differences.json, relative to ours. */
const theirWord = (go: Verdict, ours: Verdict) =>
  go.ok && ours.ok && go.result !== ours.result ? 'accept-other-result' : word(go);

async function main(): Promise<number> {
  const bin = process.argv[2];
  if (!bin) throw new Error('usage: run.ts <go-spiffe verdict program>');
  const documented = JSON.parse(readFileSync(new URL('differences.json', here), 'utf8')) as Documented[];
  const started = Date.now();
  const cases = [...idCases(SEED), ...(await chainCases(SEED)), ...tokenCases(SEED), ...(await bundleCases(SEED))];
  const ids = new Set<string>();
  for (const c of cases) {
    if (ids.has(c.id)) throw new Error(`duplicate case id ${c.id}`);
    ids.add(c.id);
  }
  console.log(`generated ${cases.length} cases in ${Date.now() - started} ms (seed ${SEED})`);
  const theirs = await goVerdicts(bin, cases);

  const perCategory = new Map<
    string,
    { cases: number; accepted: number; same: number; documented: number; failed: number }
  >();
  const uses = new Map<Documented, number>();
  // Per case class: how many cases, how many go-spiffe accepted, how many we accepted.
  const perClass = new Map<string, [number, number, number]>();
  const failures: string[] = [];
  const deviations: string[] = [];
  const known: string[] = [];
  let passed = 0;
  let failed = 0;
  for (const c of cases) {
    const cat = category(c);
    let stats = perCategory.get(cat);
    if (!stats) {
      stats = { cases: 0, accepted: 0, same: 0, documented: 0, failed: 0 };
      perCategory.set(cat, stats);
    }
    stats.cases++;
    const ours = await ourVerdict(c);
    const go = theirs.get(c.id);
    const show = (v: Verdict) => clip(v.ok ? `accept ${JSON.stringify(v.result)}` : `reject (${v.error})`);
    if (!go) {
      failed++;
      stats.failed++;
      failures.push(`${c.id}: no verdict from go-spiffe`);
      continue;
    }
    if (go.ok) stats.accepted++;
    const pc = perClass.get(c.class) ?? [0, 0, 0];
    perClass.set(c.class, [pc[0] + 1, pc[1] + (go.ok ? 1 : 0), pc[2] + (ours.ok ? 1 : 0)]);
    const untyped = !ours.ok && ours.error?.startsWith('UNTYPED');
    if (!untyped && ours.ok === go.ok && (!ours.ok || ours.result === go.result)) {
      passed++;
      stats.same++;
      if (c.spec && (c.spec.verdict === 'accept') !== ours.ok) {
        deviations.push(`${c.id}: both ${word(ours)}, the standard says ${c.spec.verdict} (${c.spec.clause})`);
      }
      continue;
    }
    const entry = untyped
      ? undefined
      : documented.find(
          (d) =>
            new RegExp(`^(?:${d.class})$`).test(c.class) && d.ours === word(ours) && d.theirs === theirWord(go, ours),
        );
    const line = `${c.id} [${c.class}]\n    input: ${describe(c)}\n    ours:  ${show(ours)}\n    go:    ${show(go)}`;
    if (entry) {
      passed++;
      stats.documented++;
      uses.set(entry, (uses.get(entry) ?? 0) + 1);
      known.push(`${line}\n    documented (${entry.status}): ${entry.reason}`);
    } else {
      failed++;
      stats.failed++;
      failures.push(line);
    }
  }

  console.log('\ncases per category (accepted by go-spiffe / same verdict / documented difference / failed):');
  for (const [cat, s] of perCategory) {
    console.log(
      `  ${cat.padEnd(11)} ${String(s.cases).padStart(5)} cases  ${s.accepted} accepted, ${s.same} same, ${s.documented} documented, ${s.failed} failed`,
    );
  }
  console.log('\ndocumented differences found:');
  for (const d of documented) {
    if (!uses.has(d)) console.log(`  note: no case matched "${d.class}" (fixed, or its cases are gone?)`);
    console.log(
      `  ${String(uses.get(d) ?? 0).padStart(4)} × ${d.class}: ours ${d.ours}, go-spiffe ${d.theirs} [${d.status}]`,
    );
  }
  if (process.env.DIFFERENTIAL_VERBOSE) {
    console.log('\nper case class (cases: accepted by go-spiffe / by us):');
    for (const [cls, [n, g, o]] of [...perClass].sort()) console.log(`  ${cls}: ${n}: ${g} / ${o}`);
    for (const k of known) console.log(k);
  }
  if (deviations.length > 0) {
    console.log(`\nshared deviations from the standard (both sides agree, not failed; ${deviations.length}):`);
    for (const d of deviations) console.log(`  ${d}`);
  }
  // The floor for each category: a generator that silently shrinks fails the run.
  const floor: Record<string, number> = { 'spiffe-id': 4000, 'x509-chain': 250, 'jwt-svid': 150, bundle: 100 };
  for (const [cat, min] of Object.entries(floor)) {
    const n = perCategory.get(cat)?.cases ?? 0;
    if (n < min) {
      failed++;
      failures.push(`${cat}: only ${n} cases (at least ${min} expected)`);
    }
  }
  if (failures.length > 0) {
    console.log(`\nundocumented differences (${failures.length}):`);
    for (const f of failures.slice(0, 200)) console.log(`  ${f}`);
    if (failures.length > 200) console.log(`  ... and ${failures.length - 200} more`);
  }
  const counts = [...perCategory].map(([cat, st]) => `${cat} ${st.cases}`).join(', ');
  console.log(`\ndifferential: ${passed} passed, ${failed} failed (cases: ${counts}; ${Date.now() - started} ms)`);
  return failed === 0 ? 0 : 1;
}

function clip(s: string): string {
  return s.length > 200 ? `${s.slice(0, 200)}... (${s.length} chars)` : s;
}

function describe(c: Case): string {
  const short = clip;
  switch (c.kind) {
    case 'id':
    case 'td':
      return JSON.stringify(short(c.input ?? ''));
    case 'segments':
      return `td ${JSON.stringify(c.td)} segments ${JSON.stringify(c.segments)}`;
    case 'path':
      return `td ${JSON.stringify(c.td)} path ${JSON.stringify(short(c.path ?? ''))}`;
    case 'chain':
    case 'svid':
      return `${c.chain?.length} certificate(s), bundles for ${Object.keys(c.roots ?? {}).join(', ') || 'none'}`;
    case 'token':
      return short(JSON.stringify(decodeToken(c.token ?? '')));
    case 'bundle':
      return short(c.doc ?? '');
  }
}

function decodeToken(token: string): unknown {
  const [h, p] = token.split('.');
  const dec = (s: string | undefined) => {
    try {
      return JSON.parse(Buffer.from(s ?? '', 'base64url').toString('utf8')) as unknown;
    } catch {
      return s;
    }
  };
  return { header: dec(h), payload: dec(p) };
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    console.log('differential: 0 passed, 1 failed (the suite could not run)');
    process.exitCode = 1;
  },
);
