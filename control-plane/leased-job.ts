import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { LeaseStore } from './storage/leases.ts';

export interface LeasedJobOptions {
  /** the lease's name, shared by every replica running this job */
  name: string;
  /** this replica's name in the lease */
  holder: string;
  /** a holder that stops renewing loses the lease after this long */
  ttlMs: number;
  /** a run every this long, on the holder only */
  intervalMs: number;
}

/**
 * Whether the lease is still this replica's, with time left to do one more step: a job checks it
 * between its steps and stops when it answers false
 */
export type StillHeld = () => boolean;

/**
 * Runs `job` every `intervalMs` on the replica holding the lease `name`. The lease is taken or
 * renewed every third of its time to live; a replica that cannot renew (its database link broke,
 * its event loop stalled) stops counting itself the holder when the lease would have expired, so
 * two replicas never run the job at once as long as their clocks agree.
 */
export class LeasedJob {
  private expiresAt = 0;
  private renewTimer: NodeJS.Timeout | undefined;
  private runTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly leases: LeaseStore,
    private readonly options: LeasedJobOptions,
    private readonly job: (stillHeld: StillHeld) => Promise<void>,
    private readonly log: Logger,
  ) {}

  /** whether this replica holds the lease now */
  get held(): boolean {
    return Date.now() < this.expiresAt;
  }

  start(): void {
    const renew = async () => {
      await this.renew();
      if (!this.stopped) this.renewTimer = setTimeout(renew, this.options.ttlMs / 3);
    };
    const run = async () => {
      if (this.held) {
        this.running = this.runOnce();
        await this.running;
      }
      if (!this.stopped) this.runTimer = setTimeout(run, this.options.intervalMs);
    };
    void renew().then(() => {
      if (!this.stopped) this.runTimer = setTimeout(run, 0);
    });
  }

  /** waits for a run in progress to reach its next check, then gives the lease up */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.renewTimer);
    clearTimeout(this.runTimer);
    const wasHeld = this.held;
    this.expiresAt = 0;
    await this.running;
    if (wasHeld)
      await this.leases.release(this.options.name, this.options.holder).catch((err: unknown) => {
        this.log.warn({ err: errorMessage(err), lease: this.options.name }, 'cannot release a lease');
      });
  }

  private async renew(): Promise<void> {
    const { name, holder, ttlMs } = this.options;
    const asked = Date.now();
    try {
      const got = await this.leases.take(name, holder, ttlMs, asked);
      if (this.stopped) return;
      if (got && !this.held) this.log.info({ lease: name, holder }, 'lease taken: this replica runs the job');
      if (!got && this.held) this.log.warn({ lease: name, holder }, 'lease lost to another replica');
      this.expiresAt = got ? asked + ttlMs : 0;
    } catch (err) {
      this.log.warn({ err: errorMessage(err), lease: name }, 'cannot renew a lease; retrying');
    }
  }

  private async runOnce(): Promise<void> {
    // one more step only with a third of the lease left at least
    const stillHeld = () => !this.stopped && Date.now() + this.options.ttlMs / 3 < this.expiresAt;
    try {
      await this.job(stillHeld);
    } catch (err) {
      this.log.error(
        { err: errorMessage(err), job: this.options.name },
        'a leased job failed; it runs again later',
      );
    }
  }
}
