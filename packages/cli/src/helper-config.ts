import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parse as parseCsv } from 'csv-parse/sync';
import { signalName } from './args.js';
import { CliError } from './errors.js';
import type { HelperOptions } from './helper.js';

// js-hcl-parser is HashiCorp's own HCL v1 parser (the one spiffe-helper uses) compiled to JavaScript, so
// a config is read exactly as spiffe-helper reads it: `0644` is octal, repeated `jwt_svids` lists add up.
// It is CommonJS: loaded with require from both builds.
const hcl = createRequire(import.meta.url)('js-hcl-parser') as { parse(input: string): string };

/** SPIFFE Helper's default agent socket (its `agent_address` default). */
export const SPIFFE_HELPER_DEFAULT_AGENT_ADDRESS = '/tmp/spire-agent/public/api.sock';

const TOP_KEYS = [
  'add_intermediates_to_bundle',
  'agent_address',
  'cmd',
  'cmd_args',
  'pid_file_name',
  'cert_dir',
  'cert_file_mode',
  'key_file_mode',
  'jwt_bundle_file_mode',
  'jwt_svid_file_mode',
  'include_federated_domains',
  'omit_expired',
  'renew_signal',
  'daemon_mode',
  'health_checks',
  'hint',
  'svid_file_name',
  'svid_key_file_name',
  'svid_bundle_file_name',
  'jwt_svids',
  'jwt_bundle_file_name',
] as const;
const JWT_KEYS = ['jwt_audience', 'jwt_extra_audiences', 'jwt_svid_file_name'] as const;
const HEALTH_KEYS = ['listener_enabled', 'bind_port', 'liveness_path', 'readiness_path'] as const;

type Obj = Record<string, unknown>;

const invalid = (file: string, message: string) =>
  new CliError('HELPER_CONFIG_INVALID', `invalid configuration ${file}: ${message}`);

/** What the command line says about a config file (spiffe-helper's `-daemon-mode` flag overrides the file). */
export interface ConfigOverrides {
  /** `-daemon-mode=BOOL` from the command line: wins over the file's `daemon_mode`. */
  daemonMode?: boolean;
  /** Environment to read SPIFFE_ENDPOINT_SOCKET / SPIRE_AGENT_ADDRESS from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Receives warnings (keys spiffe-helper ignores in this mode). */
  warn?: (line: string) => void;
}

/**
 * Reads a SPIFFE Helper (v0.11) config file and turns it into `runHelper` options, with spiffe-helper's
 * defaults and validation rules: unknown keys at the top level or in `jwt_svids` are refused, the three
 * X.509 file names come all or none, at least one of X.509 files, `jwt_svids` or `jwt_bundle_file_name`,
 * `pid_file_name` needs `renew_signal` and daemon mode. Stricter than spiffe-helper: a value of the wrong
 * type, an unknown `renew_signal` and a mode outside 0..0777 are refused here rather than failing later.
 * @throws CliError (`HELPER_CONFIG_INVALID`)
 */
export function loadHelperConfig(file: string, overrides: ConfigOverrides = {}): HelperOptions {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError('HELPER_CONFIG_INVALID', `cannot read configuration ${file}: ${(err as Error).message}`);
  }
  return helperOptionsFromConfig(text, file, overrides);
}

