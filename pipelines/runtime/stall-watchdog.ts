/**
 * Stops a frame source whose pull has waited longer than the stall timeout, which makes the
 * pending pull return (a stalled GStreamer pull would otherwise wait for ever). Only time spent
 * inside `pull` counts: a slow consumer is not a stalled source.
 */
export class StallWatchdog {
  private pullingSince: number | undefined;
  private timer: NodeJS.Timeout;
  /** whether the watchdog stopped the source */
  stalled = false;

  constructor(source: { stop(): void }, timeoutS: number) {
    const timeoutMs = timeoutS * 1000;
    this.timer = setInterval(
      () => {
        if (this.pullingSince !== undefined && performance.now() - this.pullingSince > timeoutMs) {
          this.stalled = true;
          source.stop();
        }
      },
      Math.min(1000, timeoutMs / 2),
    );
  }

  async pull<T>(next: () => Promise<T>): Promise<T> {
    this.pullingSince = performance.now();
    try {
      return await next();
    } finally {
      this.pullingSince = undefined;
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
