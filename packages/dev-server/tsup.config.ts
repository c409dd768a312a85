import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.shared.js';

export default defineConfig({
  ...packageBuild,
  entry: ['src/index.ts', 'src/testing.ts'],
  // The testing entry imports the dev server by the package's own name: kept external, so it shares the main entry.
  external: ['@spiffe-ts/dev-server'],
});
