import type { Logger } from '../../common/logger.ts';

const MAX_KEYS = 10_000;

/**
 * Logs a warning per key at most once per `intervalMs`, with the number of occurrences it did not
 * log, so that a device flooding bad messages cannot flood the log.
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = 10_000,
  ) {}

  warn(key: string, fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    const entry = this.last.get(key);
    if (entry && now - entry.at < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    // keys come from the network (topics, device ids): keep the table bounded
    if (!entry && this.last.size >= MAX_KEYS) this.last.clear();
    this.last.set(key, { at: now, suppressed: 0 });
    this.log.warn({ ...fields, suppressedSinceLast: entry?.suppressed ?? 0 }, message);
  }
}
