// Runs real SPIFFE software for the interoperability suite: a SPIRE server and agent (join-token node
// attestation, unix workload attestation by binary path, data in a temp dir) and the go-spiffe programs
// from ./go. Binaries come from test/interop/build.sh (run.sh builds them first).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

const cache = process.env.SPIFFE_TS_INTEROP_CACHE ?? join(homedir(), '.cache', 'spiffe-ts-interop');

/** go-spiffe version of the programs in ./go, as go/go.mod requires it. */
export const GO_SPIFFE_VERSION =
  /github\.com\/spiffe\/go-spiffe\/v2 (v\S+)/.exec(
    readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'go', 'go.mod'), 'utf8'),
  )?.[1] ?? 'unknown';

function builtVersions(): string | undefined {
  try {
    return readFileSync(join(cache, 'spire-versions'), 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * SPIRE versions to test, newest first: `SPIRE_VERSIONS` (space-separated, run.sh sets it), else the ones
 * build.sh last built.
 */
export const SPIRE_VERSIONS: readonly string[] = (process.env.SPIRE_VERSIONS ?? builtVersions() ?? 'v1.15.3 v1.13.3')
  .split(/\s+/)
  .filter((v) => v !== '');

/** The SPIRE version `Spire.startServer` runs by default: the newest tested (`bin.spireServer` is that one). */
export const SPIRE_VERSION = process.env.SPIRE_VERSION ?? SPIRE_VERSIONS[0] ?? 'v1.15.3';

/** Paths of the SPIRE server and agent binaries of one version, as build.sh lays them out. */
export function spireBin(version: string): { spireServer: string; spireAgent: string } {
  const dir = join(cache, `spire-${version}`, 'bin');
  return { spireServer: join(dir, 'spire-server'), spireAgent: join(dir, 'spire-agent') };
}

export const bin = {
  spireServer: join(cache, 'spire-bin', 'spire-server'),
  spireAgent: join(cache, 'spire-bin', 'spire-agent'),
  fetch: join(cache, 'go-bin-current', 'fetch'),
  mtlsServer: join(cache, 'go-bin-current', 'mtls-server'),
  mtlsClient: join(cache, 'go-bin-current', 'mtls-client'),
  /** go-spiffe federation bundle endpoint client and server (`-mode fetch|serve`, see go/federation). */
  federation: join(cache, 'go-bin-current', 'federation'),
};

export function binariesPresent(): boolean {
  return Object.values(bin).every((p) => existsSync(p));
}

/** Whether build.sh built this SPIRE version (and the go-spiffe programs). */
export function spirePresent(version: string): boolean {
  return binariesPresent() && Object.values(spireBin(version)).every((p) => existsSync(p));
}

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** Runs a Go program that prints one JSON object per line; resolves with the parsed lines and exit code. */
export async function runJson(
  file: string,
  args: string[],
  timeoutMs = 60_000,
): Promise<{ code: number; lines: Record<string, unknown>[]; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      const lines = stdout
        .split('\n')
        .filter((l) => l.trim().startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      resolve({ code, lines, stderr });
    });
  });
}

/** Starts a long-running Go program and resolves with its first JSON stdout line. */
export async function startJson(
  file: string,
  args: string[],
): Promise<{ child: ChildProcess; first: Record<string, unknown>; stop: () => Promise<void> }> {
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const first = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${file} did not start: ${stderr}`)), 60_000);
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${file} exited with ${code}: ${stderr}`));
    });
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  return { child, first, stop };
}

/** The peer a go-spiffe mTLS program accepts: one SPIFFE ID, or any member of a trust domain. */
export type GoPeer = { id: string } | { trustDomain: string };

/**
 * go-spiffe's mtls-client (`client`: `bin.mtlsClient` or a registered copy of it) as a workload of the Workload
 * API at `workloadApi`: one GET of `url`, accepting only the server `server`. Prints `{"status","body"}`.
 */
export function goMtlsGet(
  client: string,
  workloadApi: string,
  url: string,
  server: GoPeer,
): ReturnType<typeof runJson> {
  const expect = 'id' in server ? ['-server-id', server.id] : ['-server-td', server.trustDomain];
  return runJson(client, ['-workload-api', workloadApi, '-url', url, ...expect]);
}

/**
 * Starts go-spiffe's mtls-server (`server`: `bin.mtlsServer` or a registered copy) as a workload of the Workload
 * API at `workloadApi`, allowing only the client `allow`; its first line is `{"address","id"}`.
 */
