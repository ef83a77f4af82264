/** a fixed-size window of recent samples with a percentile, for per-camera telemetry */
export class SampleWindow {
  private samples: number[] = [];

  constructor(private readonly size = 200) {}

  add(value: number): void {
    this.samples.push(value);
    if (this.samples.length > this.size) this.samples.shift();
  }

  percentile(p: number): number {
    if (this.samples.length === 0) return 0;
    const sorted = [...this.samples].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
  }

  get count(): number {
    return this.samples.length;
  }

  values(): readonly number[] {
    return this.samples;
  }
}

/** events per second over a sliding window of timestamps (ms) */
export class RateMeter {
  private stamps: number[] = [];

  constructor(private readonly windowMs = 5000) {}

  tick(now = performance.now()): void {
    this.stamps.push(now);
    this.trim(now);
  }

  private trim(now: number): void {
    while (this.stamps.length > 0 && now - this.stamps[0]! > this.windowMs) this.stamps.shift();
  }

  rate(now = performance.now()): number {
    this.trim(now);
    return this.stamps.length / (this.windowMs / 1000);
  }
}
