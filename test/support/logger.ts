// A logger for tests that keeps what it is given: the core's observability tests and the adapters' tests read
// our log lines through it. Not a test file itself (the runner takes *.test.ts only).
import type { SpiffeLogger } from '@spiffe-ts/core';

/** One call on the recording logger. */
export interface LogLine {
  level: string;
  fields: Record<string, unknown>;
  message: string;
}

/** A logger that records every call, pino-style (fields, message). */
export function recordingLogger(): SpiffeLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (fields: object, message: string) => {
    lines.push({ level, fields: fields as Record<string, unknown>, message });
  };
  return { lines, error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}
