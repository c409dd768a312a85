// Per-step timings of the step benchmarks (handshake-steps.ts, rotation-steps.ts): samples in milliseconds,
// by step name.
export class StepTimes {
  /** Every sample so far, by step, in the order taken. */
  readonly samples = new Map<string, number[]>();

  /** Records, under `step`, the time from `t0` (a `process.hrtime.bigint()`) to now. */
  since(step: string, t0: bigint): void {
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const list = this.samples.get(step);
    if (list) list.push(ms);
    else this.samples.set(step, [ms]);
  }

  /** Runs `f` and records its time under `step`. */
  time<T>(step: string, f: () => T): T {
    const t0 = process.hrtime.bigint();
    const out = f();
    this.since(step, t0);
    return out;
  }
}
