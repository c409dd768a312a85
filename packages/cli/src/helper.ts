import { type ChildProcess, spawn } from 'node:child_process';
import type { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import {
  type JwtBundleSet,
  JwtSource,
  type JwtSvid,
  parseAndValidateJwtSvid,
  WorkloadApiClient,
  type WorkloadApiClientOptions,
  type X509BundleSet,
  X509Source,
  type X509Svid,
} from '@spiffe-ts/core';
import { CliError } from './errors.js';
import { SPIFFE_HELPER_NAMES, writeIfChanged, type X509FileNames } from './files.js';

/** One JWT-SVID kept on disk. */
export interface HelperJwtSvid {
  /** The audience asked for (validated in the token). */
  audience: string;
  /** More audiences for the same token (spiffe-helper's `jwt_extra_audiences`). */
  extraAudiences?: readonly string[];
  /** File name in `dir`. */
  file: string;
}

/** The optional HTTP listener for liveness and readiness probes (spiffe-helper's `health_checks`). */
export interface HelperHealthOptions {
  /** TCP port (spiffe-helper's default 8081). */
  port: number;
  /** Listen address (default: all interfaces, as spiffe-helper). */
  host?: string;
  /** Path answering liveness: 200 unless a write failed (default /live). */
  livenessPath: string;
  /** Path answering readiness: 200 once every file is written (default /ready). */
  readinessPath: string;
}

/** What `runHelper` keeps on disk and whom it tells; `loadHelperConfig` builds it from a SPIFFE Helper config. */
export interface HelperOptions extends WorkloadApiClientOptions {
  /** Directory for every file (created 0700 when missing; refused when others can write to it). */
  dir: string;
  /** X.509 file names; default `SPIFFE_HELPER_NAMES`; `null`: no X.509 files. `federatedBundle` is not used. */
  names?: X509FileNames | null;
  /** Program to start once the first X.509-SVID is on disk. */
  cmd?: string;
  /** Its arguments. */
  cmdArgs?: string[];
  /** Signal sent to the program (and to `pidFile`'s process) after every change of the X.509 files. */
  renewSignal?: NodeJS.Signals;
  /** A file holding the pid of a process (not ours) to signal with `renewSignal` after each X.509 change. */
  pidFile?: string;
  /** JWT-SVIDs to keep fresh on disk (refetched at half their remaining life, as spiffe-helper). */
  jwtSvids?: HelperJwtSvid[];
  /** File for the JWT bundles: a JSON object of trust domain → base64 of its JWKS, as spiffe-helper writes. */
  jwtBundleFile?: string;
  /** Mode of the certificate and bundle files, exactly (the umask does not apply); default 0644. */
  certFileMode?: number;
  /** Mode of the key file; default 0600. */
  keyFileMode?: number;
  /** Mode of the JWT-SVID files; default 0600. */
  jwtSvidFileMode?: number;
  /** Mode of the JWT bundle file; default 0600. */
  jwtBundleFileMode?: number;
  /** Intermediates go to the bundle file instead of the SVID file (what MySQL and others expect). */
  addIntermediatesToBundle?: boolean;
  /** Federated trust domains' CAs are appended to the bundle file. */
  includeFederatedDomains?: boolean;
  /** Expired certificates are left out of the SVID and bundle files. */
  omitExpired?: boolean;
  /** Write the X.509-SVID and JWT-SVIDs whose Workload API `hint` is this (default: the first). */
  hint?: string;
  /** Write once and return (spiffe-helper's `daemon_mode = false`); `timeoutMs` bounds the wait. */
  once?: boolean;
  /** Serve liveness/readiness over HTTP while running. */
  health?: HelperHealthOptions;
  /**
   * When the program exits, return its exit code (default true). false: keep running and start it again on
   * the next X.509 change, as spiffe-helper does.
   */
  exitWithCmd?: boolean;
  /** Progress lines. */
  log?: (line: string) => void;
  /** Stops the helper (as SIGTERM does). */
  signal?: AbortSignal;
}

type WriteStatus = 'unwritten' | 'failed' | 'written';

const noop = () => undefined;

/** PEM of certificates, as Go's pem.EncodeToMemory writes it (64-column base64). */
function pem(certs: readonly X509Certificate[]): string {
  return certs
    .map((c) => {
      const b64 = c.raw.toString('base64').replace(/.{64}/g, '$&\n');
      return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
    })
    .join('');
}

/** The three X.509 files' contents, chosen and assembled as spiffe-helper does. */
function x509Contents(svids: readonly X509Svid[], bundles: X509BundleSet, o: HelperOptions) {
  const svid = o.hint ? svids.find((s) => s.hint === o.hint) : svids[0];
  if (!svid) {
    throw new CliError(
      'HELPER_NO_SVID',
      o.hint ? `no X.509-SVID with hint "${o.hint}" in the Workload API response` : 'no X.509-SVID received',
    );
  }
  const own = bundles.get(svid.id.trustDomain);
  if (!own) throw new CliError('HELPER_NO_SVID', `no bundle for trust domain "${svid.id.trustDomain.name}"`);
  let certs = [...svid.certificates];
  let bundle = [...own.authorities];
  if (o.addIntermediatesToBundle) {
    bundle = bundle.concat(certs.slice(1));
    certs = certs.slice(0, 1);
  }
  if (o.includeFederatedDomains) {
    for (const b of bundles.bundles()) if (!b.trustDomain.equals(svid.id.trustDomain)) bundle.push(...b.authorities);
  }
  if (o.omitExpired) {
    const now = Date.now();
    const live = (c: X509Certificate) => new Date(c.validTo).getTime() >= now;
    certs = certs.filter(live);
    bundle = bundle.filter(live);
  }
  return { svid, cert: pem(certs), key: svid.toPem().privateKey, bundle: pem(bundle) };
}

// go-jose writes a JWK's members in this order; the rest (none in SPIFFE bundles) follow in our order.
const JWK_ORDER = ['use', 'kty', 'kid', 'crv', 'alg', 'k', 'x', 'y', 'n', 'e'];
const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * spiffe-helper's JWT bundle file: `{"<trust domain>": "<base64 of the JWKS JSON>"}`, trust domains sorted
 * (as Go's encoding/json sorts map keys), each JWK's members in go-jose's order, keys sorted by `kid` (Go
 * takes them in map order, which varies from run to run).
 */
function jwtBundleContents(set: JwtBundleSet): string {
  const entries = set
    .bundles()
    .map((b) => {
      const keys = b
        .toJwks()
        .keys.map((k) => {
          const rec = k as Record<string, unknown>;
          const names = Object.keys(rec).sort(
            (x, y) => (JWK_ORDER.indexOf(x) + 1 || 99) - (JWK_ORDER.indexOf(y) + 1 || 99),
          );
          return Object.fromEntries(names.map((n) => [n, rec[n]]));
        })
        .sort((x, y) => byName(String(x.kid ?? ''), String(y.kid ?? '')));
      return [b.trustDomain.name, Buffer.from(JSON.stringify({ keys })).toString('base64')] as const;
    })
    .sort(([a], [b]) => byName(a, b));
  return JSON.stringify(Object.fromEntries(entries));
}

const audiences = (j: HelperJwtSvid) => [j.audience, ...(j.extraAudiences ?? [])];

/**
 * Keeps SVID files on disk in sync with the Workload API, like SPIFFE Helper: the X.509-SVID, key and bundle,
 * JWT-SVIDs and the JWT bundles, each written atomically (see `writeAtomic`) and only when its content
 * changes; starts a program after the first X.509 write and signals it (and a pid file's process) after each
 * change. With `once`, writes everything once and returns 0. Otherwise runs until SIGTERM/SIGINT or
 * `signal` (forwarded to the program) and resolves with the program's exit code (or 0).
 * @throws CliError (`HELPER_CMD_FAILED`, `HELPER_NO_SVID`), SpiffeError from the Workload API or the files
 */
export async function runHelper(o: HelperOptions): Promise<number> {
  const names = o.names === undefined ? SPIFFE_HELPER_NAMES : o.names;
  const modes = {
    cert: o.certFileMode ?? 0o644,
    key: o.keyFileMode ?? 0o600,
    jwtSvid: o.jwtSvidFileMode ?? 0o600,
    jwtBundle: o.jwtBundleFileMode ?? 0o600,
  };
  const jwtSvids = o.jwtSvids ?? [];
  const log = o.log ?? noop;
  const path = (name: string) => join(o.dir, name);

  const writeX509 = async (svids: readonly X509Svid[], bundles: X509BundleSet): Promise<boolean> => {
    const n = names as X509FileNames;
    const c = x509Contents(svids, bundles, o);
    // Key first, then chain: a reader that sees the new chain also finds the matching key.
    const k = await writeIfChanged(path(n.key), c.key, modes.key);
    const s = await writeIfChanged(path(n.svid), c.cert, modes.cert);
    const b = await writeIfChanged(path(n.bundle), c.bundle, modes.cert);
    const changed = k || s || b;
    log(
      changed
        ? `wrote X.509-SVID ${c.svid.id} (serial ${c.svid.leaf.serialNumber}, expires ${c.svid.expiresAt.toISOString()}) to ${o.dir}`
        : 'X.509 files unchanged',
    );
    return changed;
  };
  const writeJwtBundles = async (set: JwtBundleSet) => {
    if (o.jwtBundleFile && (await writeIfChanged(path(o.jwtBundleFile), jwtBundleContents(set), modes.jwtBundle))) {
      log(`wrote JWT bundles to ${path(o.jwtBundleFile)}`);
    }
  };
  const writeJwtSvid = async (j: HelperJwtSvid, svid: JwtSvid) => {
    if (await writeIfChanged(path(j.file), svid.token, modes.jwtSvid)) {
      log(
        `wrote JWT-SVID ${svid.id} for ${audiences(j).join(',')} (expires ${svid.expiresAt.toISOString()}) to ${path(j.file)}`,
      );
    }
  };

  if (o.once) {
    const client = new WorkloadApiClient(o);
    try {
      const call = { signal: o.signal };
      if (names) {
        const ctx = await client.fetchX509Context(call);
        await writeX509(ctx.svids, ctx.bundles);
      }
      const jwtBundles = o.jwtBundleFile || jwtSvids.length ? await client.fetchJwtBundles(call) : undefined;
      if (jwtBundles) await writeJwtBundles(jwtBundles);
      for (const j of jwtSvids) {
        const svid = await client.fetchJwtSvid({ audience: audiences(j), hint: o.hint }, call);
        await writeJwtSvid(j, await parseAndValidateJwtSvid(svid.token, jwtBundles as JwtBundleSet, j.audience));
      }
      return 0;
    } finally {
      await client.close();
    }
  }
  return new Daemon(o, names, jwtSvids, { writeX509, writeJwtBundles, writeJwtSvid }).run();
}

interface Writers {
  writeX509(svids: readonly X509Svid[], bundles: X509BundleSet): Promise<boolean>;
  writeJwtBundles(set: JwtBundleSet): Promise<void>;
  writeJwtSvid(j: HelperJwtSvid, svid: JwtSvid): Promise<void>;
}

/** The long-running helper: sources, timers, the program, the health listener. */
class Daemon {
  readonly #o: HelperOptions;
  readonly #names: X509FileNames | null;
  readonly #jwtSvids: HelperJwtSvid[];
  readonly #w: Writers;
  readonly #log: (line: string) => void;
  #x509Status: WriteStatus | undefined;
  readonly #jwtStatus = new Map<string, WriteStatus>();
  #queue: Promise<unknown> = Promise.resolve();
  #child: ChildProcess | undefined;
  #stopping = false;
  #finish!: (code: number) => void;
  #fail!: (err: unknown) => void;
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(o: HelperOptions, names: X509FileNames | null, jwtSvids: HelperJwtSvid[], w: Writers) {
    this.#o = o;
    this.#names = names;
    this.#jwtSvids = jwtSvids;
    this.#w = w;
    this.#log = o.log ?? noop;
    if (names) this.#x509Status = 'unwritten';
    if (o.jwtBundleFile) this.#jwtStatus.set(join(o.dir, o.jwtBundleFile), 'unwritten');
    for (const j of jwtSvids) this.#jwtStatus.set(join(o.dir, j.file), 'unwritten');
  }

  /** Runs one write at a time, so a rotation never interleaves with another. */
  #serial(task: () => Promise<void>): void {
    this.#queue = this.#queue.then(task).catch((err) => this.#fail(err));
  }

  async run(): Promise<number> {
    const o = this.#o;
    const done = new Promise<number>((resolve, reject) => {
      this.#finish = resolve;
      this.#fail = reject;
    });
    // The sources say why they wait (no socket, not registered...) through this logger, into our log.
    const line = (_fields: object, message: string) => this.#log(message);
    const logger = { error: line, warn: line, info: line, debug: noop };
    // A daemon waits for the agent as long as it takes (readiness says it has not written yet); the time
    // limit still bounds each one-shot call (JWT-SVID fetches).
    const x509 = this.#names ? new X509Source({ ...o, logger }) : undefined;
    const jwt = o.jwtBundleFile || this.#jwtSvids.length ? new JwtSource({ ...o, logger }) : undefined;
    let health: Server | undefined;
    const onSigterm = () => this.#stop('SIGTERM');
    const onSigint = () => this.#stop('SIGINT');
    const onAbort = () => this.#stop('SIGTERM');
    process.on('SIGTERM', onSigterm);
    process.on('SIGINT', onSigint);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (o.signal?.aborted) this.#stop('SIGTERM');
      if (o.health) health = await this.#startHealth(o.health);
      x509?.onUpdate(() =>
        this.#serial(async () => {
          if (this.#stopping) return;
          let changed: boolean;
          try {
            changed = await this.#w.writeX509(x509.getX509Svids(), x509.bundles);
            this.#x509Status = 'written';
          } catch (err) {
            this.#x509Status = 'failed';
            this.#log(`unable to write the X.509 files: ${(err as Error).message}`);
            return;
          }
          await this.#notify(changed);
        }),
      );
      if (jwt) {
        jwt.onUpdate(() =>
          this.#serial(async () => {
            if (this.#stopping || !o.jwtBundleFile) return;
            const key = join(o.dir, o.jwtBundleFile);
            try {
              await this.#w.writeJwtBundles(jwt.bundles);
              this.#jwtStatus.set(key, 'written');
              await this.#maybeStart();
            } catch (err) {
              this.#jwtStatus.set(key, 'failed');
              this.#log(`unable to write the JWT bundle: ${(err as Error).message}`);
            }
          }),
        );
        // Tokens are fetched once the JWT bundles are in (to validate them), then at half their remaining life.
        const start = () => {
          for (const j of this.#jwtSvids) this.#refreshJwt(jwt, j, 0, 1000);
        };
        jwt.ready({ signal: o.signal, timeoutMs: Number.POSITIVE_INFINITY }).then(start, noop);
      }
      return await done;
    } finally {
      process.off('SIGTERM', onSigterm);
      process.off('SIGINT', onSigint);
      o.signal?.removeEventListener('abort', onAbort);
      this.#stopping = true;
      for (const t of this.#timers) clearTimeout(t);
      await this.#queue.catch(noop);
      await x509?.close();
      await jwt?.close();
      await new Promise((r) => (health ? health.close(r) : r(undefined)));
    }
  }

  #refreshJwt(source: JwtSource, j: HelperJwtSvid, delayMs: number, retryMs: number): void {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      this.#serial(async () => {
        if (this.#stopping) return;
        const key = join(this.#o.dir, j.file);
        try {
          const fetched = await source.fetchJwtSvid({ audience: audiences(j), hint: this.#o.hint });
          const svid = await parseAndValidateJwtSvid(fetched.token, source, j.audience);
          await this.#w.writeJwtSvid(j, svid);
          this.#jwtStatus.set(key, 'written');
          await this.#maybeStart();
          // spiffe-helper's schedule: half the remaining life plus a second.
          this.#refreshJwt(source, j, Math.max(1000, (svid.expiresAt.getTime() - Date.now()) / 2 + 1000), 1000);
        } catch (err) {
          this.#jwtStatus.set(key, 'failed');
          this.#log(`unable to update the JWT-SVID for ${audiences(j).join(',')}: ${(err as Error).message}`);
          this.#refreshJwt(source, j, retryMs, Math.min(retryMs * 2, 60_000));
        }
      });
    }, delayMs);
    this.#timers.add(t);
  }

  /**
   * After an X.509 update: start the program if it is not running (once every file is written), else signal
   * it if the files changed; signal the pid file's process if they changed.
   */
  async #notify(changed: boolean): Promise<void> {
    const o = this.#o;
    if (o.cmd) {
      if (!this.#child) await this.#maybeStart();
      else if (changed && o.renewSignal) {
        this.#child.kill(o.renewSignal);
        this.#log(`sent ${o.renewSignal} to pid ${this.#child.pid}`);
      }
    }
    if (changed && o.pidFile && o.renewSignal) await this.#signalPidFile(o.pidFile, o.renewSignal);
  }

  /** Starts the program once every configured file is on disk, so that it never starts without one. */
  async #maybeStart(): Promise<void> {
    const o = this.#o;
    if (!o.cmd || this.#child || this.#stopping) return;
    if (this.#x509Status === 'unwritten' || this.#x509Status === 'failed') return;
    if ([...this.#jwtStatus.values()].some((s) => s !== 'written')) return;
    this.#child = await this.#spawn(o.cmd, o.cmdArgs ?? []);
  }

  #spawn(cmd: string, args: string[]): Promise<ChildProcess> {
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { stdio: 'inherit' });
      child.once('error', (err) => reject(new CliError('HELPER_CMD_FAILED', `cannot start ${cmd}: ${err.message}`)));
      child.once('spawn', () => {
        this.#log(`started ${cmd} (pid ${child.pid})`);
        child.once('exit', (code, sig) => {
          this.#log(`${cmd} exited (${sig ?? code})`);
          if (this.#child === child) this.#child = undefined;
          if (this.#o.exitWithCmd !== false) this.#finish(code ?? 1);
          else if (this.#stopping) this.#finish(0);
        });
        resolve(child);
      });
    }).then(
      (c) => c as ChildProcess,
      (err) => {
        this.#fail(err);
        throw err;
      },
    );
  }

  /** Like spiffe-helper: read the pid, signal it; retried with backoff (the process may be writing its pid). */
  async #signalPidFile(file: string, sig: NodeJS.Signals): Promise<void> {
    let wait = 100;
    for (let attempt = 1; ; attempt++) {
      try {
        const text = (await readFile(file, 'utf8')).trim();
        if (!/^\d+$/.test(text)) throw new Error(`pid file ${file} does not hold a pid: "${text.slice(0, 20)}"`);
        process.kill(Number(text), sig);
        this.#log(`sent ${sig} to pid ${text} (from ${file})`);
        return;
      } catch (err) {
        if (attempt >= 10 || this.#stopping) {
          this.#log(`unable to signal the process in ${file}: ${(err as Error).message}`);
          return;
        }
        await new Promise((r) => setTimeout(r, wait));
        wait *= 2;
      }
    }
  }

  #stop(sig: NodeJS.Signals): void {
    if (this.#stopping) return;
    this.#stopping = true;
    const child = this.#child;
    if (child && child.exitCode === null && child.signalCode === null) {
      this.#log(`forwarding ${sig} to pid ${child.pid}`);
      child.kill(sig);
    } else this.#finish(0);
  }

  #healthBody(good: boolean): string {
    const statuses: Record<string, unknown> = {};
    if (this.#x509Status) statuses.x509_write_status = this.#x509Status;
    statuses.jwt_write_status = Object.fromEntries([...this.#jwtStatus].sort(([a], [b]) => (a < b ? -1 : 1)));
    return JSON.stringify({ status: good ? 'OK' : 'Service Unavailable', health: { file_write_statuses: statuses } });
  }

  #startHealth(h: HelperHealthOptions): Promise<Server> {
    const server = createServer((req, res) => {
      const url = (req.url ?? '').split('?')[0];
      const statuses = [...this.#jwtStatus.values(), ...(this.#x509Status ? [this.#x509Status] : [])];
      let good: boolean;
      if (url === h.livenessPath) good = !statuses.includes('failed');
      else if (url === h.readinessPath) good = statuses.every((s) => s === 'written');
      else {
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('404 page not found\n');
        return;
      }
      res.writeHead(good ? 200 : 503, { 'content-type': 'application/json' }).end(this.#healthBody(good));
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(h.port, h.host, () => {
        this.#log(`health checks on port ${h.port}: ${h.livenessPath}, ${h.readinessPath}`);
        resolve(server);
      });
    });
  }
}
