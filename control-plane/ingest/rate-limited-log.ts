import type { Logger } from '../../common/logger.ts';

const MAX_KEYS = 10_000;
/** warnings logged per interval across every key; past it they are counted in one summary line */
const DEFAULT_BUDGET = 100;

/**
 * Logs a warning per key at most once per `intervalMs`, with the number of occurrences it did not
 * log, so that a device flooding bad messages cannot flood the log. Keys come from the network
 * (topics, device ids), so an attacker can make new ones at will: all keys together get at most
 * `budget` lines per interval, and the warnings past it are summed up in one line when the
 * interval ends (how many, under how many keys).
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();
  private windowStart = 0;
  private logged = 0;
  /** warnings past the budget in the current interval, and their distinct keys (counted up to MAX_KEYS) */
  private overBudget = 0;
  private readonly overBudgetKeys = new Set<string>();
  private summary: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = 10_000,
    private readonly budget = DEFAULT_BUDGET,
  ) {}

  warn(key: string, fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    if (now - this.windowStart >= this.intervalMs) {
      this.windowStart = now;
      this.logged = 0;
    }
    const entry = this.last.get(key);
    if (entry && now - entry.at < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    if (this.logged >= this.budget) {
      this.overBudget++;
      if (this.overBudgetKeys.size < MAX_KEYS) this.overBudgetKeys.add(key);
      this.summary ??= setTimeout(() => this.summarize(), this.intervalMs - (now - this.windowStart)).unref();
      return;
    }
    this.logged++;
    // keep the table bounded
    if (!entry && this.last.size >= MAX_KEYS) this.last.clear();
    this.last.set(key, { at: now, suppressed: 0 });
    this.log.warn({ ...fields, suppressedSinceLast: entry?.suppressed ?? 0 }, message);
  }

  /** one line for the warnings past the budget of the interval that ended */
  private summarize(): void {
    this.summary = undefined;
    this.log.warn(
      {
        suppressed: this.overBudget,
        keys: this.overBudgetKeys.size,
        budget: this.budget,
        intervalMs: this.intervalMs,
      },
      `more warnings than the log takes: ${this.overBudget} not logged (under ${this.overBudgetKeys.size} keys)`,
    );
    this.overBudget = 0;
    this.overBudgetKeys.clear();
  }
}
