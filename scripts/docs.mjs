#!/usr/bin/env node
// Builds the API reference (TypeDoc, typedoc.json: one module per public entry point, into docs/api) and checks it:
// any TypeDoc error or warning fails (broken {@link}s, exported types that are not exported, ...), and so does an
// exported declaration or member without a doc comment (every export is documented; the count per package is
// printed with the list).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const res = spawnSync(process.execPath, [join(root, 'node_modules', 'typedoc', 'bin', 'typedoc')], {
  cwd: root,
  encoding: 'utf8',
  env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
});
const ansi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
const lines = `${res.stdout}${res.stderr}`.split('\n').map((l) => l.replace(ansi, ''));
const undocumented = lines.filter((l) => l.includes('does not have any documentation'));
const summary = /Found \d+ errors and \d+ warnings/;
const other = lines.filter(
  (l) => /^\[(warning|error)\]/.test(l) && !l.includes('does not have any documentation') && !summary.test(l),
);
for (const l of other) console.error(l);
const byPackage = new Map();
for (const l of undocumented) {
  const pkg = /defined in (@spiffe-ts\/[\w-]+)/.exec(l)?.[1] ?? 'other';
  byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + 1);
}
if (undocumented.length) {
  for (const l of undocumented) console.error(l);
  const counts = [...byPackage].map(([p, n]) => `${p} ${n}`).join(', ');
  console.log(`docs: ${undocumented.length} exported declarations or members without a doc comment (${counts})`);
}
const ok = res.status === 0 && other.length === 0 && undocumented.length === 0;
console.log(ok ? 'docs: API reference in docs/api/index.html' : 'docs: failed (see above)');
process.exit(ok ? 0 : 1);
