import type { IncomingMessage, ServerResponse } from 'node:http';

/** What a live source reports about itself (`source.health()`). */
export interface SourceHealth {
  /** The source's class name (X509Source, JwtSource, BundleSource, ...). */
  readonly source: string;
  /**
   * It can serve now: it has received its material, is not closed and, for an SVID source, its SVID has not
   * expired.
   */
  readonly ready: boolean;
  /** The current X.509-SVID's expiry, for sources that hold one. */
  readonly svidExpiresAt?: Date;
  /** When the last Workload API update was adopted. */
  readonly lastUpdate?: Date;
  /** The last failure (Workload API or refused update), with when it happened. */
  readonly lastError?: { readonly code: string; readonly message: string; readonly at: Date };
}

/** Anything that can report its health: every Workload API source, or an object of your own. */
export interface HealthReporter {
  /** The current health report; should not throw (`checkReadiness` counts a reporter that throws as not ready). */
  health(): SourceHealth;
}

/** The readiness of a set of sources, as `checkReadiness` returns it and the health handler sends it. */
export interface ReadinessReport {
  /** Every source is ready. */
  readonly ready: boolean;
  /** Each source's own report, in the order given. */
  readonly sources: readonly SourceHealth[];
}

/** The readiness of every source: ready when each one is (no sources: ready). */
export function checkReadiness(sources: Iterable<HealthReporter>): ReadinessReport {
  const reports: SourceHealth[] = [];
  for (const s of sources) {
    try {
      reports.push(s.health());
    } catch (err) {
      // A reporter that throws is not ready; the probe must still answer.
      reports.push({
        source: 'unknown',
        ready: false,
        lastError: { code: 'HEALTH_FAILED', message: (err as Error)?.message ?? String(err), at: new Date() },
      });
    }
  }
  return { ready: reports.every((r) => r.ready), sources: reports };
}

/** Options of `healthHandler`. */
export interface HealthHandlerOptions {
  /** The sources readiness depends on (X509Source, JwtSource, BundleSource, ... or any `HealthReporter`). */
  sources: Iterable<HealthReporter>;
  /** Path of the liveness probe (default `/live`): 200 while the process can answer. */
  livePath?: string;
  /** Path of the readiness probe (default `/ready`): 200 when every source is ready, else 503. */
  readyPath?: string;
}

/**
 * A node:http handler for liveness and readiness probes, usable as `http.createServer(handler)` (a probe
 * port of its own: kubelets and load balancers hold no SVID, so they cannot reach an mTLS port), as Express
 * middleware (other paths go to `next()`), or from any framework's route with the raw request and response.
 * Answers JSON: `{ ready, sources: [...] }` on the readiness path.
 */
export function healthHandler(
  options: HealthHandlerOptions,
): (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void {
  const livePath = options.livePath ?? '/live';
  const readyPath = options.readyPath ?? '/ready';
  return (req, res, next) => {
    const path = (req.url ?? '/').split('?')[0];
    let status: number;
    let body: unknown;
    if (path === livePath) {
      status = 200;
      body = { live: true };
    } else if (path === readyPath) {
      const report = checkReadiness(options.sources);
      status = report.ready ? 200 : 503;
      body = report;
    } else if (next) {
      next();
      return;
    } else {
      status = 404;
      body = { error: 'not found' };
    }
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
    });
    res.end(req.method === 'HEAD' ? undefined : text);
  };
}
