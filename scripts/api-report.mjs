#!/usr/bin/env node
// The public API of every package entry point, as API Extractor reports it (packages/*/etc/*.api.md).
// `node scripts/api-report.mjs` checks that the committed reports match the built declarations (CI);
// `node scripts/api-report.mjs --update` rewrites them after an intended change of the public surface.
// Needs `pnpm build` first: the reports are read from each package's dist/*.d.ts.
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Extractor, ExtractorConfig } from '@microsoft/api-extractor';

const root = new URL('..', import.meta.url).pathname;
const update = process.argv.includes('--update');
let failed = 0;

for (const dir of readdirSync(join(root, 'packages'))) {
  const pkgDir = join(root, 'packages', dir);
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  const entries = Object.entries(pkg.exports ?? {}).filter(([, v]) => typeof v === 'object' && v.import?.types);
  for (const [subpath, target] of entries) {
    const name = subpath === '.' ? dir : `${dir}-${subpath.slice(2)}`;
    mkdirSync(join(pkgDir, 'etc'), { recursive: true });
    const config = ExtractorConfig.prepare({
      configObject: {
        projectFolder: pkgDir,
        mainEntryPointFilePath: join(pkgDir, target.import.types),
        compiler: { overrideTsconfig: { compilerOptions: { types: ['node'], skipLibCheck: true } } },
        apiReport: {
          enabled: true,
          reportFileName: `${name}.api.md`,
          reportFolder: join(pkgDir, 'etc'),
          reportTempFolder: join(pkgDir, 'node_modules', '.api-extractor'),
        },
        docModel: { enabled: false },
        dtsRollup: { enabled: false },
        tsdocMetadata: { enabled: false },
        messages: {
          extractorMessageReporting: {
            default: { logLevel: 'warning' },
            // Release tags (@public/@beta) are not used: every export of an entry point is public.
            'ae-missing-release-tag': { logLevel: 'none' },
            // Undocumented members are marked "(undocumented)" in the report itself, where review sees them.
            'ae-undocumented': { logLevel: 'none' },
            // A public signature that mentions a type users cannot import is a broken promise. (Subpath
            // entries refer to the main entry's types, which API Extractor cannot tell apart: noted in the report.)
            'ae-forgotten-export':
              subpath === '.' ? { logLevel: 'error' } : { logLevel: 'none', addToApiReportFile: true },
          },
          tsdocMessageReporting: { default: { logLevel: 'none' } },
        },
      },
      configObjectFullPath: join(pkgDir, 'api-extractor.json'),
      packageJsonFullPath: join(pkgDir, 'package.json'),
    });
    const result = Extractor.invoke(config, { localBuild: update, showVerboseMessages: false });
    if (!result.succeeded || (!update && result.apiReportChanged)) {
      failed++;
      console.error(
        `api-report: ${pkg.name}${subpath === '.' ? '' : subpath.slice(1)}: ${result.apiReportChanged ? 'the public API changed; run node scripts/api-report.mjs --update and commit packages/*/etc' : `${result.errorCount} errors`}`,
      );
    }
  }
}
if (failed > 0) process.exit(1);
console.log(update ? 'api-report: reports updated' : 'api-report: every public API matches its committed report');