export function goMtlsServe(server: string, workloadApi: string, allow: GoPeer): ReturnType<typeof startJson> {
  const allowed = 'id' in allow ? ['-allow', allow.id] : ['-allow-td', allow.trustDomain];
  return startJson(server, ['-workload-api', workloadApi, ...allowed]);
}

/** How go-spiffe's federation program authenticates a bundle endpoint (files hold PEM or SPIFFE JSON). */
export type GoEndpointProfile =
  | { type: 'https_spiffe'; endpointId: string; bundleFile: string }
  | { type: 'https_web'; caFile: string };

/**
 * go-spiffe's `federation.FetchBundle` (`bin.federation -mode fetch`): the bundle of `trustDomain` from the
 * endpoint at `url`. Prints `{"trustDomain","x509Authorities","jwtKids","sequenceNumber","refreshHint"}`.
 */
export function goFetchBundle(
  trustDomain: string,
  url: string,
  profile: GoEndpointProfile,
): ReturnType<typeof runJson> {
  const auth =
    profile.type === 'https_spiffe'
      ? ['-profile', 'https_spiffe', '-endpoint-id', profile.endpointId, '-bundle', profile.bundleFile]
      : ['-profile', 'https_web', '-ca', profile.caFile];
  return runJson(bin.federation, ['-mode', 'fetch', '-td', trustDomain, '-url', url, ...auth]);
}

export interface EntryOptions {
  spiffeId: string;
  selectors: string[];
  x509SvidTtl?: number;
  jwtSvidTtl?: number;
  federatesWith?: string[];
  /** Entry hint (`-hint`), which the Workload API returns with the SVIDs to tell several apart. */
  hint?: string;
}

/** Options of `Spire.startServer`. */
export interface SpireOptions {
  /** SPIRE version to run (default: `SPIRE_VERSION`, the newest built). */
  version?: string;
  /**
   * Extra environment of the server process, e.g. `SSL_CERT_FILE` (Go's system roots) so that SPIRE trusts a
   * test root when it fetches an `https_web` bundle endpoint.
   */
  env?: Record<string, string>;
  /** Serve this trust domain's SPIFFE bundle endpoint (`federation { bundle_endpoint { … } }`) on 127.0.0.1. */
  bundleEndpoint?: SpireBundleEndpointOptions;
}

/** SPIRE's bundle endpoint: `https_spiffe` (its server SVID, `spiffe://<td>/spire/server`) or `https_web`. */
export interface SpireBundleEndpointOptions {
  /** Port (default: a free one). */
  port?: number;
  /** `refresh_hint` as a Go duration ("2s"); SPIRE serves it as given (it warns below 1 m). Default 5 m. */
  refreshHint?: string;
  /** `https_web` with a serving certificate and key (PEM files); default `https_spiffe`. */
  servingCert?: { certFile: string; keyFile: string };
}

/** A dynamic federation relationship (`spire-server federation create`). */
export interface SpireFederationOptions {
  /** The foreign trust domain (name, no scheme). */
  trustDomain: string;
  /** Its bundle endpoint URL. */
  url: string;
  /** `https_spiffe` with this endpoint SPIFFE ID, else `https_web`. */
  endpointSpiffeId?: string;
  /** Its bootstrap bundle in SPIFFE JSON (needed for `https_spiffe`). */
  bundleJson?: string;
}

/** A SPIRE server and one agent on loopback, for trust domain `trustDomain`, in a fresh temp dir. */
export class Spire {
  readonly dir: string;
  readonly trustDomain: string;
  readonly serverSocket: string;
  readonly agentSocket: string;
  /** SPIRE version of this server and agent. */
  readonly version: string;
  readonly #bin: { spireServer: string; spireAgent: string };
  #server: ChildProcess | undefined;
  #agent: ChildProcess | undefined;
  agentId = '';

  private constructor(trustDomain: string, version: string) {
    this.trustDomain = trustDomain;
    this.version = version;
    this.#bin = spireBin(version);
    this.dir = mkdtempSync(join(tmpdir(), 'spire-'));
    this.serverSocket = join(this.dir, 'server.sock');
    this.agentSocket = join(this.dir, 'agent.sock');
  }

  get workloadApiAddress(): string {
    return `unix://${this.agentSocket}`;
  }

