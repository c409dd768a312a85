import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { JwtSource, type WorkloadApiClientOptions, X509Source } from '@spiffe-ts/core';
import { SPIFFE_HELPER_NAMES, writeJwtFile, writeX509Files, type X509FileNames } from './files.js';

export interface HelperOptions extends WorkloadApiClientOptions {
  /** Directory for the SVID files. */
  dir: string;
  names?: X509FileNames;
  /** Program to start once the first SVID is on disk. */
  cmd?: string;
  cmdArgs?: string[];
  /** Signal sent to the program after every rotation (e.g. SIGHUP). No signal: the files are only rewritten. */
  renewSignal?: NodeJS.Signals;
  /** JWT-SVIDs to keep fresh on disk: audience → file name (in `dir`). */
  jwtSvids?: Array<{ audience: string; file: string }>;
  /** Exit after writing once (no watching, no child). */
  once?: boolean;
  /** Progress lines. */
  log?: (line: string) => void;
  signal?: AbortSignal;
}

/**
 * Keeps SVID files on disk in sync with the Workload API, like SPIFFE Helper: writes the SVID, key and
 * bundles on every rotation (atomically), starts a child program after the first write, and signals it
 * after each later write. Resolves with the child's exit code (or 0).
 */
export async function runHelper(options: HelperOptions): Promise<number> {
  const log = options.log ?? (() => undefined);
  const names = options.names ?? SPIFFE_HELPER_NAMES;
  const source = await X509Source.create({ ...options, signal: options.signal });
  const jwt = options.jwtSvids?.length ? new JwtSource({ ...options }) : undefined;
  let child: ChildProcess | undefined;
  let writes = 0;
  let queue = Promise.resolve();

  const writeAll = async () => {
    const ctx = { svids: source.getX509Svids(), bundles: source.bundles };
    await writeX509Files(options.dir, ctx, names);
    for (const j of options.jwtSvids ?? []) {
      const svid = await (jwt as JwtSource).fetchJwtSvid({ audience: j.audience });
      await writeJwtFile(join(options.dir, j.file), svid);
    }
    writes++;
    const svid = source.getX509Svid();
    log(
      `wrote ${svid.id} (serial ${svid.leaf.serialNumber}, expires ${svid.expiresAt.toISOString()}) to ${options.dir}`,
    );
  };

  try {
    await writeAll();
    if (options.once) return 0;

    if (options.cmd) {
      child = spawn(options.cmd, options.cmdArgs ?? [], { stdio: 'inherit' });
      log(`started ${options.cmd} (pid ${child.pid})`);
    }
    // Rewrite on every update; serialize writes so two rotations never interleave.
    const off = source.onUpdate(() => {
      queue = queue
        .then(async () => {
          await writeAll();
          if (child?.pid && options.renewSignal && child.exitCode === null) {
            child.kill(options.renewSignal);
            log(`sent ${options.renewSignal} to pid ${child.pid}`);
          }
        })
        .catch((err) => log(`rotation write failed: ${(err as Error).message}`));
    });
    // JWT-SVIDs expire on their own schedule: refresh them at the JwtSource's refresh point.
    const jwtTimer = jwt
      ? setInterval(() => {
          queue = queue.then(writeAll).catch((err) => log(`JWT refresh failed: ${(err as Error).message}`));
        }, 15_000)
      : undefined;

    const code = await new Promise<number>((resolve) => {
      const stop = (sig: NodeJS.Signals) => {
        if (child && child.exitCode === null) child.kill(sig);
        else resolve(0);
      };
      const onSigterm = () => stop('SIGTERM');
      const onSigint = () => stop('SIGINT');
      process.once('SIGTERM', onSigterm);
      process.once('SIGINT', onSigint);
      options.signal?.addEventListener('abort', () => stop('SIGTERM'), { once: true });
      child?.on('exit', (c, s) => {
        process.off('SIGTERM', onSigterm);
        process.off('SIGINT', onSigint);
        log(`child exited (${s ?? c})`);
        resolve(c ?? 1);
      });
    });
    off();
    clearInterval(jwtTimer);
    await queue;
    log(`${writes} writes`);
    return code;
  } finally {
    await source.close();
    await jwt?.close();
  }
}
