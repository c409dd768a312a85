import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import {
  insecureParseJwtSvid,
  isSpiffeError,
  parseAndValidateJwtSvid,
  WorkloadApiClient,
  type X509Context,
} from '@spiffe-ts/core';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import {
  intOption,
  type OptionSpec,
  parseOptions,
  parseOptionsAndOperands,
  signalName,
  socketAddress,
} from './args.js';
import { CliError, usageError } from './errors.js';
import { writeX509Files, writeX509FilesSpireStyle } from './files.js';
import { runHelper } from './helper.js';
import { loadHelperConfig } from './helper-config.js';
import { exampleNames, initExample, loadTemplates } from './init.js';
import { lockDirectory } from './lock.js';

const COMMON_HELP = `  --socket ADDR    Workload API address: unix:///path, tcp://IP:PORT or an absolute socket path
                   (default: $SPIFFE_ENDPOINT_SOCKET)
  --timeout MS     Give up after MS milliseconds if the Workload API does not answer (default 10000; 0: wait)
  -h, --help       Show this help`;

/** Help text of each command, printed by `spiffe-ts COMMAND --help`. */
const HELP: Record<string, string> = {
  'fetch x509': `Usage: spiffe-ts fetch x509 [--socket ADDR] [--timeout MS] [--write DIR] [--json]

Fetch the workload's X.509-SVIDs and bundles and print them.
  --write DIR      Also write them as spire-agent's "api fetch x509 -write" does: svid.N.pem, svid.N.key (0600),
                   bundle.N.pem, and federated_bundle.N.M.pem for each federated trust domain
  --json           Print JSON
${COMMON_HELP}`,
  'fetch jwt': `Usage: spiffe-ts fetch jwt --audience AUD [--audience AUD2]... [--spiffe-id ID] [--socket ADDR] [--json]

Fetch a JWT-SVID and print the token.
  --audience AUD   Audience (required; repeat for several)
  --spiffe-id ID   The SVID of this SPIFFE ID, when the workload has several
  --json           Print JSON with the claims
${COMMON_HELP}`,
  'fetch bundles': `Usage: spiffe-ts fetch bundles [--socket ADDR] [--json]

Fetch the X.509 and JWT bundles and print them.
  --json           Print JSON
${COMMON_HELP}`,
  'validate jwt': `Usage: spiffe-ts validate jwt --audience AUD [--token TOKEN] [--local] [--socket ADDR] [--json]

Validate a JWT-SVID (from --token or stdin) with the Workload API, or here with --local against fetched
JWT bundles. Exit code 1 when it is not valid.
  --audience AUD   The audience the token must have (required)
  --token TOKEN    The token (default: read stdin)
  --local          Validate here instead of asking the Workload API
  --json           Print JSON
${COMMON_HELP}`,
  helper: `Usage: spiffe-ts helper --config FILE [--daemon-mode=false]
       spiffe-ts helper --dir DIR [--cmd PROG [--arg A]...] [--signal SIG] [--jwt AUD=FILE]... [--once] [--socket ADDR]

Keep SVID files on disk for programs that only read files, like SPIFFE Helper: each file is written
atomically and only when its content changes; PROG is started after the first write and sent SIG after
each change of the X.509 files.

  --config FILE        Read SPIFFE Helper's own config file (HCL; every key of spiffe-helper v0.11). -config
                       works too. The helper then behaves as spiffe-helper, see the README
  --daemon-mode=BOOL   Overrides daemon_mode of the config file (false: write once and exit)
  --dir DIR            Without --config: the directory for svid.pem, svid_key.pem (0600), svid_bundle.pem
  --cmd PROG           Program to start after the first write; the helper exits with its exit code
  --arg A              An argument for PROG (repeat; --arg -x and --arg=-x both work)
  --signal SIG         Signal for PROG after each X.509 change (e.g. SIGHUP)
  --jwt AUD=FILE       Also keep a JWT-SVID for audience AUD in DIR/FILE (0600)
  --jwt-bundle FILE    Also keep the JWT bundles in DIR/FILE (JSON, as spiffe-helper)
  --hint HINT          Write the SVIDs whose Workload API hint is HINT
  --once               Write once and exit (--timeout bounds the wait)
${COMMON_HELP}`,
  init: `Usage: spiffe-ts init EXAMPLE DIR [--tarballs]
       spiffe-ts init --list

Copy one of the spiffe-ts examples into DIR (new or empty) as a project of its own: package named after DIR,
@spiffe-ts/* dependencies as ^VERSION (not workspace:*), tsconfig without the repository's base. Then
\`cd DIR && npm install && npm start\` runs it against a local development Workload API.
  --tarballs           Pack this checkout's @spiffe-ts packages (built with pnpm build) into DIR/vendor and
                       depend on them (file:vendor/...), for packages not on the registry yet. Needs spiffe-ts
                       run from a spiffe-ts checkout and pnpm on PATH
  --list               List the examples
  -h, --help           Show this help`,
  'dev-server': `Usage: spiffe-ts dev-server --workload NAME=SPIFFE_ID_OR_PATH... [--trust-domain TD] [--dir DIR]
                            [--svid-ttl SEC] [--jwt-ttl SEC] [--tcp-port PORT]
                            [--bundle-endpoint-port PORT [--bundle-endpoint-host HOST]]

Run a local development Workload API (never in production): one socket per workload, DIR/NAME.sock. Prints one
JSON line with the addresses when ready. SIGUSR1 rotates the SVIDs, SIGUSR2 the X.509 CA; SIGINT/SIGTERM stop.
A second dev server on the same DIR refuses to start (error [DEV_SERVER_LOCKED]).
  --workload NAME=ID   A workload and its SPIFFE ID (or a path, in the trust domain); repeat for several
  --trust-domain TD    Trust domain (default example.org)
  --dir DIR            Socket directory (default: a new temporary directory)
  --svid-ttl SEC       X.509-SVID lifetime in seconds (default 3600)
  --jwt-ttl SEC        JWT-SVID lifetime in seconds (default 300)
  --tcp-port PORT      Also serve the first workload on tcp://127.0.0.1:PORT
  --bundle-endpoint-port PORT
                       Also serve the trust domain's SPIFFE bundle endpoint (https_spiffe) on PORT (0: any free
                       port), for another trust domain to federate with; the ready line gives bundleEndpointUrl
                       and bundleEndpointSpiffeId
  --bundle-endpoint-host HOST
                       The address it listens on (default 127.0.0.1)
  -h, --help           Show this help`,
};

