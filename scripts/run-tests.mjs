#!/usr/bin/env node
// Runs every unit/integration test with node's test runner against the TypeScript sources
// (the "source" export condition), so one copy of each package is loaded.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const roots = process.argv.slice(2).length ? process.argv.slice(2) : ['packages', 'examples', 'test'];

function walk(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    if (name === 'node_modules' || name === 'dist' || name === 'interop') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (/\.test\.(ts|mts|cts|js|mjs|cjs)$/.test(name)) out.push(p);
  }
  return out;
}

const files = roots.flatMap((r) => (r.match(/\.test\.\w+$/) ? [r] : walk(join(root, r), []))).sort();
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const args = ['--conditions=source', '--import', 'tsx', '--test', '--test-reporter=spec', ...files];
const res = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root });
process.exit(res.status ?? 1);
