import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.shared.js';

export default defineConfig({
  ...packageBuild,
  entry: ['src/index.ts', 'src/undici.ts', 'src/internal.ts'],
  // The undici entry imports the core by the package's own name: kept external, so it shares the main entry.
  external: ['@spiffe-ts/core'],
});
