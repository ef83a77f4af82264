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

/** a poke's run waits this long, so that the pokes of one burst (a wave's devices committing) make one run */
const POKE_DELAY_MS = 100;

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
  /** when the scheduled run is due (ms, epoch) */
  private runAt = 0;
  private running: Promise<void> | undefined;
  /** poked while a run was going on: one more run right after it */
  private pokedWhileRunning = false;
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
    void renew().then(() => this.schedule(0));
  }

  /**
   * Something the job acts on changed here (e.g. a device's update ended): on the holder, the next
   * run starts within POKE_DELAY_MS instead of at the next interval, or right after the one in
   * progress. Pokes in a burst make one run. On another replica it does nothing: the holder's
   * interval still bounds how late the job sees it.
   */
  poke(): void {
    if (this.stopped || !this.held) return;
    if (this.running) this.pokedWhileRunning = true;
    else this.schedule(POKE_DELAY_MS);
  }

  /** the next run in `delayMs`, unless one is due sooner */
  private schedule(delayMs: number): void {
    if (this.stopped) return;
    const at = Date.now() + delayMs;
    if (this.runTimer && this.runAt <= at) return;
    clearTimeout(this.runTimer);
    this.runAt = at;
    this.runTimer = setTimeout(() => void this.run(), delayMs);
  }

  private async run(): Promise<void> {
    this.runTimer = undefined;
    if (this.held) {
      this.pokedWhileRunning = false;
      this.running = this.runOnce();
      await this.running;
      this.running = undefined;
    }
    this.schedule(this.pokedWhileRunning ? POKE_DELAY_MS : this.options.intervalMs);
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
