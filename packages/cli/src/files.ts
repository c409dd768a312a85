import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JwtSvid, X509Context } from '@spiffe-ts/core';

/** File names for the X.509 material on disk. */
export interface X509FileNames {
  /** Certificate chain, leaf first. */
  svid: string;
  /** PKCS#8 private key (written 0600). */
  key: string;
  /** The SVID's own trust domain bundle. */
  bundle: string;
  /** Federated bundles, all in one file (omit to skip). */
  federatedBundle?: string;
}

/** SPIFFE Helper's default names. */
export const SPIFFE_HELPER_NAMES: X509FileNames = {
  svid: 'svid.pem',
  key: 'svid_key.pem',
  bundle: 'svid_bundle.pem',
  federatedBundle: 'federated_bundle.pem',
};

/** Writes a file atomically (temp file + rename), so readers never see half a certificate. */
export async function writeAtomic(path: string, data: string, mode = 0o644): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  await writeFile(tmp, data, { mode });
  await chmod(tmp, mode);
  await rename(tmp, path);
}

/** Writes the default SVID, key, bundle and federated bundles of an X.509 context into a directory. */
export async function writeX509Files(
  dir: string,
  ctx: X509Context,
  names: X509FileNames = SPIFFE_HELPER_NAMES,
  svidIndex = 0,
): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const svid = ctx.svids[svidIndex];
  if (!svid) throw new Error(`no SVID #${svidIndex} in the Workload API response`);
  const pem = svid.toPem();
  const own = ctx.bundles.get(svid.id.trustDomain);
  const written: string[] = [];
  // Key first, then chain: a reader that sees the new chain also finds the matching key.
  await writeAtomic(join(dir, names.key), pem.privateKey, 0o600);
  written.push(join(dir, names.key));
  await writeAtomic(join(dir, names.svid), pem.certificates);
  written.push(join(dir, names.svid));
  await writeAtomic(join(dir, names.bundle), own ? own.toPem() : '');
  written.push(join(dir, names.bundle));
  if (names.federatedBundle) {
    const federated = ctx.bundles
      .bundles()
      .filter((b) => !b.trustDomain.equals(svid.id.trustDomain))
      .map((b) => b.toPem())
      .join('');
    await writeAtomic(join(dir, names.federatedBundle), federated);
    written.push(join(dir, names.federatedBundle));
  }
  return written;
}

/** Writes every SVID with spire-agent's `api fetch x509 -write` names (svid.N.pem, svid.N.key, bundle.N.pem). */
export async function writeX509FilesSpireStyle(dir: string, ctx: X509Context): Promise<string[]> {
  const written: string[] = [];
  for (let i = 0; i < ctx.svids.length; i++) {
    written.push(
      ...(await writeX509Files(
        dir,
        ctx,
        {
          svid: `svid.${i}.pem`,
          key: `svid.${i}.key`,
          bundle: `bundle.${i}.pem`,
          federatedBundle: `federated_bundle.${i}.pem`,
        },
        i,
      )),
    );
  }
  return written;
}

export async function writeJwtFile(path: string, svid: JwtSvid): Promise<void> {
  await writeAtomic(path, svid.token, 0o600);
}
