import { isIP } from 'node:net';
import { WorkloadApiError } from '../errors.js';

/** Environment variable naming the Workload API endpoint (SPIFFE Workload Endpoint standard). */
export const SPIFFE_ENDPOINT_SOCKET = 'SPIFFE_ENDPOINT_SOCKET';

function bad(message: string): WorkloadApiError {
  return new WorkloadApiError('WORKLOADAPI_BAD_ADDRESS', message);
}

/**
 * Validates a Workload API address per the SPIFFE Workload Endpoint standard and returns the gRPC target:
 * `unix:///absolute/path` (no authority, no query or fragment) or `tcp://IP:port` (IP literal, port, nothing
 * else).
 */
export function targetFromAddress(address: string): string {
  if (typeof address !== 'string' || address === '') throw bad('workload endpoint socket address is empty');
  let u: URL;
  try {
    u = new URL(address);
  } catch {
    throw bad(`workload endpoint socket is not a valid URI: "${address}"`);
  }
  if (u.protocol === 'unix:') {
    if (u.username || u.password) throw bad('workload endpoint unix socket URI must not include user info');
    if (u.host) throw bad('workload endpoint unix socket URI must not include an authority (use unix:///path)');
    if (u.search) throw bad('workload endpoint unix socket URI must not include query values');
    if (u.hash) throw bad('workload endpoint unix socket URI must not include a fragment');
    const path = decodeURIComponent(u.pathname);
    if (!path.startsWith('/')) throw bad('workload endpoint unix socket URI must include an absolute path');
    return `unix://${path}`;
  }
  if (u.protocol === 'tcp:') {
    if (u.username || u.password) throw bad('workload endpoint tcp socket URI must not include user info');
    if (!u.hostname) throw bad('workload endpoint tcp socket URI must include a host');
    if (u.pathname && u.pathname !== '/') throw bad('workload endpoint tcp socket URI must not include a path');
    if (/^tcp:\/\/[^/]+\/$/.test(address)) throw bad('workload endpoint tcp socket URI must not include a path');
    if (u.search) throw bad('workload endpoint tcp socket URI must not include query values');
    if (u.hash) throw bad('workload endpoint tcp socket URI must not include a fragment');
    const host = u.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) === 0) throw bad('workload endpoint tcp socket URI host component must be an IP:port');
    if (!u.port) throw bad('workload endpoint tcp socket URI host component must include a port');
    return isIP(host) === 6 ? `ipv6:[${host}]:${u.port}` : `ipv4:${host}:${u.port}`;
  }
  throw bad('workload endpoint socket URI must have a "tcp" or "unix" scheme');
}

/** The address from the option or from SPIFFE_ENDPOINT_SOCKET; throws when neither is set. */
export function resolveAddress(address?: string): string {
  const value = address ?? process.env[SPIFFE_ENDPOINT_SOCKET];
  if (value === undefined || value === '') {
    throw new WorkloadApiError(
      'WORKLOADAPI_NO_ADDRESS',
      `no Workload API address: pass one or set ${SPIFFE_ENDPOINT_SOCKET} (e.g. unix:///tmp/spire-agent/public/api.sock)`,
    );
  }
  return targetFromAddress(value);
}