/** The top-level usage text (`spiffe-ts --help`). */
export const USAGE = `spiffe-ts — SPIFFE workload identity tools

Usage:
  spiffe-ts fetch x509 [--write DIR] [--json]          X.509-SVIDs and bundles (--write: spire-agent file names)
  spiffe-ts fetch jwt --audience AUD [--json]          a JWT-SVID
  spiffe-ts fetch bundles [--json]                     X.509 and JWT bundles
  spiffe-ts validate jwt --audience AUD [--local]      validate a JWT-SVID (from --token or stdin)
  spiffe-ts helper --config helper.conf                SPIFFE Helper drop-in: keep SVID files on disk
  spiffe-ts helper --dir DIR [--cmd PROG ...]          the same with options instead of a config file
  spiffe-ts dev-server --workload NAME=ID...           local development Workload API
  spiffe-ts init EXAMPLE DIR [--tarballs]              start a project from an example (--list: the examples)
  spiffe-ts --version

Every command takes --help, and --socket ADDR (default $SPIFFE_ENDPOINT_SOCKET) and --timeout MS (default
10000) where it talks to the Workload API.
Exit codes: 0 success, 1 failure (message: error [CODE]: ...), 2 usage or config file mistake.
`;

/** Where the CLI reads and writes; tests pass their own. */
export interface CliIo {
  /** One line of output (stdout). */
  out: (s: string) => void;
  /** One line of diagnostics (stderr). */
  err: (s: string) => void;
  /** The whole of stdin (for `validate jwt` without --token). */
  stdin?: () => string;
  /** Stops long-running commands (helper, dev-server) as SIGTERM does. */
  signal?: AbortSignal;
}

