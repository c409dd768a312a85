import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  insecureParseJwtSvid,
  isSpiffeError,
  parseAndValidateJwtSvid,
  WorkloadApiClient,
  type X509Context,
} from '@spiffe-ts/core';
import { DevWorkloadApiServer } from '@spiffe-ts/dev-server';
import { writeX509Files, writeX509FilesSpireStyle } from './files.js';
import { runHelper } from './helper.js';

export const USAGE = `spiffe-ts — SPIFFE workload identity tools

Usage:
  spiffe-ts fetch x509 [--socket ADDR] [--write DIR] [--json]
      Fetch X.509-SVIDs and bundles; --write writes svid.N.pem, svid.N.key, bundle.N.pem (spire-agent style).
  spiffe-ts fetch jwt --audience AUD [--audience AUD2] [--spiffe-id ID] [--socket ADDR] [--json]
      Fetch a JWT-SVID and print the token (and its claims with --json).
  spiffe-ts fetch bundles [--socket ADDR] [--json]
      Fetch X.509 and JWT bundles.
  spiffe-ts validate jwt --audience AUD [--token TOKEN | stdin] [--local] [--socket ADDR] [--json]
      Validate a JWT-SVID with the Workload API (or locally against fetched JWT bundles with --local).
  spiffe-ts helper --dir DIR [--cmd PROG [--arg A]...] [--signal SIGHUP] [--jwt AUD=FILE]... [--once] [--socket ADDR]
      Keep svid.pem / svid_key.pem / svid_bundle.pem rotated on disk (like SPIFFE Helper), start PROG after the
      first write and send it --signal after every rotation.
  spiffe-ts dev-server [--trust-domain TD] [--dir DIR] --workload NAME=SPIFFE_ID_OR_PATH... [--svid-ttl SEC]
                       [--jwt-ttl SEC] [--tcp-port PORT]
      Run a local development Workload API: one socket per workload (DIR/NAME.sock). SIGUSR1 rotates SVIDs,
      SIGUSR2 rotates the CA. Prints one JSON line with the addresses when ready.

Common options:
  --socket ADDR    Workload API address (default: $SPIFFE_ENDPOINT_SOCKET), unix:///path or tcp://IP:port
  --timeout MS     Time limit for one-shot calls (default 10000)
`;

export interface CliIo {
  out: (s: string) => void;
  err: (s: string) => void;
  stdin?: () => string;
  signal?: AbortSignal;
}

const defaultIo: CliIo = {
  out: (s) => process.stdout.write(`${s}\n`),
  err: (s) => process.stderr.write(`${s}\n`),
  stdin: () => readFileSync(0, 'utf8'),
};

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

