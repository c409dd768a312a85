// Test kit for users' own tests: a dev Workload API with named workloads, test SVIDs and JWT-SVIDs,
// rotation under load, and client workloads run as separate processes.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { JwtSvid, SpiffeId, X509Svid } from '@spiffe-ts/core';
// By the package's own name (kept external in the build), so the kit shares the main entry's classes.
import {
  DevWorkloadApiServer,
  type DevWorkloadApiServerOptions,
  type IssueX509Options,
  type WorkloadIdentity,
} from '@spiffe-ts/dev-server';

/**
 * Starts a dev Workload API serving these named workloads, one socket each (`dev.address(name)`).
 * Defaults for tests: trust domain example.org, X.509-SVIDs valid for 300 s.
 *
 * @example
 * ```ts
 * const dev = await startTestWorkloadApi({ orders: '/service/orders', payments: '/service/payments' });
 * ```
 */
export async function startTestWorkloadApi(
  workloads: Record<string, WorkloadIdentity>,
  options: Omit<DevWorkloadApiServerOptions, 'workloads'> = {},
): Promise<DevWorkloadApiServer> {
  return DevWorkloadApiServer.start({ trustDomain: 'example.org', svidTtlSeconds: 300, ...options, workloads });
}

function idOf(dev: DevWorkloadApiServer, workload: SpiffeId | string): SpiffeId | string {
  if (typeof workload === 'string' && !workload.startsWith('spiffe://') && !workload.startsWith('/')) {
    const svid = dev.svidsOf(workload)[0];
    if (!svid) throw new Error(`no workload named ${workload} with an identity`);
    return svid.id;
  }
  return typeof workload === 'string' && workload.startsWith('/') ? `spiffe://${dev.trustDomain}${workload}` : workload;
}

/**
 * Issues an X.509-SVID from the dev server's CA, outside the Workload API: for a workload name (its first
 * identity), a SPIFFE ID, or a path in the CA's trust domain.
 */
export async function issueTestSvid(
  dev: DevWorkloadApiServer,
  workload: SpiffeId | string,
  options: IssueX509Options = {},
): Promise<X509Svid> {
  return dev.ca.issueX509Svid(idOf(dev, workload), options);
}

/** Issues a JWT-SVID for a workload name, SPIFFE ID or path, signed by the dev server's current JWT authority. */
export async function issueTestJwtSvid(
  dev: DevWorkloadApiServer,
  workload: SpiffeId | string,
  audience: string | string[],
  options: { ttlSeconds?: number; extraClaims?: Record<string, unknown> } = {},
): Promise<JwtSvid> {
  return dev.ca.issueJwtSvid(idOf(dev, workload), audience, options);
}

/** Options of {@link rotationUnderLoad}. */
export interface RotationUnderLoadOptions {
  /** The dev Workload API whose SVIDs (and CA) rotate. */
  dev: DevWorkloadApiServer;
  /**
   * One request; called again as soon as it settles, until the rotations are done. Resolving counts as ok,
   * throwing (or rejecting) as failed, with the error's message kept in `errors`. `worker` is the index of the
   * concurrent worker calling it (0 .. workers - 1), e.g. to open a new connection in some workers only.
   */
  request: (worker: number) => Promise<unknown>;
  /** Concurrent workers sending requests (default 3). */
  workers?: number;
  /** Workload names whose X.509-SVIDs rotate (default: all). */
  workloads?: string[];
  /** Rotation rounds: each rotates the SVIDs, then (with `rotateCa`) the X.509 authority (default 1). */
  rounds?: number;
  /** Keep doing rounds until at least this long has passed (in addition to `rounds`). */
  durationMs?: number;
  /** Also rotate the X.509 authority each round, and then drop the retired one (default true). */
  rotateCa?: boolean;
  /** Wait after each rotation step for the change to reach the workloads (default 300 ms). */
  settleMs?: number;
  /** Called after the SVIDs rotated and settled, e.g. to assert that a server picked its new SVID. */
  afterSvidRotation?: (round: number) => void | Promise<void>;
  /** Called after the CA rotated and the retired one was dropped, e.g. to assert the bundle has one authority. */
  afterCaRotation?: (round: number) => void | Promise<void>;
}

