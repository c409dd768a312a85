// Many trust domains for the benchmarks: N distinct self-signed CAs, one per federated trust domain
// (td-0.federated.test ...). Made once and kept in the temp directory: creating a thousand CAs takes a while.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Bundle } from '@spiffe-ts/core';
import { createAuthority } from '@spiffe-ts/dev-server';

/** Trust domain name of the i-th federated trust domain. */
export const federatedTd = (i: number): string => `td-${i}.federated.test`;

/** PEM of each federated trust domain's CA, by trust domain name. */
export async function federatedPems(n: number): Promise<Record<string, string>> {
  const file = join(tmpdir(), `spiffe-ts-bench-federated-${n}.json`);
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
  const out: Record<string, string> = {};
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, (_, j) =>
        createAuthority({ uri: `spiffe://${federatedTd(i + j)}`, ttlSeconds: 30 * 86_400 }),
      ),
    );
    batch.forEach((a, j) => {
      out[federatedTd(i + j)] = a.certificate.toString();
    });
  }
  writeFileSync(`${file}.tmp`, JSON.stringify(out));
  renameSync(`${file}.tmp`, file);
  return out;
}

/** The federated trust domains' X.509 bundles. */
export async function federatedBundles(n: number): Promise<X509Bundle[]> {
  return Object.entries(await federatedPems(n)).map(([td, pem]) => X509Bundle.parse(td, pem));
}
