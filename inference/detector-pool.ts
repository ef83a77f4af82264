import { availableParallelism } from 'node:os';
import type { Logger } from '../common/logger.ts';
import type { ModelDescriptor } from './descriptor.ts';
import type { Detection, FrameDetector } from './detector.ts';
import type { ModelFrame } from './model-frame.ts';
import type { DetectorSettings } from './settings.ts';
import { ThreadedDetector } from './threaded-detector.ts';

/** threads per session: as configured, or an equal share of the cores */
export function sessionThreads(settings: DetectorSettings, cores = availableParallelism()): number {
  return settings.intraOpThreads || Math.max(1, Math.floor(cores / settings.sessions));
}

/**
 * `settings.sessions` detector sessions of one model, each on its own worker thread, that run
 * inference calls side by side. On a small CPU, sessions with fewer threads each beat one session
 * with every core: a session's threads wait for each other at every operator, so any other work
 * on the box (decoding, tracking, the event loop) stalls all of them at once.
 */
export class DetectorPool implements FrameDetector {
  private readonly busy: number[];
  // every session loaded the same model (a restarted one that loads another is refused)
  readonly descriptor: ModelDescriptor;
  readonly inputWidth: number;
  readonly inputHeight: number;
  readonly maxBatch: number;
  readonly concurrency: number;

  private constructor(private readonly members: ThreadedDetector[]) {
    this.busy = members.map(() => 0);
    const first = members[0]!;
    this.descriptor = first.descriptor;
    this.inputWidth = first.inputWidth;
    this.inputHeight = first.inputHeight;
    this.maxBatch = first.maxBatch;
    this.concurrency = members.length;
  }

  static async load(settings: DetectorSettings, log: Logger): Promise<DetectorPool> {
    const threads = sessionThreads(settings);
    const members: ThreadedDetector[] = [];
    try {
      for (let i = 0; i < settings.sessions; i++)
        members.push(await ThreadedDetector.load({ ...settings, intraOpThreads: threads }, log));
    } catch (err) {
      await Promise.all(members.map((m) => m.close()));
      throw err;
    }
    log.info({ sessions: members.length, threadsEach: threads }, 'detector sessions ready');
    return new DetectorPool(members);
  }

  /** the provider of the first session's current thread */
  get provider(): string {
    return this.members[0]!.provider;
  }

  /** times a session's thread came back after a crash, over all sessions */
  get restarts(): number {
    return this.members.reduce((n, m) => n + m.restarts, 0);
  }

  /** runs on the session with the fewest calls in progress */
  async detect(frames: readonly ModelFrame[]): Promise<Detection[][]> {
    let i = 0;
    for (let k = 1; k < this.busy.length; k++) if (this.busy[k]! < this.busy[i]!) i = k;
    this.busy[i]!++;
    try {
      return await this.members[i]!.detect(frames);
    } finally {
      this.busy[i]!--;
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.members.map((m) => m.close()));
  }
}