const defaultIo: CliIo = {
  out: (s) => process.stdout.write(`${s}\n`),
  err: (s) => process.stderr.write(`${s}\n`),
  stdin: () => readFileSync(0, 'utf8'),
};

/** The package version (package.json is one level above both src/ and dist/). */
export function cliVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
      .version;
  } catch {
    return 'unknown';
  }
}

function describeX509(ctx: X509Context) {
  return {
    svids: ctx.svids.map((s) => ({
      spiffeId: s.id.toString(),
      hint: s.hint || undefined,
      serialNumber: s.leaf.serialNumber,
      notBefore: s.notBefore.toISOString(),
      expiresAt: s.expiresAt.toISOString(),
      chainLength: s.certificates.length,
    })),
    bundles: ctx.bundles.bundles().map((b) => ({ trustDomain: b.trustDomain.name, authorities: b.authorities.length })),
  };
}

/** The Workload API address a command used, so a failure can name it. */
interface RunState {
  address?: string;
}

/**
 * Runs the CLI; returns the exit code: 0, 1 on failure, 2 on a usage or config mistake. Every error is
 * printed as `error [CODE]: message`, never as a stack trace.
 */
export async function runCli(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const state: RunState = {};
  try {
    return await dispatch(argv, io, state);
  } catch (err) {
    if (err instanceof CliError) {
      io.err(`error [${err.code}]: ${err.message}`);
      if (err.code === 'CLI_USAGE') io.err(`(see spiffe-ts ${commandOf(argv)} --help)`);
      return err.exitCode;
    }
    if (isSpiffeError(err)) {
      let message = err.message;
      const where = state.address ?? process.env.SPIFFE_ENDPOINT_SOCKET;
      if (
        /^(WORKLOADAPI_UNAVAILABLE|SOURCE_TIMEOUT|WORKLOADAPI_ERROR)$/.test(err.code) &&
        where &&
        !message.includes(where)
      ) {
        message += ` (Workload API at ${where})`;
      }
      io.err(`error [${err.code}]: ${message}`);
      return 1;
    }
    const e = err as NodeJS.ErrnoException;
    io.err(`error [${e.code ?? 'ERROR'}]: ${e.message ?? String(err)}`);
    return 1;
  }
}

function commandOf(argv: string[]): string {
  const [cmd, sub] = argv;
  return cmd === 'fetch' || cmd === 'validate' ? `${cmd} ${sub ?? ''}`.trim() : (cmd ?? '');
}

const wantsHelp = (args: string[]) => {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h' || a === '-help');
};

async function dispatch(argv: string[], io: CliIo, state: RunState): Promise<number> {
  const [cmd, sub] = argv;
  if (cmd === undefined) {
    io.err(USAGE);
    return 2;
  }
  if (cmd === 'help' || cmd === '--help' || cmd === '-h') {
    const topic = argv.slice(1).join(' ');
    io.out(HELP[topic] ?? USAGE);
    return 0;
  }
  if (cmd === '--version' || cmd === '-v' || cmd === 'version') {
    io.out(cliVersion());
    return 0;
  }
  const two = `${cmd} ${sub ?? ''}`;
  const name = HELP[two] ? two : HELP[cmd] && cmd !== 'fetch' && cmd !== 'validate' ? cmd : undefined;
  if (!name) {
    if (cmd === 'fetch' || cmd === 'validate') {
      const subs = Object.keys(HELP).filter((k) => k.startsWith(`${cmd} `));
      if (sub === undefined || sub === '--help' || sub === '-h') {
        // Asked for: help on stdout, exit 0; a missing subcommand: usage on stderr, exit 2.
        (sub === undefined ? io.err : io.out)(subs.map((k) => HELP[k]).join('\n\n'));
        return sub === undefined ? 2 : 0;
      }
      throw usageError(`unknown command "${cmd} ${sub}": use ${subs.map((s) => `"${s}"`).join(', ')}`);
    }
    throw usageError(`unknown command "${cmd}" (spiffe-ts --help lists the commands)`);
  }
  const args = argv.slice(name.split(' ').length);
  if (wantsHelp(args)) {
    io.out(HELP[name] as string);
    return 0;
  }
  switch (name) {
    case 'fetch x509':
      return fetchX509(args, io, state);
    case 'fetch jwt':
      return fetchJwt(args, io, state);
    case 'fetch bundles':
      return fetchBundles(args, io, state);
    case 'validate jwt':
      return validateJwt(args, io, state);
    case 'helper':
      return helper(args, io, state);
    case 'init':
      return init(args, io);
    default:
      return devServer(args, io);
  }
}

