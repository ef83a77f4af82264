import { ArgusError } from '../../common/errors.ts';
import type { FullFrame } from '../../video/frame-source.ts';
import { type Annotation, renderAnnotatedJpeg } from '../snapshot.ts';

/**
 * An event's snapshot, rendered after the event was sent: its size is the frame's, known at once;
 * its JPEG comes later.
 */
export interface PendingJpeg {
  width: number;
  height: number;
  /** rejects when the snapshot could not be rendered or was dropped (too many waiting) */
  jpeg: Promise<Buffer>;
}

export interface SnapshotRendererLimits {
  /** snapshots rendered at the same time (their drawing runs on the main thread, the encode on GStreamer's) */
  concurrency: number;
  /** snapshots waiting to be rendered at most; more are dropped */
  maxQueued: number;
  /** bytes of the frames they hold at most (a frame shared by two snapshots counts twice) */
  maxQueuedBytes: number;
}

/** two at a time on a 2-core box; ~64 vtest.avi frames or ~20 of 1080p waiting */
export const DEFAULT_SNAPSHOT_LIMITS: SnapshotRendererLimits = {
  concurrency: 2,
  maxQueued: 64,
  maxQueuedBytes: 64 * 1024 * 1024,
};

interface Job {
  frame: FullFrame;
  annotations: readonly Annotation[];
  quality: number;
  resolve: (jpeg: Buffer) => void;
  reject: (err: Error) => void;
}

/**
 * Renders event snapshots in the background, in the order asked, a few at a time, so that no
 * event waits for a JPEG: the event is sent with the snapshot's reference and the JPEG follows
 * when it is rendered. Bounded: while `maxQueued` snapshots (or `maxQueuedBytes` of their frames)
 * wait, a new one is dropped at once (its `jpeg` rejects) and counted. The cameras of a box share
 * one renderer.
 */
export class SnapshotRenderer {
  private readonly queue: Job[] = [];
  private queuedBytes = 0;
  private active = 0;
  private idleWaiters: (() => void)[] = [];
  /** snapshots rendered, dropped because too many waited, failed to render */
  readonly counts = { rendered: 0, dropped: 0, failed: 0 };

  constructor(private readonly limits: SnapshotRendererLimits = DEFAULT_SNAPSHOT_LIMITS) {}

  /** queues the frame with its annotations; nothing of the rendering runs before this returns */
  render(frame: FullFrame, annotations: readonly Annotation[], quality: number): PendingJpeg {
    const jpeg = new Promise<Buffer>((resolve, reject) => {
      const bytes = frame.data.byteLength;
      if (
        this.queue.length >= this.limits.maxQueued ||
        this.queuedBytes + bytes > this.limits.maxQueuedBytes
      ) {
        this.counts.dropped++;
        reject(
          new ArgusError(
            `snapshot dropped: ${this.queue.length} snapshots (${this.queuedBytes} bytes of frames) wait to be rendered`,
            'the box renders snapshots slower than its cameras make events: lower the scene snapshot quality or the cameras',
          ),
        );
        return;
      }
      this.queue.push({ frame, annotations, quality, resolve, reject });
      this.queuedBytes += bytes;
      setImmediate(() => this.pump());
    });
    // a listener that never looks at the JPEG leaves no unhandled rejection behind
    jpeg.catch(() => undefined);
    return { width: frame.width, height: frame.height, jpeg };
  }

  /** resolves once nothing waits or renders */
  idle(): Promise<void> {
    if (this.active === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** snapshots waiting or rendering */
  get pending(): number {
    return this.queue.length + this.active;
  }

  private pump(): void {
    while (this.active < this.limits.concurrency) {
      const job = this.queue.shift();
      if (!job) break;
      this.queuedBytes -= job.frame.data.byteLength;
      this.active++;
      renderAnnotatedJpeg(job.frame, job.annotations, job.quality)
        .then(
          (jpeg) => {
            this.counts.rendered++;
            job.resolve(jpeg);
          },
          (err: unknown) => {
            this.counts.failed++;
            job.reject(err instanceof Error ? err : new Error(String(err)));
          },
        )
        .finally(() => {
          this.active--;
          this.pump();
          if (this.active === 0 && this.queue.length === 0) {
            const waiters = this.idleWaiters;
            this.idleWaiters = [];
            for (const w of waiters) w();
          }
        });
    }
  }
}