/** Runs the CLI; returns the exit code. Errors print a typed code and message, never a stack trace. */
export async function runCli(argv: string[], io: CliIo = defaultIo): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (err) {
    if (isSpiffeError(err)) {
      io.err(`error [${err.code}]: ${err.message}`);
      return 1;
    }
    if (err instanceof TypeError && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.err(`error: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    io.err(`error: ${(err as Error).message ?? String(err)}`);
    return 1;
  }
}

async function dispatch(argv: string[], io: CliIo): Promise<number> {
  const [cmd, sub, ...rest] = argv;
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    io.out(USAGE);
    return cmd ? 0 : 2;
  }
  if (cmd === 'fetch' && sub === 'x509') return fetchX509(rest, io);
  if (cmd === 'fetch' && sub === 'jwt') return fetchJwt(rest, io);
  if (cmd === 'fetch' && sub === 'bundles') return fetchBundles(rest, io);
  if (cmd === 'validate' && sub === 'jwt') return validateJwt(rest, io);
  if (cmd === 'helper') return helper(argv.slice(1), io);
  if (cmd === 'dev-server') return devServer(argv.slice(1), io);
  io.err(`unknown command: ${argv.slice(0, 2).join(' ')}\n\n${USAGE}`);
  return 2;
}

const common = {
  socket: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

function client(values: { socket?: string; timeout?: string }): WorkloadApiClient {
  return new WorkloadApiClient({
    address: values.socket,
    timeoutMs: values.timeout === undefined ? undefined : Number(values.timeout),
  });
}

async function fetchX509(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({ args, options: { ...common, write: { type: 'string' } }, strict: true });
  const c = client(values);
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

async function fetchJwt(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { ...common, audience: { type: 'string', multiple: true }, 'spiffe-id': { type: 'string' } },
    strict: true,
  });
  if (!values.audience?.length) throw new Error('--audience is required');
  const c = client(values);
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

async function fetchBundles(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({ args, options: common, strict: true });
  const c = client(values);
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

async function validateJwt(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      ...common,
      audience: { type: 'string' },
      token: { type: 'string' },
      local: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (!values.audience) throw new Error('--audience is required');
  const token = (values.token ?? io.stdin?.() ?? '').trim();
  if (!token) throw new Error('no token: pass --token or pipe it on stdin');
  const c = client(values);
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

async function helper(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      ...common,
      dir: { type: 'string' },
      cmd: { type: 'string' },
      arg: { type: 'string', multiple: true },
      signal: { type: 'string' },
      jwt: { type: 'string', multiple: true },
      once: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (!values.dir) throw new Error('--dir is required');
  return runHelper({
    address: values.socket,
    timeoutMs: values.timeout === undefined ? undefined : Number(values.timeout),
    dir: values.dir,
    cmd: values.cmd,
    cmdArgs: values.arg,
    renewSignal: values.signal as NodeJS.Signals | undefined,
    jwtSvids: (values.jwt ?? []).map((spec) => {
      const [audience, file] = spec.split('=');
      if (!audience || !file) throw new Error(`--jwt takes AUDIENCE=FILE, got "${spec}"`);
      return { audience, file };
    }),
    once: values.once,
    log: (l) => io.err(l),
    signal: io.signal,
  });
}

async function devServer(args: string[], io: CliIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'trust-domain': { type: 'string', default: 'example.org' },
      dir: { type: 'string' },
      workload: { type: 'string', multiple: true },
      'svid-ttl': { type: 'string' },
      'jwt-ttl': { type: 'string' },
      'tcp-port': { type: 'string' },
    },
    strict: true,
  });
  const workloads: Record<string, string> = {};
  for (const spec of values.workload ?? []) {
    const i = spec.indexOf('=');
    if (i <= 0) throw new Error(`--workload takes NAME=SPIFFE_ID, got "${spec}"`);
    workloads[spec.slice(0, i)] = spec.slice(i + 1);
  }
  if (Object.keys(workloads).length === 0) throw new Error('at least one --workload NAME=SPIFFE_ID is required');
  const names = Object.keys(workloads);
  const server = await DevWorkloadApiServer.start({
    trustDomain: values['trust-domain'],
    socketDir: values.dir,
    workloads,
    svidTtlSeconds: values['svid-ttl'] ? Number(values['svid-ttl']) : undefined,
    jwtTtlSeconds: values['jwt-ttl'] ? Number(values['jwt-ttl']) : undefined,
    tcp: values['tcp-port'] ? { workload: names[0] as string, port: Number(values['tcp-port']) } : undefined,
  });
  const addresses = Object.fromEntries(names.map((n) => [n, server.address(n)]));
  io.out(
    JSON.stringify({ ready: true, trustDomain: server.trustDomain.name, workloads: addresses, tcp: server.tcpAddress }),
  );
  const onUsr1 = () => void server.rotateSvids().then(() => io.err('rotated SVIDs'));
  const onUsr2 = () => void server.rotateX509Authority().then(() => io.err('rotated the X.509 CA'));
  process.on('SIGUSR1', onUsr1);
  process.on('SIGUSR2', onUsr2);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    io.signal?.addEventListener('abort', stop, { once: true });
  });
  process.off('SIGUSR1', onUsr1);
  process.off('SIGUSR2', onUsr2);
  await server.stop();
  return 0;
}

export { writeX509Files };
