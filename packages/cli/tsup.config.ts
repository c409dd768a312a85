import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.shared.js';

// `pnpm build` removes dist first (see package.json), so neither build cleans and they cannot race.
export default defineConfig([
  // shims: the CommonJS build gets import.meta.url (the version is read from package.json, js-hcl-parser
  // is loaded with createRequire).
  { ...packageBuild, clean: false, shims: true },
  // The `spiffe-ts` executable: ESM only, with a shebang.
  {
    ...packageBuild,
    entry: ['src/bin.ts'],
    format: ['esm'],
    dts: false,
    clean: false,
    banner: { js: '#!/usr/bin/env node' },
  },
]);
