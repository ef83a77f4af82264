/**
 * A bandwidth cap: `take(n)` resolves when n more bytes may pass at `bytesPerS`. The bucket starts
 * empty and holds at most `burstBytes`, so over any span the bytes that passed are at most
 * rate × span + burst; one bucket per updater is shared by every download and every resumed
 * attempt, so a cut and a resume do not reset the cap. 0 = no cap.
 */
export class TokenBucket {
  private tokens = 0;
  private last = performance.now();

  constructor(
    private readonly bytesPerS: number,
    private readonly burstBytes = Math.max(16 * 1024, bytesPerS / 10),
  ) {}

  get unlimited(): boolean {
    return this.bytesPerS <= 0;
  }

  async take(n: number, signal?: AbortSignal): Promise<void> {
    if (this.unlimited) return;
    const now = performance.now();
    this.tokens = Math.min(this.burstBytes, this.tokens + ((now - this.last) / 1000) * this.bytesPerS);
    this.last = now;
    this.tokens -= n;
    if (this.tokens >= 0) return;
    const waitMs = (-this.tokens / this.bytesPerS) * 1000;
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        signal?.removeEventListener('abort', abort);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      const abort = () => {
        clearTimeout(timer);
        reject(signal!.reason);
      };
      if (signal?.aborted) abort();
      else signal?.addEventListener('abort', abort, { once: true });
    });
  }
}
