// Class names survive bundling: they appear in error messages ("X509Source is closed") and in stack traces,
// and esbuild would otherwise rename some classes (`_X509Source`). Checks the built ESM and CommonJS entries
// (run after `pnpm build`, as scripts/test.sh does).
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';

const root = new URL('../../packages/', import.meta.url).pathname;
const require = createRequire(import.meta.url);

const entries = readdirSync(root).flatMap((pkg) => {
  const dist = join(root, pkg, 'dist');
  if (!existsSync(dist)) return [];
  // bin.js runs the CLI when loaded; it exports nothing.
  return readdirSync(dist)
    .filter((f) => /\.(js|cjs)$/.test(f) && f !== 'bin.js' && !f.startsWith('chunk-'))
    .map((f) => join(dist, f));
});

const isClass = (v: unknown): v is abstract new (...args: never[]) => unknown =>
  typeof v === 'function' && /^class\b/.test(Function.prototype.toString.call(v));

test('every package is built (run pnpm build first)', () => {
  assert.ok(entries.length >= 14, `found ${entries.length} built entries`);
});

for (const file of entries) {
  test(`exported classes keep their names: ${file.slice(root.length)}`, async () => {
    const mod: Record<string, unknown> = file.endsWith('.cjs') ? require(file) : await import(pathToFileURL(file).href);
    const classes = Object.entries(mod).filter(([, v]) => isClass(v));
    for (const [name, value] of classes) {
      assert.ok(isClass(value));
      // Deprecated aliases export an existing class under its old name; the class keeps its own.
      if (value.name !== name)
        assert.ok(
          classes.some(([other, v]) => v === value && other === value.name),
          name,
        );
      assert.doesNotMatch(value.name, /^_|\d$/, `${name} is named ${value.name}`);
    }
  });
}