/** `loadHelperConfig` on config text already read (`file` names it in errors). */
export function helperOptionsFromConfig(text: string, file: string, overrides: ConfigOverrides = {}): HelperOptions {
  const out = hcl.parse(text);
  let raw: unknown;
  try {
    raw = JSON.parse(out);
  } catch {
    // The parser reports errors as text instead of JSON ("unable to parse JSON: At 3:5: ...").
    throw invalid(file, out.replace(/^unable to parse JSON: /, ''));
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalid(file, 'not an HCL object');
  const c = raw as Obj;
  const unknown = Object.keys(c).filter((k) => !(TOP_KEYS as readonly string[]).includes(k));
  if (unknown.length) throw invalid(file, `unknown top level key(s): ${unknown.sort().join(',')}`);

  const str = (o: Obj, k: string, where = ''): string => {
    const v = o[k];
    if (v === undefined) return '';
    if (typeof v === 'string') return v;
    // HCL v1 decodes a number into a string field as its text.
    if (typeof v === 'number') return String(v);
    throw invalid(file, `${where}${k} must be a string`);
  };
  const bool = (o: Obj, k: string, where = ''): boolean | undefined => {
    const v = o[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') throw invalid(file, `${where}${k} must be true or false`);
    return v;
  };
  const int = (o: Obj, k: string, where = ''): number => {
    const v = o[k];
    if (v === undefined) return 0;
    // HCL v1 also takes an int from a string, read like Go's strconv.ParseInt(s, 0, 0): "0644" is octal.
    const n = typeof v === 'number' ? v : typeof v === 'string' ? goParseInt(v) : Number.NaN;
    if (!Number.isSafeInteger(n)) throw invalid(file, `${where}${k} must be a whole number`);
    return n;
  };
  const mode = (k: string, dflt: number): number => {
    const n = int(c, k);
    if (n < 0) throw invalid(file, `${k.replace(/_/g, ' ')} must be positive`);
    if (n > 0o777) throw invalid(file, `${k} must be a file mode from 0 to 0777 (octal, e.g. 0644), got ${n}`);
    return n === 0 ? dflt : n;
  };

  const jwtSvids = listOf(c.jwt_svids, file, 'jwt_svids').map((j, i) => {
    const where = `jwt_svids[${i}].`;
    const unknownJwt = Object.keys(j).filter((k) => !(JWT_KEYS as readonly string[]).includes(k));
    if (unknownJwt.length) throw invalid(file, `unknown key(s) in jwt_svids[${i}]: ${unknownJwt.sort().join(',')}`);
    const fileName = str(j, 'jwt_svid_file_name', where);
    const audience = str(j, 'jwt_audience', where);
    if (!fileName) throw invalid(file, "'jwt_svid_file_name' is required in 'jwt_svids'");
    if (!audience) throw invalid(file, "'jwt_audience' is required in 'jwt_svids'");
    const extra = j.jwt_extra_audiences;
    if (extra !== undefined && !(Array.isArray(extra) && extra.every((a) => typeof a === 'string'))) {
      throw invalid(file, `${where}jwt_extra_audiences must be a list of strings`);
    }
    return { audience, extraAudiences: (extra as string[] | undefined) ?? [], file: fileName };
  });

  const healthBlocks = listOf(c.health_checks, file, 'health_checks');
  if (healthBlocks.length > 1) throw invalid(file, 'health_checks is given more than once');
  const h = healthBlocks[0] ?? {};
  const unknownHealth = Object.keys(h).filter((k) => !(HEALTH_KEYS as readonly string[]).includes(k));
  // spiffe-helper ignores unknown keys here (its health config has no check for them): warn, do the same.
  if (unknownHealth.length)
    overrides.warn?.(`ignoring unknown key(s) in health_checks: ${unknownHealth.sort().join(',')}`);

  const daemonMode = overrides.daemonMode ?? bool(c, 'daemon_mode') ?? true;
  const cmd = str(c, 'cmd');
  const renew = str(c, 'renew_signal');
  const pidFile = str(c, 'pid_file_name');
  if (!daemonMode) {
    if (cmd) overrides.warn?.('cmd is set but daemon_mode is false: cmd is ignored (as spiffe-helper does)');
    if (renew) overrides.warn?.('renew_signal is set but daemon_mode is false: renew_signal is ignored');
    if (pidFile) {
      throw invalid(
        file,
        'pid_file_name is set but daemon_mode is false. pid_file_name is only supported in daemon_mode',
      );
    }
  }
  if (pidFile && !renew) throw invalid(file, 'must specify renew_signal when using pid_file_name');
  let renewSignal: NodeJS.Signals | undefined;
  try {
    renewSignal = renew ? signalName(renew) : undefined;
  } catch {
    throw invalid(file, `renew_signal: unknown signal "${renew}" (e.g. SIGHUP, SIGUSR1)`);
  }

  const x509Names = [str(c, 'svid_file_name'), str(c, 'svid_key_file_name'), str(c, 'svid_bundle_file_name')];
  const x509Count = x509Names.filter(Boolean).length;
  if (x509Count !== 0 && x509Count !== 3) {
    throw invalid(
      file,
      "all or none of 'svid_file_name', 'svid_key_file_name', 'svid_bundle_file_name' must be specified",
    );
  }
  const jwtBundleFile = str(c, 'jwt_bundle_file_name');
  if (x509Count === 0 && jwtSvids.length === 0 && !jwtBundleFile) {
    throw invalid(
      file,
      "at least one of the sets ('svid_file_name', 'svid_key_file_name', 'svid_bundle_file_name'), 'jwt_svids', or 'jwt_bundle_file_name' must be fully specified",
    );
  }

  let cmdArgs: string[] = [];
  const cmdArgsText = str(c, 'cmd_args');
  if (cmdArgsText) {
    try {
      // spiffe-helper splits cmd_args as one CSV record with a space as separator: "double quotes" group.
      cmdArgs =
        (parseCsv(cmdArgsText, { delimiter: ' ', relax_column_count: true, to_line: 1 }) as string[][])[0] ?? [];
    } catch (err) {
      throw invalid(file, `cmd_args: ${(err as Error).message}`);
    }
  }

  const health = bool(h, 'listener_enabled', 'health_checks.') ?? false;
  const bindPort = int(h, 'bind_port', 'health_checks.');
  if (health && (bindPort < 0 || bindPort > 65535))
    throw invalid(file, 'bind port must be positive (and at most 65535)');

  const env = overrides.env ?? process.env;
  let agent = str(c, 'agent_address');
  if (!agent) {
    const spire = env.SPIRE_AGENT_ADDRESS;
    const endpoint = env.SPIFFE_ENDPOINT_SOCKET;
    if (spire && endpoint) {
      throw invalid(file, 'both SPIRE_AGENT_ADDRESS and SPIFFE_ENDPOINT_SOCKET set. Use SPIFFE_ENDPOINT_SOCKET only');
    }
    if (spire) overrides.warn?.('SPIRE_AGENT_ADDRESS is deprecated: use SPIFFE_ENDPOINT_SOCKET');
    agent = endpoint || spire || SPIFFE_HELPER_DEFAULT_AGENT_ADDRESS;
  }
  const certDir = str(c, 'cert_dir');
  return {
    // spiffe-helper takes a socket path (it adds unix://); a URI (unix:// or tcp://) is taken as one too.
    address: /^[a-z][a-z0-9+.-]*:\/\//i.test(agent) ? agent : `unix://${agent}`,
    dir: certDir || '.',
    names:
      x509Count === 3
        ? { svid: x509Names[0] as string, key: x509Names[1] as string, bundle: x509Names[2] as string }
        : null,
    cmd: daemonMode && cmd ? cmd : undefined,
    cmdArgs,
    renewSignal: daemonMode ? renewSignal : undefined,
    pidFile: pidFile || undefined,
    jwtSvids,
    jwtBundleFile: jwtBundleFile || undefined,
    certFileMode: mode('cert_file_mode', 0o644),
    keyFileMode: mode('key_file_mode', 0o600),
    jwtBundleFileMode: mode('jwt_bundle_file_mode', 0o600),
    jwtSvidFileMode: mode('jwt_svid_file_mode', 0o600),
    addIntermediatesToBundle: bool(c, 'add_intermediates_to_bundle') ?? false,
    includeFederatedDomains: bool(c, 'include_federated_domains') ?? false,
    omitExpired: bool(c, 'omit_expired') ?? false,
    hint: str(c, 'hint') || undefined,
    once: !daemonMode,
    health:
      health && daemonMode
        ? {
            port: bindPort || 8081,
            livenessPath: str(h, 'liveness_path', 'health_checks.') || '/live',
            readinessPath: str(h, 'readiness_path', 'health_checks.') || '/ready',
          }
        : undefined,
    // Like spiffe-helper: the helper keeps running when its program exits, and starts it again on the next update.
    exitWithCmd: false,
  };
}

/** A list of objects from HCL (a block or `= [{...}]` decode to one); anything else is an error. */
function listOf(v: unknown, file: string, key: string): Obj[] {
  if (v === undefined) return [];
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => x !== null && typeof x === 'object' && !Array.isArray(x))) {
    throw invalid(file, `${key} must be a list of objects`);
  }
  return list as Obj[];
}

/** Go's strconv.ParseInt(s, 0, 64): optional sign, then 0x / 0o / 0b / leading-0 octal / decimal. */
function goParseInt(s: string): number {
  const m = /^([+-]?)(0[xX][0-9a-fA-F]+|0[oO]?[0-7]+|0[bB][01]+|[1-9][0-9]*|0)$/.exec(s.replace(/_/g, ''));
  if (!m) return Number.NaN;
  const [, sign, digits] = m as unknown as [string, string, string];
  let n: number;
  if (/^0[xX]/.test(digits)) n = Number.parseInt(digits.slice(2), 16);
  else if (/^0[bB]/.test(digits)) n = Number.parseInt(digits.slice(2), 2);
  else if (/^0[oO]/.test(digits)) n = Number.parseInt(digits.slice(2), 8);
  else if (digits.length > 1 && digits.startsWith('0')) n = Number.parseInt(digits.slice(1), 8);
  else n = Number(digits);
  return sign === '-' ? -n : n;
}
