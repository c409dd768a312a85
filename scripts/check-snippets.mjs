#!/usr/bin/env node
// Docs that compile: every ```ts / ```typescript block in README.md, packages/*/README.md and examples/*/README.md
// is written to its own file under test/snippets/.out (gitignored) and type-checked with tsc against the built
// packages (their dist .d.ts through the packages' `exports`, as users get them; run `pnpm build` first):
// - all snippets as ES modules (module nodenext, strict, decorators as Nest projects enable them);
// - NestJS snippets (importing @nestjs/* or @spiffe-ts/nestjs) also as standard CommonJS, with the tsconfig
//   `nest new` generates (module commonjs, emitDecoratorMetadata), where top-level await is an error.
// A snippet that does not compile fails the run.
//
// Markers, an HTML comment on the line before the fence (use sparingly):
// - `<!-- snippet: continue -->`: the block continues the previous one in the same file (checked together),
//   for READMEs that build one example up in steps.
// - `<!-- snippet: skip -->`: not checked, for a deliberately partial fragment (a few lines that only make sense
//   inside code the reader already has, e.g. an error handler). Prefer `continue`, or a complete snippet.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const out = join(root, 'test', 'snippets', '.out');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

function readmes() {
  const files = ['README.md'];
  for (const dir of ['packages', 'examples']) {
    for (const name of readdirSync(join(root, dir)).sort()) {
      try {
        readFileSync(join(root, dir, name, 'README.md'));
        files.push(`${dir}/${name}/README.md`);
      } catch {
        // no README
      }
    }
  }
  return files;
}

/** Snippets of one README: `{ file, lines: [{ text, at }] }`, `at` the README line number (1-based). */
function extract(readme) {
  const lines = readFileSync(join(root, readme), 'utf8').split('\n');
  const snippets = [];
  let skipped = 0;
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(ts|typescript)\s*$/.exec(lines[i]);
    if (!open) continue;
    let j = i + 1;
    const body = [];
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]); j++) {
      body.push({ text: lines[j].slice(open[1].length), at: j + 1 });
    }
    let k = i - 1;
    while (k >= 0 && lines[k].trim() === '') k--;
    const marker = /<!--\s*snippet:\s*(skip|continue)\s*-->/.exec(lines[k] ?? '')?.[1];
    if (marker === 'skip') skipped++;
    else if (marker === 'continue' && snippets.length > 0) snippets[snippets.length - 1].lines.push(...body);
    else snippets.push({ readme, first: i + 1, lines: body });
    i = j;
  }
  return { snippets, skipped };
}

const isNest = (s) => s.lines.some((l) => /from '(@nestjs\/[^']+|@spiffe-ts\/nestjs)'/.test(l.text));

const ESM = {
  compilerOptions: {
    target: 'ES2022',
    lib: ['ES2023'],
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    experimentalDecorators: true,
    emitDecoratorMetadata: true,
    types: ['node'],
  },
  include: ['*.ts'],
};
// As `nest new` writes it (plus noEmit).
const NEST_CJS = {
  compilerOptions: {
    module: 'commonjs',
    declaration: true,
    removeComments: true,
    emitDecoratorMetadata: true,
    experimentalDecorators: true,
    allowSyntheticDefaultImports: true,
    target: 'ES2023',
    sourceMap: true,
    skipLibCheck: true,
    strictNullChecks: true,
    forceConsistentCasingInFileNames: true,
    noImplicitAny: false,
    strictBindCallApply: false,
    noFallthroughCasesInSwitch: false,
    noEmit: true,
    types: ['node'],
  },
  include: ['*.ts'],
};

rmSync(out, { recursive: true, force: true });
const all = [];
let skipped = 0;
for (const readme of readmes()) {
  const r = extract(readme);
  all.push(...r.snippets);
  skipped += r.skipped;
}

const sources = new Map(); // generated file -> snippet
function write(kind, config, type, snippets) {
  const dir = join(out, kind);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ private: true, type })}\n`);
  writeFileSync(join(dir, 'tsconfig.json'), `${JSON.stringify(config, null, 2)}\n`);
  for (const s of snippets) {
    const name = `${s.readme.replace(/\/?README\.md$/, '').replace(/\//g, '-') || 'root'}-L${s.first}.ts`;
    // `export {}` makes each file a module of its own (its names do not clash with other snippets').
    writeFileSync(join(dir, name), `${s.lines.map((l) => l.text).join('\n')}\nexport {};\n`);
    sources.set(join(dir, name), s);
  }
  return dir;
}

const runs = [
  ['esm', write('esm', ESM, 'module', all)],
  ['nest-cjs', write('nest-cjs', NEST_CJS, 'commonjs', all.filter(isNest))],
];
let failed = false;
for (const [kind, dir] of runs) {
  const res = spawnSync(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json'), '--pretty', 'false'], {
    cwd: dir,
    encoding: 'utf8',
  });
  if (res.status === 0) continue;
  failed = true;
  // Point each error at the README line it comes from.
  for (const line of `${res.stdout}${res.stderr}`.split('\n').filter(Boolean)) {
    const m = /^(.+?)\((\d+),(\d+)\): (.*)$/.exec(line);
    const s = m && sources.get(join(dir, m[1]));
    const at = s?.lines[Number(m[2]) - 1]?.at;
    console.error(s ? `${s.readme}:${at ?? s.first} (${kind}): ${m[4]}` : `(${kind}) ${line}`);
  }
}
const nest = all.filter(isNest).length;
console.log(
  `snippets: ${all.length} checked as ES modules, ${nest} NestJS ones also as CommonJS, ${skipped} marked skip` +
    ` (files in ${relative(root, out)})`,
);
if (failed) {
  console.error('a README snippet does not compile (see above)');
  process.exit(1);
}
