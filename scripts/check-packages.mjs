#!/usr/bin/env node
// Checks the packages as they would be published: packs each one (`pnpm pack`, needs `pnpm build` first) and runs
// publint (package.json fields against the packed files) and Are The Types Wrong (every entry point's types, as
// TypeScript resolves them from ESM, from CommonJS and in bundlers, against the JavaScript Node loads).
// Errors and warnings fail; publint suggestions are printed only.
//
// Deliberate exceptions (keep this list short, each with its reason):
// - none for attw: every profile is checked, including `moduleResolution: node10` (what a `module: commonjs`
//   tsconfig such as `nest new`'s gets by default). node10 predates `exports`, so packages with subpath entries
//   (`@spiffe-ts/core/undici`, `@spiffe-ts/dev-server/testing`) map them with `typesVersions` for it.
// - publint `USE_SIDE_EFFECTS` (a suggestion): the packages target Node servers, not browser bundles, and some
//   entries register metadata on import (Nest decorators, reflect-metadata), so "no side effects" would be a
//   claim we have not checked.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import { packAll, root } from './lib/pack.mjs';

const PUBLINT_IGNORED = new Set(['USE_SIDE_EFFECTS']);
const attwBin = join(root, 'node_modules', '.bin', 'attw');

const dest = mkdtempSync(join(tmpdir(), 'spiffe-ts-pack-'));
let failed = false;
try {
  const packed = packAll(dest);

  for (const p of packed) {
    const tarball = readFileSync(p.tarball);
    const ab = tarball.buffer.slice(tarball.byteOffset, tarball.byteOffset + tarball.byteLength);
    const { messages, pkg } = await publint({ pack: { tarball: ab }, level: 'suggestion', strict: true });
    for (const m of messages) {
      if (PUBLINT_IGNORED.has(m.code)) continue;
      const fatal = m.type !== 'suggestion';
      if (fatal) failed = true;
      console.log(`publint ${p.name}: ${m.type}: ${formatMessage(m, pkg, { color: false })}`);
    }
  }
  console.log(`publint: ${packed.length} packages checked`);

  // attw loads TypeScript per run; two at a time keeps this short on small CI machines.
  const results = [];
  const queue = [...packed];
  const worker = async () => {
    for (let p = queue.shift(); p; p = queue.shift()) results.push({ p, ...(await attw(p.tarball)) });
  };
  await Promise.all(Array.from({ length: Math.min(2, availableParallelism()) }, worker));
  for (const { p, code, out } of results.sort((a, b) => a.p.name.localeCompare(b.p.name))) {
    if (code !== 0) {
      failed = true;
      console.log(`attw ${p.name}: problems found\n${out}`);
    } else console.log(`attw ${p.name}: ok`);
  }
} finally {
  rmSync(dest, { recursive: true, force: true });
}
if (failed) {
  console.error('published-package checks failed (see above)');
  process.exit(1);
}

function attw(tarball) {
  return new Promise((resolve, reject) => {
    const child = spawn(attwBin, ['--format', 'ascii', '--no-color', tarball], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
}