const common = {
  socket: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const satisfies OptionSpec;

const MAX_TIMEOUT_MS = 24 * 3600 * 1000;
const DEFAULT_TIMEOUT_MS = 10_000;

/** `--timeout MS`: default 10 s; 0 waits as long as it takes. */
function timeoutOption(value: string | undefined): number {
  const ms = intOption('timeout', value, 0, MAX_TIMEOUT_MS, 'milliseconds') ?? DEFAULT_TIMEOUT_MS;
  return ms === 0 ? Number.POSITIVE_INFINITY : ms;
}

function client(values: { socket?: string; timeout?: string }, state: RunState): WorkloadApiClient {
  const address = socketAddress(values.socket);
  const timeoutMs = timeoutOption(values.timeout);
  state.address = address;
  return new WorkloadApiClient({ address, timeoutMs });
}

async function fetchX509(args: string[], io: CliIo, state: RunState): Promise<number> {
  const values = parseOptions(args, { ...common, write: { type: 'string' } });
  const c = client(values, state);
  try {
    const ctx = await c.fetchX509Context({ signal: io.signal });
    const info = describeX509(ctx);
    if (values.write) {
      const files = await writeX509FilesSpireStyle(values.write, ctx);
      Object.assign(info, { written: files });
    }
    if (values.json) io.out(JSON.stringify(info));
    else {
      for (const s of info.svids)
        io.out(`SPIFFE ID:   ${s.spiffeId}\nSerial:      ${s.serialNumber}\nExpires at:  ${s.expiresAt}`);
      for (const b of info.bundles) io.out(`Bundle:      ${b.trustDomain} (${b.authorities} authorities)`);
      if (values.write) io.out(`Wrote SVID files to ${values.write}`);
    }
    return 0;
  } finally {
    await c.close();
  }
}

async function fetchJwt(args: string[], io: CliIo, state: RunState): Promise<number> {
  const values = parseOptions(args, {
    ...common,
    audience: { type: 'string', multiple: true },
    'spiffe-id': { type: 'string' },
  });
  if (!values.audience?.length || values.audience.some((a) => a === '')) {
    throw usageError('--audience AUD is required (and must not be empty)');
  }
  const c = client(values, state);
  try {
    const svid = await c.fetchJwtSvid(
      { audience: values.audience, subject: values['spiffe-id'] },
      { signal: io.signal },
    );
    if (values.json) {
      io.out(
        JSON.stringify({
          spiffeId: svid.id.toString(),
          token: svid.token,
          expiresAt: svid.expiresAt.toISOString(),
          claims: svid.claims,
        }),
      );
    } else io.out(svid.token);
    return 0;
  } finally {
    await c.close();
  }
}

async function fetchBundles(args: string[], io: CliIo, state: RunState): Promise<number> {
  const values = parseOptions(args, common);
  const c = client(values, state);
  try {
    const [x509, jwt] = await Promise.all([
      c.fetchX509Bundles({ signal: io.signal }),
      c.fetchJwtBundles({ signal: io.signal }),
    ]);
    const info = {
      x509: x509.bundles().map((b) => ({ trustDomain: b.trustDomain.name, pem: b.toPem() })),
      jwt: jwt.bundles().map((b) => ({ trustDomain: b.trustDomain.name, jwks: b.toJwks() })),
    };
    if (values.json) io.out(JSON.stringify(info));
    else {
      for (const b of info.x509) io.out(`# X.509 bundle for ${b.trustDomain}\n${b.pem}`);
      for (const b of info.jwt) io.out(`# JWT bundle for ${b.trustDomain}\n${JSON.stringify(b.jwks, null, 2)}`);
    }
    return 0;
  } finally {
    await c.close();
  }
}

async function validateJwt(args: string[], io: CliIo, state: RunState): Promise<number> {
  const values = parseOptions(args, {
    ...common,
    audience: { type: 'string' },
    token: { type: 'string' },
    local: { type: 'boolean', default: false },
  });
  if (!values.audience) throw usageError('--audience AUD is required');
  const token = (values.token ?? io.stdin?.() ?? '').trim();
  if (!token) throw usageError('no token: pass --token TOKEN or pipe it on stdin');
  const c = client(values, state);
  try {
    const svid = values.local
      ? await parseAndValidateJwtSvid(token, await c.fetchJwtBundles({ signal: io.signal }), values.audience)
      : await c.validateJwtSvid(token, values.audience, { signal: io.signal });
    if (values.json) io.out(JSON.stringify({ valid: true, spiffeId: svid.id.toString(), claims: svid.claims }));
    else io.out(`valid: ${svid.id} (audience ${svid.audience.join(', ')}, expires ${svid.expiresAt.toISOString()})`);
    return 0;
  } catch (err) {
    if (values.json) {
      let sub: string | undefined;
      try {
        sub = insecureParseJwtSvid(token).id.toString();
      } catch {
        sub = undefined;
      }
      io.out(
        JSON.stringify({
          valid: false,
          subject: sub,
          code: (err as { code?: string }).code,
          error: (err as Error).message,
        }),
      );
    }
    throw err;
  } finally {
    await c.close();
  }
}

function boolOption(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  if (/^(true|1|t)$/i.test(value)) return true;
  if (/^(false|0|f)$/i.test(value)) return false;
  throw usageError(`--${name} takes true or false, got "${value}"`);
}

async function helper(args: string[], io: CliIo, state: RunState): Promise<number> {
  // Go's flag package: a bare boolean flag is true, `-daemon-mode=false` gives the value.
  const normalized = args.map((a) => (a === '--daemon-mode' || a === '-daemon-mode' ? '--daemon-mode=true' : a));
  const values = parseOptions(
    normalized,
    {
      ...common,
      config: { type: 'string' },
      'daemon-mode': { type: 'string' },
      dir: { type: 'string' },
      cmd: { type: 'string' },
      arg: { type: 'string', multiple: true },
      signal: { type: 'string' },
      jwt: { type: 'string', multiple: true },
      'jwt-bundle': { type: 'string' },
      hint: { type: 'string' },
      once: { type: 'boolean', default: false },
      version: { type: 'boolean', default: false },
    },
    ['config', 'daemon-mode', 'version'],
  );
  if (values.version) {
    io.out(cliVersion());
    return 0;
  }
  const log = (l: string) => io.err(l);
  const timeoutMs = timeoutOption(values.timeout);
  const daemonMode = boolOption('daemon-mode', values['daemon-mode']);
  if (values.config !== undefined) {
    const others = ['dir', 'cmd', 'arg', 'signal', 'jwt', 'jwt-bundle', 'hint', 'socket'].filter(
      (k) => values[k as keyof typeof values] !== undefined,
    );
    if (others.length) {
      throw usageError(
        `--config cannot be combined with ${others.map((o) => `--${o}`).join(', ')}: set them in the file`,
      );
    }
    const options = loadHelperConfig(values.config, {
      daemonMode: values.once ? false : daemonMode,
      warn: (l) => io.err(`warning: ${l}`),
    });
    state.address = options.address;
    return runHelper({ ...options, timeoutMs, log, signal: io.signal });
  }
  if (!values.dir) throw usageError('--config FILE or --dir DIR is required');
  if (values.arg?.length && !values.cmd) throw usageError('--arg needs --cmd');
  const address = socketAddress(values.socket);
  state.address = address;
  return runHelper({
    address,
    timeoutMs,
    dir: values.dir,
    cmd: values.cmd,
    cmdArgs: values.arg,
    renewSignal: values.signal === undefined ? undefined : signalName(values.signal),
    jwtSvids: (values.jwt ?? []).map((spec) => {
      const i = spec.indexOf('=');
      const audience = spec.slice(0, i);
      const file = spec.slice(i + 1);
      if (i <= 0 || !file) throw usageError(`--jwt takes AUDIENCE=FILE, got "${spec}"`);
      return { audience, file };
    }),
    jwtBundleFile: values['jwt-bundle'],
    hint: values.hint,
    once: values.once || daemonMode === false,
    log,
    signal: io.signal,
  });
}

async function init(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseOptionsAndOperands(args, {
    tarballs: { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
  });
  const templates = loadTemplates();
  if (values.list) {
    for (const name of exampleNames(templates)) io.out(name);
    return 0;
  }
  const [example, target, ...extra] = positionals;
  if (!example || !target || extra.length) {
    throw usageError(
      `init takes EXAMPLE DIR, got ${positionals.length} operand(s); examples: ${exampleNames(templates).join(', ')}`,
    );
  }
  const r = await initExample({ example, target, tarballs: values.tarballs, log: (l) => io.err(l) }, templates);
  const where = r.tarballs.length ? ` with ${r.tarballs.length} tarballs in vendor/` : '';
  io.out(`Created ${r.name} in ${r.dir} from the ${example} example${where}.`);
  io.out('\nNext steps:');
  io.out(`  cd ${target}`);
  io.out('  npm install');
  if (r.selfContained) {
    io.out('  npm start      # runs it against a local development Workload API started for the run');
  } else {
    io.out('  npm run build');
    io.out(
      '  # npm start needs a Workload API: see "Run it" in README.md (spiffe-ts dev-server, SPIFFE_ENDPOINT_SOCKET)',
    );
  }
  if (r.fromCheckout && !r.tarballs.length) {
    io.out(
      '\nThe @spiffe-ts packages come from the registry. Until they are published there, run init with --tarballs',
    );
    io.out("(after pnpm build) to use this checkout's packages instead.");
  }
  return 0;
}

async function devServer(args: string[], io: CliIo): Promise<number> {
  const values = parseOptions(args, {
    'trust-domain': { type: 'string', default: 'example.org' },
    dir: { type: 'string' },
    workload: { type: 'string', multiple: true },
    'svid-ttl': { type: 'string' },
    'jwt-ttl': { type: 'string' },
    'tcp-port': { type: 'string' },
    'bundle-endpoint-port': { type: 'string' },
    'bundle-endpoint-host': { type: 'string' },
  });
  const workloads: Record<string, string> = {};
  for (const spec of values.workload ?? []) {
    const i = spec.indexOf('=');
    if (i <= 0 || i === spec.length - 1) throw usageError(`--workload takes NAME=SPIFFE_ID, got "${spec}"`);
    const name = spec.slice(0, i);
    if (!/^[A-Za-z0-9._-]+$/.test(name))
      throw usageError(`--workload NAME must be letters, digits, . _ -, got "${name}"`);
    if (name in workloads) throw usageError(`--workload ${name} is given twice`);
    workloads[name] = spec.slice(i + 1);
  }
  if (Object.keys(workloads).length === 0) throw usageError('at least one --workload NAME=SPIFFE_ID is required');
  const svidTtl = intOption('svid-ttl', values['svid-ttl'], 1, 365 * 24 * 3600, 'seconds');
  const jwtTtl = intOption('jwt-ttl', values['jwt-ttl'], 1, 365 * 24 * 3600, 'seconds');
  const tcpPort = intOption('tcp-port', values['tcp-port'], 1, 65535, 'a port');
  const bundleEndpoint = bundleEndpointOptions(values['bundle-endpoint-port'], values['bundle-endpoint-host']);
  const names = Object.keys(workloads);
  // Stop signals are caught from the start: one that comes while the server starts still ends it cleanly
  // (sockets and lock removed) instead of killing the process half-way.
  let stop: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const sig of signals) process.on(sig, stop);
  io.signal?.addEventListener('abort', stop, { once: true });
  const watchParent = startParentWatch(stop);
  let release: (() => Promise<void>) | undefined;
  try {
    release = values.dir ? await lockDirectory(values.dir) : undefined;
    const server = await DevWorkloadApiServer.start({
      trustDomain: values['trust-domain'],
      socketDir: values.dir,
      workloads,
      svidTtlSeconds: svidTtl,
      jwtTtlSeconds: jwtTtl,
      tcp: tcpPort ? { workload: names[0] as string, port: tcpPort } : undefined,
      bundleEndpoint,
    });
    const addresses = Object.fromEntries(names.map((n) => [n, server.address(n)]));
    io.out(
      JSON.stringify({
        ready: true,
        trustDomain: server.trustDomain.name,
        workloads: addresses,
        tcp: server.tcpAddress,
        bundleEndpointUrl: server.bundleEndpointUrl,
        bundleEndpointSpiffeId: server.bundleEndpointSpiffeId?.toString(),
      }),
    );
    const onUsr1 = () => void server.rotateSvids().then(() => io.err('rotated SVIDs'));
    const onUsr2 = () => void server.rotateX509Authority().then(() => io.err('rotated the X.509 CA'));
    process.on('SIGUSR1', onUsr1);
    process.on('SIGUSR2', onUsr2);
    await stopped;
    process.off('SIGUSR1', onUsr1);
    process.off('SIGUSR2', onUsr2);
    await server.stop();
    return 0;
  } finally {
    for (const sig of signals) process.off(sig, stop);
    io.signal?.removeEventListener('abort', stop);
    watchParent();
    await release?.();
  }
}

/**
 * `--bundle-endpoint-port` / `--bundle-endpoint-host`. The host must be an IP address or a DNS name: it is both
 * where the endpoint listens and the host of the URL printed for the federating side.
 */
function bundleEndpointOptions(
  portValue: string | undefined,
  host: string | undefined,
): { port: number; host?: string } | undefined {
  const port = intOption('bundle-endpoint-port', portValue, 0, 65535, 'a port (0: any free port)');
  if (host !== undefined) {
    if (port === undefined) throw usageError('--bundle-endpoint-host needs --bundle-endpoint-port');
    const name =
      /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
    if (isIP(host) === 0 && !name.test(host)) {
      throw usageError(`--bundle-endpoint-host takes an IP address or a host name, got "${host}"`);
    }
  }
  return port === undefined ? undefined : { port, host };
}

/**
 * When started through npm (`npx spiffe-ts dev-server`, an npm script), npm runs us under `sh -c`: killing
 * npm ends that shell but not us, and the server would live on with nobody to stop it. So, under npm only,
 * we stop when our parent goes away (we are re-parented). Elsewhere a detached server (`nohup`, `&` in a
 * script that then exits) keeps running, as asked.
 */
function startParentWatch(onOrphaned: () => void): () => void {
  if (!process.env.npm_command && !process.env.npm_lifecycle_event) return () => undefined;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) onOrphaned();
  }, 500);
  timer.unref();
  return () => clearInterval(timer);
}

export { writeX509Files };
