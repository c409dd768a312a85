/**
 * Codes of the CLI's own errors (the library's errors keep their `SpiffeError` codes). Stable: scripts may
 * match on them.
 */
export type CliErrorCode =
  /** A mistake on the command line: unknown option, missing or malformed value. Exit code 2. */
  | 'CLI_USAGE'
  /** The helper's config file cannot be read, is not HCL, or has an unknown key or a bad value. Exit code 2. */
  | 'HELPER_CONFIG_INVALID'
  /** The helper could not start its program (`cmd`), e.g. no such file. Exit code 1. */
  | 'HELPER_CMD_FAILED'
  /** The helper could not find the SVID it was told to write (no SVID with `hint`, no bundle). Exit code 1. */
  | 'HELPER_NO_SVID'
  /** Another dev server already serves the same `--dir`. Exit code 1. */
  | 'DEV_SERVER_LOCKED'
  /** `init`: the target exists and is not an empty directory (nothing is written). Exit code 1. */
  | 'INIT_TARGET_EXISTS'
  /** `init --tarballs` run from an installed spiffe-ts, not from a spiffe-ts checkout. Exit code 1. */
  | 'INIT_NO_CHECKOUT'
  /** `init --tarballs`: a package is not built, or `pnpm pack` failed. Exit code 1. */
  | 'INIT_PACK_FAILED'
  /** `init`: this installation carries no example templates (a broken install). Exit code 1. */
  | 'INIT_NO_TEMPLATES';

/** An error of the `spiffe-ts` command itself, printed as `error [CODE]: message`, with its exit code. */
export class CliError extends Error {
  /** Stable code, printed as `error [CODE]`. */
  readonly code: CliErrorCode;
  /** The process exit code this error leads to (2 for usage and config mistakes, else 1). */
  readonly exitCode: number;

  constructor(code: CliErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.exitCode = code === 'CLI_USAGE' || code === 'HELPER_CONFIG_INVALID' ? 2 : 1;
  }

  /** Always `CliError`. */
  override get name(): string {
    return 'CliError';
  }
}

/** A command-line mistake (exit code 2). */
export const usageError = (message: string): CliError => new CliError('CLI_USAGE', message);
