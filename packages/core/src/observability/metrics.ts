import { type Attributes, type Counter, type MeterProvider, metrics } from '@opentelemetry/api';

/** The instrumentation scope of every SPIFFE metric. */
export const METER_NAME = '@spiffe-ts/core';

/** Metric names, as exported (OpenTelemetry style; Prometheus exporters turn the dots into underscores). */
export const SpiffeMetric = {
  /** Gauge, seconds: time left before the current X.509-SVID of each live source expires (`spiffe.id`). */
  SVID_EXPIRY: 'spiffe.svid.expiry',
  /** Counter: X.509-SVIDs replaced by a new one in a live source (`source`). */
  SVID_ROTATIONS: 'spiffe.svid.rotations',
  /** Counter: Workload API failures seen by live sources (`code`, `source`). */
  WORKLOAD_API_ERRORS: 'spiffe.workload_api.errors',
  /** Counter: server-side TLS handshakes (`result`: accepted | refused, `reason` when refused). */
  TLS_HANDSHAKES: 'spiffe.tls.handshakes',
  /** Counter: requests and calls denied by a SPIFFE check (`reason`: the denial code). */
  REQUESTS_DENIED: 'spiffe.requests.denied',
} as const;

interface Instruments {
  rotations: Counter;
  workloadApiErrors: Counter;
  handshakes: Counter;
  denied: Counter;
}

/** What the expiry gauge reads from a live source. */
export interface ExpiryProbe {
  /** The current SVID's ID and expiry, or undefined when there is none. */
  svidExpiry(): { id: string; expiresAt: Date } | undefined;
}

// Sources are tracked weakly: a source that is dropped without close() must not be kept alive by metrics.
const probes = new Set<WeakRef<ExpiryProbe>>();

let provider: MeterProvider | undefined;
let instruments: Instruments | undefined;

// The OpenTelemetry API returns no-op instruments until an SDK installs a global MeterProvider, and an
// instrument never follows a later installation: instruments are (re)created whenever the global provider
// is another object than the one they came from. Cheap: one property read per event.
function current(): Instruments {
  const p = metrics.getMeterProvider();
  if (instruments && p === provider) return instruments;
  provider = p;
  const meter = p.getMeter(METER_NAME);
  instruments = {
    rotations: meter.createCounter(SpiffeMetric.SVID_ROTATIONS, {
      description: 'X.509-SVIDs replaced by a new one in a live source',
    }),
    workloadApiErrors: meter.createCounter(SpiffeMetric.WORKLOAD_API_ERRORS, {
      description: 'Workload API failures seen by live sources',
    }),
    handshakes: meter.createCounter(SpiffeMetric.TLS_HANDSHAKES, {
      description: 'Server-side SPIFFE TLS handshakes, accepted or refused',
    }),
    denied: meter.createCounter(SpiffeMetric.REQUESTS_DENIED, {
      description: 'Requests and calls denied by a SPIFFE check',
    }),
  };
  meter
    .createObservableGauge(SpiffeMetric.SVID_EXPIRY, {
      description: 'Seconds until the current X.509-SVID of a live source expires',
      unit: 's',
    })
    .addCallback((result) => {
      const now = Date.now();
      for (const ref of probes) {
        const probe = ref.deref();
        if (!probe) {
          probes.delete(ref);
          continue;
        }
        const e = probe.svidExpiry();
        if (e) result.observe((e.expiresAt.getTime() - now) / 1000, { 'spiffe.id': e.id });
      }
    });
  return instruments;
}

/** Adds a live source to the expiry gauge; returns the removal. */
export function trackSvidExpiry(probe: ExpiryProbe): () => void {
  const ref = new WeakRef(probe);
  probes.add(ref);
  current();
  return () => {
    probes.delete(ref);
  };
}

/** Counts one SVID rotation. */
export function countRotation(attributes: Attributes): void {
  current().rotations.add(1, attributes);
}

/** Counts one Workload API failure. */
export function countWorkloadApiError(attributes: Attributes): void {
  current().workloadApiErrors.add(1, attributes);
}

/** Counts one server-side handshake. */
export function countHandshake(attributes: Attributes): void {
  current().handshakes.add(1, attributes);
}

/** Counts one denied request or call. */
export function countDenial(attributes: Attributes): void {
  current().denied.add(1, attributes);
}
