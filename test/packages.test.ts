// Every built package works for ESM (`import`) and CommonJS (`require`) consumers, with the same exports,
// and its type declarations resolve for TypeScript consumers in both module systems. Runs against dist/
// (plain node, no "source" condition), so `pnpm build` must have run: scripts/test.sh does it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const packagesDir = join(root, 'packages');
const packages = readdirSync(packagesDir)
  .map((d) => join(packagesDir, d))
  .filter((d) => existsSync(join(d, 'package.json')))
  .map((dir) => ({ dir, name: JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name as string }));

function node(cwd: string, args: string[]): string {
  // No --conditions=source: resolution goes through the "import"/"require" exports to dist/.
  return execFileSync(process.execPath, args, { cwd, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
}

describe('dual ESM/CommonJS packages', () => {
  test('at least the core packages are present', () => {
    for (const n of ['@spiffe-ts/core', '@spiffe-ts/dev-server', '@spiffe-ts/fastify', '@spiffe-ts/cli']) {
      assert.ok(
        packages.some((p) => p.name === n),
        n,
      );
    }
  });

  for (const { dir, name } of packages) {
    test(`${name}: require() and import() load dist with the same exports`, () => {
      assert.ok(existsSync(join(dir, 'dist', 'index.cjs')), 'dist/index.cjs built');
      assert.ok(existsSync(join(dir, 'dist', 'index.js')), 'dist/index.js built');
      assert.ok(existsSync(join(dir, 'dist', 'index.d.ts')), 'ESM declarations');
      assert.ok(existsSync(join(dir, 'dist', 'index.d.cts')), 'CJS declarations');
      // Package self-reference: resolves `name` through this package's own "exports".
      const cjs = node(dir, [
        '-e',
        `process.stdout.write(JSON.stringify(Object.keys(require(${JSON.stringify(name)})).sort()))`,
      ]);
      const esm = node(dir, [
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(name)}); process.stdout.write(JSON.stringify(Object.keys(m).filter((k) => k !== 'default').sort()))`,
      ]);
      const cjsKeys = JSON.parse(cjs) as string[];
      const esmKeys = JSON.parse(esm) as string[];
      assert.ok(cjsKeys.length > 0, 'CommonJS exports something');
      assert.deepEqual(
        cjsKeys.filter((k) => k !== 'default'),
        esmKeys,
      );
    });
  }

  test('TypeScript consumers type-check against the declarations in CommonJS and ESM mode', () => {
    const core = packages.find((p) => p.name === '@spiffe-ts/core');
    assert.ok(core);
    const tmp = mkdtempSync(join(core.dir, '.consumer-'));
    try {
      writeFileSync(
        join(tmp, 'consumer.cts'),
        `import spiffe = require('@spiffe-ts/core');\nconst id: spiffe.SpiffeId = spiffe.SpiffeId.parse('spiffe://example.org/a');\nexport const td: string = id.trustDomain.name;\n`,
      );
      writeFileSync(
        join(tmp, 'consumer.mts'),
        `import { SpiffeId, type X509Source } from '@spiffe-ts/core';\nexport const id: SpiffeId = SpiffeId.parse('spiffe://example.org/a');\nexport type S = X509Source;\n`,
      );
      writeFileSync(
        join(tmp, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            module: 'node16',
            moduleResolution: 'node16',
            strict: true,
            noEmit: true,
            skipLibCheck: true,
            types: ['node'],
          },
          files: ['consumer.cts', 'consumer.mts'],
        }),
      );
      execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', tmp], {
        cwd: tmp,
        encoding: 'utf8',
      });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
