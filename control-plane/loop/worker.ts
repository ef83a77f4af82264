import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { loadSigningKey, type SigningKey } from '../../models/bundle/keys.ts';
import type { ArtifactRegistry } from '../artifacts/registry.ts';
import type { HarvestedFrames, HarvestSource } from '../harvest/frames.ts';
import type { StillHeld } from '../leased-job.ts';
import type { LoopRun, LoopRunStore } from './store.ts';

/** what the loop (models/loop, `runLoop`) is given for one run */
export interface LoopRunnerOptions {
  site: string;
  workDir: string;
  source: HarvestSource;
  signingKey?: SigningKey;
  signal?: AbortSignal;
  onProgress?: (step: string, fraction: number, message: string) => void;
}

export interface LoopRunnerResult {
  bundlePath?: string;
  passed: boolean;
  report: object;
}

/** the loop itself: models/loop's `runLoop` */
export type LoopRunner = (options: LoopRunnerOptions) => Promise<LoopRunnerResult>;

export interface LoopWorkerOptions {
  runs: LoopRunStore;
  harvest: HarvestedFrames;
  registry: ArtifactRegistry;
  runner: LoopRunner;
  /** the runs' work directories live under it, one per run id */
  dir: string;
  /** this worker's name in the runs it holds (its lease holder's name) */
  holder: string;
  /** the key a passing candidate is signed with (`loop.signingKey`) */
  signingKey: string | undefined;
  /** how often a running run checks the lease and a cancellation, ms */
  checkMs: number;
  log: Logger;
  /** every progress report of the run (after it is recorded): the CLI prints them */
  onProgress?: (run: LoopRun, step: string, fraction: number, message: string) => void;
}

/** progress is written to the database at most this often (and at every new step) */
const PROGRESS_WRITE_MS = 500;

class Stop extends Error {
  constructor(readonly why: 'cancelled' | 'lost' | 'interrupted') {
    super(
      why === 'cancelled'
        ? 'the run was cancelled'
        : why === 'lost'
          ? 'the loop lease was lost'
          : 'interrupted',
    );
  }
}

/**
 * Executes loop runs, one at a time, for the worker that holds the loop's lease
 * (control-plane/leased-job.ts, lease `loop`): takes the oldest queued run — or a running one whose
 * worker went away, which resumes from its work directory (`<loop.dir>/<run id>`, the loop's steps
 * resumable there) — and runs the loop on the site's harvested frames, recording its step and
 * progress. Every `checkMs` it checks that it still holds the lease and that no one cancelled the
 * run, and aborts the loop when either fails. A candidate that passed the gate is published to the
 * artifact registry (verified as any upload; the same bundle again changes nothing), so that an
 * operator can roll it out to the site's boxes; only then is the run `succeeded`, with the
 * artifact's id. An interrupted run (the worker stopped) goes back to `queued`; a run whose lease
 * was lost is left to the worker that took the lease.
 */
export class LoopWorker {
  constructor(private readonly o: LoopWorkerOptions) {}

  /**
   * Runs the next runnable run (of `site` only, when given) while `stillHeld`; `signal` interrupts
   * it (it is queued again). Answers the run as it ended, or undefined when there was none.
   */
  async runNext(stillHeld: StillHeld, signal?: AbortSignal, site?: string): Promise<LoopRun | undefined> {
    const { runs, holder, log } = this.o;
    const next = await runs.nextRunnable(site);
    if (!next || !stillHeld()) return undefined;
    if (!(await runs.start(next.id, holder))) return runs.get(next.id);
    const run = (await runs.get(next.id))!;
    const stop = new AbortController();
    const halt = (why: Stop['why']) => {
      if (!stop.signal.aborted) stop.abort(new Stop(why));
    };
    const interrupted = () => halt('interrupted');
    signal?.addEventListener('abort', interrupted, { once: true });
    if (signal?.aborted) interrupted();
    const timer = setInterval(() => {
      if (!stillHeld()) return halt('lost');
      void runs.cancelRequested(run.id, holder).then(
        (cancel) => {
          if (cancel === undefined) halt('lost');
          else if (cancel) halt('cancelled');
        },
        (err: unknown) => log.warn({ run: run.id, err: errorMessage(err) }, 'cannot read the loop run'),
      );
    }, this.o.checkMs);
    log.info({ run: run.id, site: run.site }, run.startedAt ? 'loop run taken on' : 'loop run started');
    try {
      const result = await this.execute(run, stop.signal);
      if (stop.signal.aborted) throw stop.signal.reason;
      await this.finishWith(run, result);
    } catch (err) {
      const why = stop.signal.aborted ? (stop.signal.reason as Stop).why : undefined;
      if (why === 'cancelled')
        await runs.finish(run.id, holder, { state: 'cancelled', reason: 'cancelled while running' });
      else if (why === 'interrupted') await runs.requeue(run.id, holder, 'interrupted: queued to resume');
      else if (why === undefined) {
        log.error({ run: run.id, err: errorMessage(err) }, 'loop run failed');
        await runs.finish(run.id, holder, { state: 'failed', reason: errorMessage(err) });
      } else log.warn({ run: run.id }, 'loop lease lost: the worker that takes it on resumes the run');
    } finally {
      clearInterval(timer);
      signal?.removeEventListener('abort', interrupted);
    }
    return runs.get(run.id);
  }

  private async execute(run: LoopRun, signal: AbortSignal): Promise<LoopRunnerResult> {
    const { runs, holder } = this.o;
    const signingKey = this.o.signingKey ? await loadSigningKey(this.o.signingKey) : undefined;
    let written = { step: '', at: 0 };
    let writing: Promise<unknown> = Promise.resolve();
    const result = await this.o.runner({
      site: run.site,
      workDir: join(this.o.dir, run.id),
      source: this.o.harvest.source(run.site),
      ...(signingKey ? { signingKey } : {}),
      signal,
      onProgress: (step, fraction, message) => {
        const now = Date.now();
        if (step === written.step && now - written.at < PROGRESS_WRITE_MS && fraction < 1) return;
        written = { step, at: now };
        writing = writing
          .then(() => runs.progress(run.id, holder, step, fraction, message, now))
          .then((outcome) => {
            if (outcome) this.o.onProgress?.(run, step, fraction, message);
          })
          .catch((err: unknown) =>
            this.o.log.warn({ run: run.id, err: errorMessage(err) }, 'cannot record the loop run’s progress'),
          );
      },
    });
    await writing;
    return result;
  }

  private async finishWith(run: LoopRun, result: LoopRunnerResult): Promise<void> {
    const { runs, holder, registry } = this.o;
    if (!result.passed || !result.bundlePath) {
      await runs.finish(run.id, holder, {
        state: 'failed',
        passed: false,
        reason: result.passed
          ? 'the candidate passed the gate but no bundle was written'
          : 'the gate refused the candidate: see the report',
        report: result.report,
      });
      return;
    }
    if (!this.o.signingKey)
      throw new Error(
        'the candidate passed the gate but is not signed: set loop.signingKey in the control-plane config (its public key in artifacts.keyring and the boxes’ ota.keyring), then run the loop again (it resumes at signing)',
      );
    const published = await registry.publish(createReadStream(result.bundlePath), `loop:${run.id}`);
    await runs.finish(run.id, holder, {
      state: 'succeeded',
      passed: true,
      artifact: published.artifact.id,
      report: result.report,
    });
    this.o.log.info(
      {
        run: run.id,
        site: run.site,
        artifact: `${published.artifact.kind}:${published.artifact.name}:${published.artifact.version}`,
      },
      'loop candidate registered: roll it out to the site’s boxes',
    );
  }
}
