import { mkdir, mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  type BundleEndpointServer,
  createBundleEndpointServer,
  JwtBundleSet,
  type JwtSvid,
  parseAndValidateJwtSvid,
  SpiffeBundle,
  SpiffeId,
  type TrustDomain,
  toSpiffeId,
  type X509Bundle,
  type X509Svid,
} from '@spiffe-ts/core';
import { jsonToStruct, WORKLOAD_API_HEADER, workloadApiServiceDefinition } from '@spiffe-ts/core/internal';
import { DevCa } from './ca.js';

/** Identity of a workload socket: one SPIFFE ID, several, or none (every call answers PermissionDenied). */
export type WorkloadIdentity = SpiffeId | string | ReadonlyArray<SpiffeId | string> | null;

/** Deliberate misbehaviour, for fault tests. */
export type Fault =
  | { kind: 'none' }
  /** Streams send X509SVIDResponse/X509BundlesResponse/JWTBundlesResponse messages with garbage bytes. */
  | { kind: 'garbage' }
  /** Every call waits this long before answering. */
  | { kind: 'slow'; delayMs: number }
  /** Every call fails with this gRPC status. */
  | { kind: 'error'; code: grpc.status; message?: string }
  /**
   * X509SVIDResponse messages carry these SVIDs, with `bundle` as their trust domain's bundle, and these
   * federated bundles, instead of the issued ones (an agent that is compromised, misconfigured, or federated
   * with very many trust domains); what is not given is served as usual. Pushed on the next rotateSvids().
   */
  | { kind: 'x509'; svids?: readonly X509Svid[]; bundle?: X509Bundle; federatedBundles?: readonly X509Bundle[] };

/** Options for {@link DevWorkloadApiServer.start}. */
export interface DevWorkloadApiServerOptions {
  /** Trust domain of the in-process CA (default example.org). Ignored when `ca` is given. */
  trustDomain?: TrustDomain | string;
  /** Use an existing CA (e.g. to restart a server with the same trust). */
  ca?: DevCa;
  /** Directory for the sockets (default: a new temp dir, removed on stop). */
  socketDir?: string;
  /**
   * Workloads by socket name: `{ orders: 'spiffe://example.org/service/orders' }` serves that identity on
   * `<socketDir>/orders.sock`. A path (`'/service/orders'`) is taken in the CA's trust domain.
   */
  workloads: Record<string, WorkloadIdentity>;
  /** X.509-SVID lifetime in seconds (default 3600; SVIDs rotate at half-life). */
  svidTtlSeconds?: number;
  /** JWT-SVID lifetime in seconds (default 300). */
  jwtTtlSeconds?: number;
  /** Rotate X.509-SVIDs automatically at half-life (default true). */
  autoRotate?: boolean;
  /** CAs of other trust domains whose bundles are served as federated bundles. */
  federatedWith?: DevCa[];
  /** Also listen on TCP 127.0.0.1:<port> for this workload name (port 0 picks one). */
  tcp?: { workload: string; port?: number };
  /**
   * Also serve this trust domain's SPIFFE bundle endpoint (SPIFFE Federation, `https_spiffe` profile), so that
   * another trust domain can federate with this one: `bundleEndpointUrl` and `bundleEndpointSpiffeId` are what
   * its relationship is configured with, and `ca.spiffeBundle()` (or `ca.x509Bundle()`) its bootstrap bundle.
   */
  bundleEndpoint?: DevBundleEndpointOptions;
}

/** Options of the dev server's bundle endpoint. */
export interface DevBundleEndpointOptions {
  /** Port (default 0: any free port). */
  port?: number;
  /** Host (default 127.0.0.1). */
  host?: string;
  /** `spiffe_refresh_hint` in seconds (default: half the X.509-SVID lifetime, at least 1). */
  refreshHintSeconds?: number;
  /** The endpoint's SPIFFE ID path (default "/bundle-endpoint"). */
  path?: string;
}

