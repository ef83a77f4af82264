/** devices with a bucket at most; past it, the buckets that are full again are forgotten */
const MAX_DEVICES = 100_000;

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per device: `burst` messages at once, refilled at `perSecond`. A message over the
 * rate is not refused: `delayMs` answers how long its acknowledgement must wait, so that a QoS 1
 * sender slows down to the rate (its later messages wait further behind) and loses nothing.
 */
export class DeviceRate {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** takes a token for one message of `device`: 0, or the ms its acknowledgement has to wait */
  delayMs(device: string): number {
    const t = this.now();
    let b = this.buckets.get(device);
    if (!b) {
      if (this.buckets.size >= MAX_DEVICES) this.forgetFull(t);
      b = { tokens: this.burst, at: t };
      this.buckets.set(device, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) * this.perSecond) / 1000);
    b.at = t;
    b.tokens -= 1;
    return b.tokens >= 0 ? 0 : (-b.tokens * 1000) / this.perSecond;
  }

  /** a device whose bucket refilled is the same as one never seen */
  private forgetFull(t: number): void {
    for (const [device, b] of this.buckets)
      if (b.tokens + ((t - b.at) * this.perSecond) / 1000 >= this.burst) this.buckets.delete(device);
    // every device is over its rate at once: start again rather than grow
    if (this.buckets.size >= MAX_DEVICES) this.buckets.clear();
  }
}
