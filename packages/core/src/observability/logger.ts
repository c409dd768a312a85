import { debuglog } from 'node:util';

/**
 * Where SPIFFE reports go: any pino-compatible logger (pino, `fastify.log`, `request.log`, bunyan-style
 * loggers) or `console`. Every call passes an object of fields first, then the message.
 */
export interface SpiffeLogger {
  /** Logs at error level. */
  error(fields: object, message: string): void;
  /** Logs at warn level: denied requests, refused handshakes, a source still waiting for the Workload API. */
  warn(fields: object, message: string): void;
  /** Logs at info level: e.g. a source that was waiting became ready. */
  info(fields: object, message: string): void;
  /** Logs at debug level: e.g. connections reset during a handshake (probes and scanners). */
  debug(fields: object, message: string): void;
}

/** Log levels of `SpiffeLogger`. */
export type SpiffeLogLevel = 'error' | 'warn' | 'info' | 'debug';

// One debug channel for the whole library: NODE_DEBUG=spiffe.
const debug = debuglog('spiffe');

/** Renders fields as `key=value` pairs for one-line outputs (NODE_DEBUG, process warnings). */
export function formatFields(fields: Readonly<Record<string, unknown>>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    parts.push(`${k}=${typeof v === 'string' ? JSON.stringify(v) : String(v)}`);
  }
  return parts.join(' ');
}

/**
 * Reports one event: to NODE_DEBUG=spiffe always, and to the logger when one is given. A logger that throws
 * never changes what the library does.
 */
export function logEvent(
  logger: SpiffeLogger | undefined,
  level: SpiffeLogLevel,
  fields: Readonly<Record<string, unknown>>,
  message: string,
): void {
  // Formatted only when NODE_DEBUG=spiffe is on: denials can come in floods.
  if (debug.enabled) debug('%s %s', message, formatFields(fields));
  if (!logger) return;
  try {
    logger[level](fields, message);
  } catch {
    // observation only
  }
}