type Stream = grpc.ServerWritableStream<unknown, unknown>;

interface Workload {
  name: string;
  ids: SpiffeId[];
  svids: X509Svid[];
  server: grpc.Server;
  x509Streams: Set<Stream>;
  x509BundleStreams: Set<Stream>;
  jwtBundleStreams: Set<Stream>;
  timer: NodeJS.Timeout | undefined;
  fault: Fault;
}

const JWT_CACHE_MAX = 1024;

function grpcError(code: grpc.status, details: string): Partial<grpc.StatusObject> & Error {
  return Object.assign(new Error(details), { code, details });
}

/**
 * A local development SPIFFE Workload API: the standard gRPC service on real unix sockets, one per
 * workload, backed by an in-process CA. It issues short-lived SVIDs, rotates them before expiry, streams
 * updates to watchers, serves bundles and validates JWT-SVIDs. Use it in development and in tests instead
 * of a SPIRE agent.
 */
export class DevWorkloadApiServer {
  /** The in-process CA that issues the workloads' SVIDs. */
  readonly ca: DevCa;
  /** The directory holding the workloads' sockets. */
  readonly socketDir: string;
  /** Lifetime of issued X.509-SVIDs, in seconds. */
  readonly svidTtlSeconds: number;
  /** Lifetime of issued JWT-SVIDs, in seconds. */
  readonly jwtTtlSeconds: number;
  readonly #ownsDir: boolean;
  readonly #autoRotate: boolean;
  readonly #workloads = new Map<string, Workload>();
  #federated: DevCa[];
  // Issued JWT-SVIDs by signing key, SPIFFE ID and audience set, reused until half their lifetime like the
  // SPIRE agent's cache: clients see the same token on repeated fetches, and no fetch pays for a signature.
  readonly #jwtCache = new Map<string, JwtSvid>();
  #tcpPort: number | undefined;
  #bundleEndpoint: BundleEndpointServer | undefined;
  #endpointSvid: X509Svid | undefined;
  #endpointTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  private constructor(ca: DevCa, socketDir: string, ownsDir: boolean, options: DevWorkloadApiServerOptions) {
    this.ca = ca;
    this.socketDir = socketDir;
    this.#ownsDir = ownsDir;
    this.svidTtlSeconds = options.svidTtlSeconds ?? ca.svidTtlSeconds;
    this.jwtTtlSeconds = options.jwtTtlSeconds ?? ca.jwtTtlSeconds;
    this.#autoRotate = options.autoRotate ?? true;
    this.#federated = [...(options.federatedWith ?? [])];
  }

  /**
   * Creates the CA (unless `ca` is given), issues each workload's SVIDs and listens on one unix socket per
   * workload (plus TCP and the bundle endpoint when asked). If any step fails, stops what was started and rethrows.
   */
  static async start(options: DevWorkloadApiServerOptions): Promise<DevWorkloadApiServer> {
    const ca =
      options.ca ??
      (await DevCa.create({
        trustDomain: options.trustDomain ?? 'example.org',
        svidTtlSeconds: options.svidTtlSeconds,
        jwtTtlSeconds: options.jwtTtlSeconds,
      }));
    const ownsDir = !options.socketDir;
    const dir = options.socketDir ?? (await mkdtemp(join(tmpdir(), 'spiffe-dev-')));
    await mkdir(dir, { recursive: true });
    const server = new DevWorkloadApiServer(ca, dir, ownsDir, options);
    try {
      for (const [name, identity] of Object.entries(options.workloads)) await server.addWorkload(name, identity);
      if (options.tcp) await server.#listenTcp(options.tcp.workload, options.tcp.port ?? 0);
      if (options.bundleEndpoint) await server.#serveBundleEndpoint(options.bundleEndpoint);
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  /** The CA's trust domain. */
  get trustDomain(): TrustDomain {
    return this.ca.trustDomain;
  }

  /** Path of a workload's socket. */
  socketPath(name: string): string {
    return join(this.socketDir, `${name}.sock`);
  }

  /** `unix:///…/<name>.sock`, ready for SPIFFE_ENDPOINT_SOCKET. */
  address(name: string): string {
    return `unix://${this.socketPath(name)}`;
  }

  /** `tcp://127.0.0.1:<port>` when the server was started with `tcp`. */
  get tcpAddress(): string | undefined {
    return this.#tcpPort === undefined ? undefined : `tcp://127.0.0.1:${this.#tcpPort}`;
  }

  /** URL of this trust domain's bundle endpoint, when started with `bundleEndpoint`. */
  get bundleEndpointUrl(): string | undefined {
    return this.#bundleEndpoint?.url;
  }

  /** SPIFFE ID the bundle endpoint presents (`https_spiffe`), when started with `bundleEndpoint`. */
  get bundleEndpointSpiffeId(): SpiffeId | undefined {
    return this.#bundleEndpoint?.endpointSpiffeId;
  }

  async #serveBundleEndpoint(options: DevBundleEndpointOptions): Promise<void> {
    const id = SpiffeId.fromPath(this.ca.trustDomain, options.path ?? '/bundle-endpoint');
    await this.#issueEndpointSvid(id);
    const hint = options.refreshHintSeconds ?? Math.max(1, Math.floor(this.svidTtlSeconds / 2));
    this.#bundleEndpoint = await createBundleEndpointServer({
      trustDomain: this.ca.trustDomain,
      bundle: () => {
        const b = this.ca.spiffeBundle();
        return new SpiffeBundle({
          trustDomain: b.trustDomain,
          x509Authorities: b.x509Authorities,
          jwtAuthorities: b.jwtAuthorities.values(),
          sequenceNumber: b.sequenceNumber,
          refreshHintSeconds: hint,
        });
      },
      // Read at every connection: a re-issued endpoint SVID is served from the next connection on.
      profile: { type: 'https_spiffe', svid: { getX509Svid: () => this.#endpointSvid as X509Svid } },
      port: options.port ?? 0,
      host: options.host ?? '127.0.0.1',
    });
  }

  /** Issues the bundle endpoint's SVID from the current authority and schedules its renewal at half-life. */
  async #issueEndpointSvid(id: SpiffeId | undefined = this.#endpointSvid?.id): Promise<void> {
    if (!id || this.#stopped) return;
    this.#endpointSvid = await this.ca.issueX509Svid(id, { ttlSeconds: this.svidTtlSeconds });
    clearTimeout(this.#endpointTimer);
    if (this.#autoRotate) {
      this.#endpointTimer = setTimeout(
        () => {
          void this.#issueEndpointSvid();
        },
        Math.max(100, (this.svidTtlSeconds * 1000) / 2),
      );
      this.#endpointTimer.unref();
    }
  }

  /** Names of the configured workloads. */
  get workloadNames(): string[] {
    return [...this.#workloads.keys()];
  }

  /** Current SVIDs of a workload. */
  svidsOf(name: string): readonly X509Svid[] {
    return this.#get(name).svids;
  }

  #get(name: string): Workload {
    const w = this.#workloads.get(name);
    if (!w) throw new Error(`unknown workload "${name}"`);
    return w;
  }

  #toIds(identity: WorkloadIdentity): SpiffeId[] {
    if (identity === null) return [];
    const list = typeof identity === 'string' || identity instanceof SpiffeId ? [identity] : identity;
    return list.map((i) =>
      typeof i === 'string' && i.startsWith('/') ? SpiffeId.fromPath(this.ca.trustDomain, i) : toSpiffeId(i),
    );
  }

  /** Adds a workload socket at runtime. */
  async addWorkload(name: string, identity: WorkloadIdentity): Promise<string> {
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`invalid workload name "${name}"`);
    if (this.#workloads.has(name)) throw new Error(`workload "${name}" already exists`);
    const ids = this.#toIds(identity);
    const w: Workload = {
      name,
      ids,
      svids: [],
      server: new grpc.Server(),
      x509Streams: new Set(),
      x509BundleStreams: new Set(),
      jwtBundleStreams: new Set(),
      timer: undefined,
      fault: { kind: 'none' },
    };
    await this.#issue(w);
    w.server.addService(workloadApiServiceDefinition(), this.#handlers(w));
    const path = this.socketPath(name);
    await unlink(path).catch(() => undefined);
    await new Promise<void>((resolve, reject) =>
      w.server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    this.#workloads.set(name, w);
    return this.address(name);
  }

  async #listenTcp(name: string, port: number): Promise<void> {
    const w = this.#get(name);
    this.#tcpPort = await new Promise<number>((resolve, reject) =>
      w.server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
  }

  async #issue(w: Workload): Promise<void> {
    w.svids = await Promise.all(w.ids.map((id) => this.ca.issueX509Svid(id, { ttlSeconds: this.svidTtlSeconds })));
    clearTimeout(w.timer);
    if (this.#autoRotate && w.ids.length > 0 && !this.#stopped) {
      w.timer = setTimeout(
        () => {
          void this.rotateSvids([w.name]);
        },
        Math.max(100, (this.svidTtlSeconds * 1000) / 2),
      );
      w.timer.unref();
    }
  }

  /** Sets a fault on one workload (or all): garbage, slow, or error answers. */
  setFault(fault: Fault, name?: string): void {
    for (const w of name ? [this.#get(name)] : this.#workloads.values()) w.fault = fault;
  }

  /** Re-issues the SVIDs of the given workloads (default all) and pushes them to watchers. */
  async rotateSvids(names?: string[]): Promise<void> {
    const targets = (names ?? [...this.#workloads.keys()]).map((n) => this.#get(n));
    for (const w of targets) {
      await this.#issue(w);
      for (const s of w.x509Streams) this.#send(w, s, () => this.#x509Response(w));
    }
    if (!names) await this.#issueEndpointSvid();
  }

  /**
   * Rotates the X.509 CA like SPIRE: the new authority is first published in the bundles (pushed to every
   * watcher), then after `propagationMs` it becomes active and every SVID is re-issued from it. The old
   * authority stays in the bundle until `dropRetired` (here, or later with dropRetiredAuthorities()).
   */
  async rotateX509Authority(options: { dropRetired?: boolean; propagationMs?: number } = {}): Promise<void> {
    const next = await this.ca.prepareX509Authority();
    this.#pushAll();
    const wait = options.propagationMs ?? 200;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    this.ca.activateX509Authority(next);
    for (const w of this.#workloads.values()) await this.#issue(w);
    await this.#issueEndpointSvid();
    this.#pushAll();
    if (options.dropRetired) {
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      this.dropRetiredAuthorities();
    }
  }

  /** Rotates the JWT signing key: published first, used for signing after `propagationMs`. */
  async rotateJwtAuthority(options: { dropRetired?: boolean; propagationMs?: number } = {}): Promise<void> {
    const kid = await this.ca.prepareJwtAuthority();
    this.#pushAll();
    const wait = options.propagationMs ?? 200;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    this.ca.activateJwtAuthority(kid);
    if (options.dropRetired) this.dropRetiredAuthorities();
  }

  /** Removes retired authorities from the bundles and pushes the change. */
  dropRetiredAuthorities(): void {
    this.ca.dropRetired();
    this.#pushAll();
  }

  /** Starts serving another trust domain's bundle as a federated bundle. */
  federateWith(ca: DevCa): void {
    this.#federated = [...this.#federated.filter((c) => !c.trustDomain.equals(ca.trustDomain)), ca];
    this.#pushAll();
  }

  /** Pushes current SVIDs and bundles to every open stream. */
  #pushAll(): void {
    for (const w of this.#workloads.values()) {
      for (const s of w.x509Streams) this.#send(w, s, () => this.#x509Response(w));
      for (const s of w.x509BundleStreams) this.#send(w, s, () => this.#x509BundlesResponse());
      for (const s of w.jwtBundleStreams) this.#send(w, s, () => this.#jwtBundlesResponse());
    }
  }

  #x509Response(w: Workload): object {
    const forged = w.fault.kind === 'x509' ? w.fault : undefined;
    const own = (forged?.bundle ?? this.ca.x509Bundle()).toDer();
    return {
      svids: (forged?.svids ?? w.svids).map((svid) => ({
        spiffe_id: svid.id.toString(),
        x509_svid: Buffer.concat(svid.certificates.map((c) => c.raw)),
        x509_svid_key: svid.privateKey.export({ format: 'der', type: 'pkcs8' }),
        bundle: own,
        hint: w.ids.length > 1 ? svid.id.path.split('/').pop() : '',
      })),
      crl: [],
      federated_bundles: Object.fromEntries(
        (forged?.federatedBundles ?? this.#federated.map((ca) => ca.x509Bundle())).map((b) => [
          b.trustDomain.idString(),
          b.toDer(),
        ]),
      ),
    };
  }

  #x509BundlesResponse(): object {
    return {
      crl: [],
      bundles: Object.fromEntries(
        [this.ca, ...this.#federated].map((ca) => [ca.trustDomain.idString(), ca.x509Bundle().toDer()]),
      ),
    };
  }

  #jwtBundlesResponse(): object {
    return {
      bundles: Object.fromEntries(
        [this.ca, ...this.#federated].map((ca) => [ca.trustDomain.idString(), Buffer.from(ca.jwtBundle().marshal())]),
      ),
    };
  }

  #garbage(): object {
    return {
      svids: [{ spiffe_id: 'spiffe://garbage', x509_svid: Buffer.from('not a cert'), x509_svid_key: Buffer.from('x') }],
      bundles: { 'spiffe://example.org': Buffer.from('{not json') },
      federated_bundles: { 'not a trust domain!': Buffer.from('x') },
      crl: [],
    };
  }

  #send(w: Workload, stream: Stream, build: () => object): void {
    if (stream.cancelled || stream.destroyed) return;
    try {
      stream.write(w.fault.kind === 'garbage' ? this.#garbage() : build());
    } catch {
      // stream went away
    }
  }

  /** Checks the security header, identity and fault; returns an error to answer with, if any. */
  async #gate(w: Workload, metadata: grpc.Metadata): Promise<(Partial<grpc.StatusObject> & Error) | undefined> {
    if (w.fault.kind === 'slow') await new Promise((r) => setTimeout(r, (w.fault as { delayMs: number }).delayMs));
    if (w.fault.kind === 'error') return grpcError(w.fault.code, w.fault.message ?? 'injected fault');
    const header = metadata.get(WORKLOAD_API_HEADER);
    if (header.length !== 1 || header[0] !== 'true') {
      return grpcError(grpc.status.INVALID_ARGUMENT, 'security header missing from request');
    }
    if (w.ids.length === 0) return grpcError(grpc.status.PERMISSION_DENIED, 'no identity issued');
    return undefined;
  }

  #stream(w: Workload, set: Set<Stream>, build: () => object): grpc.handleServerStreamingCall<unknown, unknown> {
    return (call) => {
      void (async () => {
        const err = await this.#gate(w, call.metadata);
        if (err) {
          call.emit('error', err);
          return;
        }
        set.add(call);
        const remove = () => set.delete(call);
        call.on('cancelled', remove);
        call.on('close', remove);
        call.on('error', remove);
        this.#send(w, call, build);
      })();
    };
  }

  async #jwtSvid(id: SpiffeId, audience: string[]): Promise<JwtSvid> {
    const key = [this.ca.jwtSigningKey.kid, id.toString(), ...[...audience].sort()].join('\n');
    const now = Date.now();
    const cached = this.#jwtCache.get(key);
    if (cached && cached.expiresAt.getTime() - now > (this.jwtTtlSeconds * 1000) / 2) return cached;
    const svid = await this.ca.issueJwtSvid(id, audience, { ttlSeconds: this.jwtTtlSeconds });
    this.#jwtCache.delete(key);
    // Bounded: a client asking for ever new audiences evicts the oldest entries, not the process.
    if (this.#jwtCache.size >= JWT_CACHE_MAX) this.#jwtCache.delete(this.#jwtCache.keys().next().value as string);
    this.#jwtCache.set(key, svid);
    return svid;
  }

  #handlers(w: Workload): grpc.UntypedServiceImplementation {
    return {
      FetchX509SVID: this.#stream(w, w.x509Streams, () => this.#x509Response(w)),
      FetchX509Bundles: this.#stream(w, w.x509BundleStreams, () => this.#x509BundlesResponse()),
      FetchJWTBundles: this.#stream(w, w.jwtBundleStreams, () => this.#jwtBundlesResponse()),
      FetchJWTSVID: (
        call: grpc.ServerUnaryCall<{ audience: string[]; spiffe_id: string }, unknown>,
        cb: grpc.sendUnaryData<unknown>,
      ) => {
        void (async () => {
          const err = await this.#gate(w, call.metadata);
          if (err) return cb(err);
          const { audience, spiffe_id } = call.request;
          if (!audience || audience.length === 0) {
            return cb(grpcError(grpc.status.INVALID_ARGUMENT, 'audience must be specified'));
          }
          let ids = w.ids;
          if (spiffe_id) {
            ids = w.ids.filter((id) => id.toString() === spiffe_id);
            if (ids.length === 0) {
              return cb(grpcError(grpc.status.PERMISSION_DENIED, `no identity issued for ${spiffe_id}`));
            }
          }
          const svids: JwtSvid[] = await Promise.all(ids.map((id) => this.#jwtSvid(id, audience)));
          cb(null, {
            svids: svids.map((s, i) => ({
              spiffe_id: s.id.toString(),
              svid: s.token,
              hint: w.ids.length > 1 ? (ids[i]?.path.split('/').pop() ?? '') : '',
            })),
          });
        })();
      },
      ValidateJWTSVID: (
        call: grpc.ServerUnaryCall<{ audience: string; svid: string }, unknown>,
        cb: grpc.sendUnaryData<unknown>,
      ) => {
        void (async () => {
          const err = await this.#gate(w, call.metadata);
          if (err) return cb(err);
          const { audience, svid } = call.request;
          if (!audience) return cb(grpcError(grpc.status.INVALID_ARGUMENT, 'audience must be specified'));
          if (!svid) return cb(grpcError(grpc.status.INVALID_ARGUMENT, 'svid must be specified'));
          try {
            const bundles = new JwtBundleSet([this.ca, ...this.#federated].map((ca) => ca.jwtBundle()));
            const v = await parseAndValidateJwtSvid(svid, bundles, audience);
            cb(null, { spiffe_id: v.id.toString(), claims: jsonToStruct({ ...v.claims }) });
          } catch (e) {
            cb(grpcError(grpc.status.INVALID_ARGUMENT, (e as Error).message));
          }
        })();
      },
    };
  }

  /** Stops every socket (open streams end with an error, as when an agent dies) and removes temp files. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#endpointTimer);
    await this.#bundleEndpoint?.close();
    for (const w of this.#workloads.values()) {
      clearTimeout(w.timer);
      w.server.forceShutdown();
      await unlink(this.socketPath(w.name)).catch(() => undefined);
    }
    this.#workloads.clear();
    if (this.#ownsDir) await rm(this.socketDir, { recursive: true, force: true });
  }

  /** Same as {@link DevWorkloadApiServer.stop}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
