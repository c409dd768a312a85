// Packs every published package (packages/*) the way `pnpm publish` would: `pnpm pack` applies `files`,
// `publishConfig` and rewrites `workspace:*` to real versions, so checks and consumer tests see what users get.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const root = new URL('../..', import.meta.url).pathname;

/** The published packages: `{ name, dir }` for every packages/* with a package.json that is not private. */
export function publishedPackages() {
  const out = [];
  for (const name of readdirSync(join(root, 'packages')).sort()) {
    const dir = join(root, 'packages', name);
    let pkg;
    try {
      pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    } catch {
      continue;
    }
    if (!pkg.private) out.push({ name: pkg.name, dir });
  }
  return out;
}

/**
 * Packs every published package into `dest` (which must exist) with `pnpm pack`.
 * Returns `{ name, dir, tarball }` per package, `tarball` an absolute path. Needs a prior `pnpm build`.
 */
export function packAll(dest) {
  const before = new Set(readdirSync(dest));
  return publishedPackages().map((p) => {
    execFileSync('pnpm', ['pack', '--pack-destination', dest], { cwd: p.dir, stdio: ['ignore', 'ignore', 'inherit'] });
    const created = readdirSync(dest).filter((f) => f.endsWith('.tgz') && !before.has(f));
    if (created.length !== 1) throw new Error(`pnpm pack in ${p.dir} produced ${created.length} tarballs`);
    before.add(created[0]);
    return { ...p, tarball: join(dest, created[0]) };
  });
}
