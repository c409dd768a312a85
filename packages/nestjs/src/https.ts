import type * as tls from 'node:tls';
import type { NestApplicationOptions } from '@nestjs/common';
import {
  spiffeServerTls as coreSpiffeServerTls,
  type SpiffeServerTlsOptions,
  type SpiffeTlsServer,
  type X509MaterialSource,
} from '@spiffe-ts/core';

/** Nest declares its own (narrower) type for `httpsOptions`; the SPIFFE options satisfy both. */
export type NestHttpsOptions = NonNullable<NestApplicationOptions['httpsOptions']>;

/** `SpiffeTlsServer` with `options` typed for Nest's `httpsOptions` (whose declared type is narrower). */
export interface NestSpiffeTls extends SpiffeTlsServer {
  /** Pass as `httpsOptions` (platform-express) or `new FastifyAdapter({ https })` (platform-fastify). */
  readonly options: tls.TlsOptions & NestHttpsOptions;
}

/**
 * The core's `spiffeServerTls`, typed for Nest: pass `.options` as `httpsOptions` (platform-express) or
 * `new FastifyAdapter({ https })` (platform-fastify), and the result to `SpiffeModule.forRoot({ tls })`.
 */
export const spiffeServerTls: (source: X509MaterialSource, options?: SpiffeServerTlsOptions) => NestSpiffeTls =
  // The same object: Nest's HttpsOptions only declares some node:tls option types more narrowly.
  coreSpiffeServerTls as (source: X509MaterialSource, options?: SpiffeServerTlsOptions) => NestSpiffeTls;

/**
 * What `spiffeHttpsOptions` returns: `spiffeServerTls`'s wiring plus `source` and `https` (the 0.1 API).
 * @deprecated Use `NestSpiffeTls` from `spiffeServerTls`.
 */
export interface SpiffeHttps extends SpiffeTlsServer {
  /** The live X.509 source the options were built from. */
  readonly source: X509MaterialSource;
  /** The same as `options`, typed for `httpsOptions` (platform-express) and `new FastifyAdapter({ https })`. */
  readonly https: tls.TlsOptions & NestHttpsOptions;
}

/**
 * HTTPS options for a Nest app with SPIFFE mTLS (the 0.1 API).
 * @deprecated Use `spiffeServerTls(source, options)`: pass its `.options` as `httpsOptions` (platform-express)
 * or `new FastifyAdapter({ https })` (platform-fastify), and the wiring itself to `SpiffeModule.forRoot({ tls })`.
 */
export function spiffeHttpsOptions(source: X509MaterialSource, options: SpiffeServerTlsOptions = {}): SpiffeHttps {
  const server = coreSpiffeServerTls(source, options);
  return Object.assign(server, { source, https: server.options as tls.TlsOptions & NestHttpsOptions });
}
