#!/usr/bin/env node
// Copies the repository's examples into the cli package (dist/templates, published with dist) so that an
// installed `spiffe-ts init` has them: examples/<name> without installs or build output, tsconfig.base.json
// (the examples extend it; init writes its options in), and manifest.json with the version of every
// @spiffe-ts package (init turns `workspace:*` into `^VERSION`) and the ranges of the tools the examples take
// from the repository root. Run by the cli's `build`; `node scripts/copy-templates.mjs OUT` writes elsewhere.
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

const pkgRoot = new URL('..', import.meta.url).pathname;
const root = resolve(pkgRoot, '..', '..');
const out = resolve(process.argv[2] ?? join(pkgRoot, 'dist', 'templates'));

// Keep in step with SKIPPED in src/init.ts.
const SKIPPED = new Set(['node_modules', 'dist', '.turbo', 'coverage', 'vendor']);
const skipped = (name) => SKIPPED.has(name) || name.endsWith('.tsbuildinfo') || name.endsWith('.log');
const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'));

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'examples'), { recursive: true });
const examples = [];
for (const name of readdirSync(join(root, 'examples')).sort()) {
  const src = join(root, 'examples', name);
  try {
    readJson(join(src, 'package.json'));
  } catch {
    continue;
  }
  cpSync(src, join(out, 'examples', name), { recursive: true, filter: (p) => p === src || !skipped(basename(p)) });
  examples.push(name);
}
cpSync(join(root, 'tsconfig.base.json'), join(out, 'tsconfig.base.json'));

const versions = {};
for (const name of readdirSync(join(root, 'packages')).sort()) {
  let pkg;
  try {
    pkg = readJson(join(root, 'packages', name, 'package.json'));
  } catch {
    continue;
  }
  if (!pkg.private) versions[pkg.name] = pkg.version;
}
const rootDev = readJson(join(root, 'package.json')).devDependencies ?? {};
const tools = Object.fromEntries(['typescript', '@types/node'].filter((t) => rootDev[t]).map((t) => [t, rootDev[t]]));
writeFileSync(join(out, 'manifest.json'), `${JSON.stringify({ examples, versions, tools }, null, 2)}\n`);
console.log(`copy-templates: ${examples.length} examples into ${out}`);