  /** Starts the server, mints a join token, and returns before the agent starts so entries can be created first. */
  static async startServer(trustDomain = 'example.org', options: SpireOptions = {}): Promise<Spire> {
    const s = new Spire(trustDomain, options.version ?? SPIRE_VERSION);
    const port = await freePort();
    s.#port = port;
    let federation = '';
    const be = options.bundleEndpoint;
    if (be) {
      const bePort = be.port ?? (await freePort());
      s.bundleEndpointUrl = `https://127.0.0.1:${bePort}/`;
      const profile = be.servingCert
        ? `profile "https_web" {
        serving_cert_file {
          cert_file_path = "${be.servingCert.certFile}"
          key_file_path = "${be.servingCert.keyFile}"
          file_sync_interval = "1h"
        }
      }`
        : 'profile "https_spiffe" {}';
      federation = `  federation {
    bundle_endpoint {
      address = "127.0.0.1"
      port = ${bePort}
      refresh_hint = "${be.refreshHint ?? '5m'}"
      ${profile}
    }
  }
`;
    }
    writeFileSync(
      join(s.dir, 'server.conf'),
      `server {
  bind_address = "127.0.0.1"
  bind_port = "${port}"
  socket_path = "${s.serverSocket}"
  trust_domain = "${trustDomain}"
  data_dir = "${join(s.dir, 'server-data')}"
  log_level = "INFO"
  ca_ttl = "24h"
  default_x509_svid_ttl = "1h"
  default_jwt_svid_ttl = "5m"
${federation}}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "${join(s.dir, 'server-data', 'datastore.sqlite3')}"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
}
`,
    );
    s.#server = s.#spawn(s.#bin.spireServer, ['run', '-config', join(s.dir, 'server.conf')], 'server.log', options.env);
    try {
      const up = await waitFor(
        'spire-server healthcheck',
        async () => {
          // A server that exited (bad config) will not come up: stop waiting.
          if (s.#server?.exitCode !== null) return false;
          await run(s.#bin.spireServer, ['healthcheck', '-socketPath', s.serverSocket]);
          return true;
        },
        60_000,
      );
      if (!up) throw new Error(`spire-server exited with ${s.#server?.exitCode}`);
    } catch (err) {
      const logs = s.logs();
      await s.stop();
      throw new Error(`${(err as Error).message}\n${logs}`);
    }
    const { stdout } = await s.server(['token', 'generate', '-ttl', '600']);
    const token = /Token:\s*(\S+)/.exec(stdout)?.[1];
    if (!token) throw new Error(`no join token in: ${stdout}`);
    s.#token = token;
    s.agentId = `spiffe://${trustDomain}/spire/agent/join_token/${token}`;
    return s;
  }

  #port = 0;
  #token = '';
  /** URL of this server's bundle endpoint, when started with `bundleEndpoint`. */
  bundleEndpointUrl: string | undefined;

  /** SPIFFE ID of the SPIRE server's X.509-SVID, which its `https_spiffe` bundle endpoint presents. */
  get serverSpiffeId(): string {
    return `spiffe://${this.trustDomain}/spire/server`;
  }

  #spawn(file: string, args: string[], log: string, env?: Record<string, string>): ChildProcess {
    const fd = openSync(join(this.dir, log), 'a');
    const child = spawn(file, args, {
      stdio: ['ignore', fd, fd],
      cwd: this.dir,
      env: env ? { ...process.env, ...env } : process.env,
    });
    child.on('exit', (code, signal) => {
      if (code !== 0 && signal === null)
        process.stderr.write(`${file} exited with ${code}; see ${join(this.dir, log)}\n`);
    });
    return child;
  }

  /** Runs `spire-server <args> -socketPath <server socket>`. */
  async server(args: string[]): Promise<{ stdout: string; stderr: string }> {
    return run(this.#bin.spireServer, [...args, '-socketPath', this.serverSocket]);
  }

  async createEntry(e: EntryOptions): Promise<void> {
    const args = ['entry', 'create', '-parentID', this.agentId, '-spiffeID', e.spiffeId];
    for (const s of e.selectors) args.push('-selector', s);
    if (e.x509SvidTtl) args.push('-x509SVIDTTL', String(e.x509SvidTtl));
    if (e.jwtSvidTtl) args.push('-jwtSVIDTTL', String(e.jwtSvidTtl));
    for (const f of e.federatesWith ?? []) args.push('-federatesWith', f);
    if (e.hint !== undefined) args.push('-hint', e.hint);
    await this.server(args);
  }

  /**
   * Registers a Go program as a workload of its own: copies `file` into this SPIRE's directory as `name` (so it
   * has its own `unix:path:` selector) and creates an entry for that copy. Returns the copy's path.
   */
  async registerProgram(file: string, name: string, entry: Omit<EntryOptions, 'selectors'>): Promise<string> {
    const path = workloadBinary(file, this.dir, name);
    await this.createEntry({ ...entry, selectors: [`unix:path:${path}`] });
    return path;
  }

  /** Loads another trust domain's SPIFFE bundle (JSON) as a federated bundle. */
  async setFederatedBundle(trustDomainId: string, spiffeBundleJson: string): Promise<void> {
    const file = join(this.dir, `federated-${Date.now()}.json`);
    writeFileSync(file, spiffeBundleJson);
    await this.server(['bundle', 'set', '-format', 'spiffe', '-id', trustDomainId, '-path', file]);
  }

  /**
   * Creates a dynamic federation relationship (`spire-server federation create`): SPIRE then fetches the
   * foreign bundle from its endpoint at the bundle's refresh hint (SPIRE polls at a quarter of the hint, the
   * hint taken as at least 1 minute: so every 15 s at most).
   */
  async createFederation(f: SpireFederationOptions): Promise<void> {
    const args = ['federation', 'create', '-trustDomain', f.trustDomain, '-bundleEndpointURL', f.url];
    if (f.endpointSpiffeId)
      args.push('-bundleEndpointProfile', 'https_spiffe', '-endpointSpiffeID', f.endpointSpiffeId);
    else args.push('-bundleEndpointProfile', 'https_web');
    if (f.bundleJson !== undefined) {
      const file = join(this.dir, `bootstrap-${f.trustDomain}-${Date.now()}.json`);
      writeFileSync(file, f.bundleJson);
      args.push('-trustDomainBundlePath', file, '-trustDomainBundleFormat', 'spiffe');
    }
    await this.server(args);
  }

  /** A federated trust domain's bundle as SPIRE stores it (SPIFFE JSON), or undefined when it has none. */
  async federatedBundleJson(trustDomainId: string): Promise<string | undefined> {
    try {
      return (await this.server(['bundle', 'list', '-id', trustDomainId, '-format', 'spiffe'])).stdout;
    } catch {
      return undefined;
    }
  }

  /** This trust domain's bundle as SPIRE prints it in SPIFFE format. */
  async bundleSpiffeJson(): Promise<string> {
    return (await this.server(['bundle', 'show', '-format', 'spiffe'])).stdout;
  }

  async startAgent(): Promise<void> {
    writeFileSync(
      join(this.dir, 'agent.conf'),
      `agent {
  data_dir = "${join(this.dir, 'agent-data')}"
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = "${this.#port}"
  socket_path = "${this.agentSocket}"
  insecure_bootstrap = true
  trust_domain = "${this.trustDomain}"
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {
      discover_workload_path = true
      # -1: no unix:sha256 selector. Otherwise SPIRE hashes the caller's whole binary on every call
      # (100 MB for node: ~50 ms per fetch), which would swamp what the suite and the benchmark measure.
      workload_size_limit = -1
    }
  }
}
`,
    );
    this.#agent = this.#spawn(
      this.#bin.spireAgent,
      ['run', '-config', join(this.dir, 'agent.conf'), '-joinToken', this.#token],
      'agent.log',
    );
    await waitFor('spire-agent healthcheck', async () => {
      await run(this.#bin.spireAgent, ['healthcheck', '-socketPath', this.agentSocket]);
      return true;
    });
  }

  /** The whole SPIRE server log so far. */
  serverLog(): string {
    try {
      return readFileSync(join(this.dir, 'server.log'), 'utf8');
    } catch {
      return '';
    }
  }

  logs(): string {
    const tail = (f: string) => {
      try {
        return readFileSync(join(this.dir, f), 'utf8').split('\n').slice(-40).join('\n');
      } catch {
        return '';
      }
    };
    return `--- server.log ---\n${tail('server.log')}\n--- agent.log ---\n${tail('agent.log')}`;
  }

  /** Stops the SPIRE server only (its bundle endpoint goes away; the agent keeps running on cached SVIDs). */
  async stopServer(): Promise<void> {
    const child = this.#server;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    child.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    for (const child of [this.#agent, this.#server]) {
      if (!child || child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      child.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `unix:path:` selector of this Node binary (the unix workload attestor resolves /proc/<pid>/exe). */
export function nodeSelector(): string {
  return `unix:path:${realpathSync(process.execPath)}`;
}

/**
 * Copies a Go program to `dir/name` so it gets its own `unix:path:` selector (and so its own SPIFFE ID).
 * Returns the copy's path.
 */
export function workloadBinary(file: string, dir: string, name: string): string {
  const dest = join(dir, name);
  copyFileSync(file, dest);
  return dest;
}
