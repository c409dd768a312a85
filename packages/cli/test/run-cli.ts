// Runs the CLI in this process with captured output, as the command-line tests need it (cli.test.ts,
// init.test.ts, usage.test.ts).
import { runCli } from '@spiffe-ts/cli';

/** What one in-process CLI run gave: exit code and everything written to stdout and stderr. */
export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** Runs `spiffe-ts <args>` in process, with `stdin` as standard input (default empty); `signal` stops long-running commands. */
export async function cli(args: string[], options: { stdin?: string; signal?: AbortSignal } = {}): Promise<CliResult> {
  let out = '';
  let err = '';
  const code = await runCli(args, {
    out: (s) => {
      out += `${s}\n`;
    },
    err: (s) => {
      err += `${s}\n`;
    },
    stdin: () => options.stdin ?? '',
    signal: options.signal,
  });
  return { code, out, err };
}