/** Result of {@link rotationUnderLoad}. */
export interface RotationUnderLoadResult {
  /** Requests that resolved. */
  ok: number;
  /** Requests that threw. */
  failed: number;
  /** Rotation steps done (each SVID rotation and each CA rotation counts one). */
  rotations: number;
  /** The first (up to 20) failures' messages. */
  errors: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Keeps sending requests through `request` from several workers while the dev server rotates X.509-SVIDs
 * (and, by default, the X.509 authority, dropping the retired one afterwards), then stops the workers and
 * returns the counts. If a hook throws, the workers are stopped and the error is rethrown.
 *
 * @example
 * ```ts
 * const r = await rotationUnderLoad({ dev, request: async () => { const res = await get('/orders'); if (res.status !== 200) throw new Error(`status ${res.status}`); } });
 * assert.equal(r.failed, 0, r.errors.join('; '));
 * ```
 */
export async function rotationUnderLoad(options: RotationUnderLoadOptions): Promise<RotationUnderLoadResult> {
  const { dev, request, workers = 3, rounds = 1, durationMs = 0, rotateCa = true, settleMs = 300 } = options;
  const result: RotationUnderLoadResult = { ok: 0, failed: 0, rotations: 0, errors: [] };
  let running = true;
  const worker = async (i: number) => {
    while (running) {
      try {
        await request(i);
        result.ok++;
      } catch (err) {
        result.failed++;
        if (result.errors.length < 20) result.errors.push(err instanceof Error ? err.message : String(err));
      }
    }
  };
  const all = Array.from({ length: workers }, (_, i) => worker(i));
  const started = Date.now();
  try {
    for (let round = 0; round < rounds || Date.now() - started < durationMs; round++) {
      await dev.rotateSvids(options.workloads);
      result.rotations++;
      await sleep(settleMs);
      await options.afterSvidRotation?.(round);
      if (rotateCa) {
        await dev.rotateX509Authority({ propagationMs: settleMs });
        result.rotations++;
        await sleep(settleMs);
        dev.dropRetiredAuthorities();
        await sleep(settleMs);
        await options.afterCaRotation?.(round);
      }
    }
  } finally {
    running = false;
    await Promise.all(all);
  }
  return result;
}

/** A workload process started with {@link WorkloadRunner.start}. */
export interface RunningWorkload {
  /** The first line the process printed on stdout (its "ready" line). */
  line: string;
  /** Stops the process (SIGTERM). */
  stop(): void;
}

/** Runs scripts as separate workload processes, each with its own SPIFFE_ENDPOINT_SOCKET. */
export interface WorkloadRunner {
  /** Starts a long-running script (a server) and resolves with its first stdout line. */
  start(script: string, workload: string, env?: Record<string, string>): Promise<RunningWorkload>;
  /** Runs a script to completion (exit code 0) and resolves with its trimmed stdout. */
  run(script: string, workload: string, env?: Record<string, string>): Promise<string>;
  /** Stops every process started with `start`. */
  stop(): void;
}

/**
 * Runs scripts (resolved against `baseUrl`, e.g. `import.meta.url`) as separate Node.js processes with the
 * same loader flags as this one (so `.ts` works under tsx), each with `SPIFFE_ENDPOINT_SOCKET` set to the
 * named workload's socket on `dev`. Their stderr goes to this process's stderr.
 */
export function runWorkloads(dev: DevWorkloadApiServer, baseUrl: string | URL): WorkloadRunner {
  const started = new Set<() => void>();
  const spawnScript = (script: string, workload: string, env: Record<string, string>) => {
    const file = fileURLToPath(new URL(script, baseUrl));
    return spawn(process.execPath, [...process.execArgv, file], {
      env: { ...process.env, ...env, SPIFFE_ENDPOINT_SOCKET: dev.address(workload) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
  };
  return {
    start(script, workload, env = {}) {
      return new Promise((resolve, reject) => {
        const child = spawnScript(script, workload, env);
        const stop = () => {
          child.kill('SIGTERM');
          started.delete(stop);
        };
        started.add(stop);
        let out = '';
        child.stdout.on('data', (d) => {
          out += d;
          if (out.includes('\n')) resolve({ line: out.split('\n')[0] as string, stop });
        });
        child.on('error', reject);
        child.on('exit', (code) => {
          started.delete(stop);
          reject(new Error(`${script} exited ${code} before it was ready`));
        });
      });
    },
    run(script, workload, env = {}) {
      return new Promise((resolve, reject) => {
        const child = spawnScript(script, workload, env);
        let out = '';
        child.stdout.on('data', (d) => {
          out += d;
        });
        child.on('error', reject);
        child.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`${script} exited ${code}`))));
      });
    },
    stop() {
      for (const stop of [...started]) stop();
    },
  };
}
