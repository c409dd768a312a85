import { constants } from 'node:os';
import { isAbsolute } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { usageError } from './errors.js';

/** Option table as `util.parseArgs` takes it. */
export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/**
 * Parses a subcommand's arguments with node's `util.parseArgs` (strict: unknown options and stray positionals
 * are usage errors). `--name value` is turned into `--name=value` first for every option that takes a value,
 * so a value that starts with a dash (`--arg -g`) is taken as the value, as it is with `--arg=-g`; node alone
 * refuses it as ambiguous. `longSingleDash` lists options also accepted with one dash (`-config`, as Go's
 * flag package writes them), for drop-in use in place of SPIFFE Helper.
 */
export function parseOptions<T extends OptionSpec>(
  args: string[],
  options: T,
  longSingleDash: readonly string[] = [],
): ReturnType<typeof parseArgs<{ options: T; strict: true; allowPositionals: false }>>['values'] {
  const joined = joinValues(args, options, longSingleDash);
  return parseStrict(() => parseArgs({ args: joined, options, strict: true, allowPositionals: false }).values);
}

/** `parseOptions` for a command that also takes operands (`init EXAMPLE DIR`): returns them as `positionals`. */
export function parseOptionsAndOperands<T extends OptionSpec>(
  args: string[],
  options: T,
): ReturnType<typeof parseArgs<{ options: T; strict: true; allowPositionals: true }>> {
  const joined = joinValues(args, options, []);
  return parseStrict(() => parseArgs({ args: joined, options, strict: true, allowPositionals: true }));
}

function joinValues(args: string[], options: OptionSpec, longSingleDash: readonly string[]): string[] {
  const takesValue = new Set(Object.entries(options).flatMap(([n, o]) => (o.type === 'string' ? [n] : [])));
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    let a = args[i] as string;
    if (a === '--') {
      joined.push(...args.slice(i));
      break;
    }
    const single = /^-([a-z][a-z-]+)(=.*)?$/.exec(a);
    if (single && longSingleDash.includes(single[1] as string)) a = `-${a}`;
    const name = a.startsWith('--') && !a.includes('=') ? a.slice(2) : undefined;
    if (name !== undefined && takesValue.has(name) && i + 1 < args.length) {
      joined.push(`${a}=${args[++i]}`);
    } else joined.push(a);
  }
  return joined;
}

/** Runs a `util.parseArgs` call; its parse errors become usage errors. */
function parseStrict<R>(parse: () => R): R {
  try {
    return parse();
  } catch (err) {
    if (err instanceof TypeError && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      throw usageError(err.message);
    }
    throw err;
  }
}

/** A whole number within [min, max] from an option value; anything else is a usage error naming the option. */
export function intOption(
  name: string,
  value: string | undefined,
  min: number,
  max: number,
  unit: string,
): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw usageError(`--${name} takes a whole number of ${unit} from ${min} to ${max}, got "${value}"`);
  }
  return n;
}

/** A signal name this platform knows (`SIGHUP`; `HUP` is accepted too), else a usage error. */
export function signalName(value: string, what = '--signal'): NodeJS.Signals {
  const upper = value.trim().toUpperCase();
  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
  if (!(name in constants.signals)) {
    throw usageError(`${what}: unknown signal "${value}" (e.g. SIGHUP, SIGUSR1, SIGTERM)`);
  }
  return name as NodeJS.Signals;
}

/**
 * A Workload API address from `--socket`: a `unix:` or `tcp:` URI as given, or an absolute socket path
 * (what spire-agent's `-socketPath` takes) as `unix://PATH`. Anything else is a usage error with the forms.
 */
export function socketAddress(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (/^[a-z][a-z0-9+.-]*:/i.test(value)) return value;
  if (isAbsolute(value)) return `unix://${value}`;
  throw usageError(
    `--socket takes unix:///path/to/socket, tcp://IP:PORT or an absolute socket path, got "${value}" ` +
      `(for a relative path use unix://$PWD/${value.replace(/^\.\//, '')})`,
  );
}
