import type { Options } from 'tsup';

/** Every package builds the same way: ESM + CommonJS + declarations for both, for Node 20. */
export const packageBuild: Options = {
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  // Class names appear in error messages and in `err.name`; esbuild would otherwise rename some (`_X509Source`).
  keepNames: true,
};
