// What the observability tests read our logs and metrics through: a logger that keeps its lines (shared with
// the adapters' tests) and a metric reader pulled on demand (observability.test.ts, rejections.test.ts).
import { AggregationTemporality, MetricReader } from '@opentelemetry/sdk-metrics';

export { type LogLine, recordingLogger } from '../../../test/support/logger.js';

/** A metric reader the test pulls from (cumulative, so each read sees every count so far). */
export class TestReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
  /** The data points of one of our metrics (scope `@spiffe-ts/core`): attributes and value. */
  async points(name: string): Promise<Array<{ attributes: Record<string, unknown>; value: number }>> {
    const { resourceMetrics } = await this.collect();
    return resourceMetrics.scopeMetrics
      .filter((s) => s.scope.name === '@spiffe-ts/core')
      .flatMap((s) => s.metrics.filter((m) => m.descriptor.name === name))
      .flatMap((m) => m.dataPoints.map((p) => ({ attributes: p.attributes, value: p.value as number })));
  }
}
