import { ArgusError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import type { Detection, FrameDetector } from '../../inference/detector.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import { areaOf, type Rect } from '../../inference/rect.ts';
import type { BranchCaps } from '../../video/pipeline-description.ts';
import { Mosaic } from './mosaic.ts';

/** how a camera's frames wait for the detector */
export type QueueMode =
  /** live cameras: a newer frame replaces one still waiting (counted as a drop) */
  | 'newest'
  /** replays: frames wait in order; the producer awaits when the queue is full */
  | 'ordered';

interface Job {
  frame: ModelFrame;
  /** only these regions of the frame (model-frame pixels); the whole frame when undefined */
  regions: Rect[] | undefined;
  /** the inputs it fills: its regions' share of the frame when they share inputs, else 1 */
  cost: number;
  /** its tallest region's height (infinite for a whole frame): the packing order */
  height: number;
  submitted: number;
  stamps: DetectionStamps | undefined;
  resolve: (d: Detection[] | null) => void;
  reject: (err: unknown) => void;
}

interface Entry {
  lane: Lane;
  job: Job;
}

/** one input of an inference call: a whole frame, or the regions of one or more frames */
type Input = { entry: Entry } | { mosaic: Mosaic<Entry>; shared: boolean };

interface Lane {
  camera: string;
  mode: QueueMode;
  jobs: Job[];
  drops: number;
  detected: number;
}

/** when a submitted frame's inference call started and ended (ms, performance clock), filled in by the scheduler */
export interface DetectionStamps {
  startedAt?: number;
  inferredAt?: number;
}

export interface SchedulerOptions {
  /** frames per inference call (capped by what the model allows) */
  maxBatch: number;
  /** how long a free detector session waits for a batch to fill */
  maxWaitMs: number;
}

/**
 * Shares the box's detector between all its cameras. Frames from different cameras are batched
 * into one inference call (up to `maxBatch` inputs, waiting at most `maxWaitMs` for a batch to
 * fill), taken round-robin across cameras so that a busy camera cannot starve the others, and as
 * many calls run at once as the detector has sessions. A frame submitted with its moving regions
 * takes only their share of an input: the regions of several live cameras' frames are packed into
 * one input (a `Mosaic`); a replay's regions get an input of their own, so that its detections do
 * not depend on what other frames happened to share it. When inference is slower than the
 * cameras, a live camera's waiting frame is replaced by its newest one and the replaced frame is
 * counted as a drop — nothing queues without bound.
 */
export class DetectionScheduler {
  private lanes = new Map<string, Lane>();
  private order: string[] = [];
  private cursor = 0;
  /** inference calls in progress, at most the detector's concurrency */
  private running = 0;
  /** when a session last became free (ms, performance clock): a batch waits to fill from then */
  private freeSince = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private maxBatch: number;
  /** inference calls in progress, by the detector they run on */
  private readonly calls = new Map<FrameDetector, Set<Promise<unknown>>>();

  constructor(
    private detector: FrameDetector,
    private readonly options: SchedulerOptions,
    private readonly log: Logger,
  ) {
    this.maxBatch = Math.max(1, Math.min(options.maxBatch, detector.maxBatch));
  }

  /** the detector frames go to */
  get current(): FrameDetector {
    return this.detector;
  }

  /**
   * Sends the frames to `next` from the next inference call on: calls already running finish on
   * the previous detector, and the returned promise resolves with it once they have, so that it can
   * be closed. Frames waiting, and the cameras' frame sources, stay as they are, so `next` must
   * take frames of the same size and colour order.
   */
  async switchTo(next: FrameDetector): Promise<FrameDetector> {
    const a = this.input;
    const b = { width: next.inputWidth, height: next.inputHeight, format: next.descriptor.input.colorOrder };
    if (a.width !== b.width || a.height !== b.height || a.format !== b.format) {
      throw new ArgusError(
        `${next.descriptor.name} takes ${b.width}×${b.height} ${b.format} frames, the cameras deliver ${a.width}×${a.height} ${a.format}`,
        'a model with another input size or colour order needs the cameras restarted: restart the agent with it',
      );
    }
    const previous = this.detector;
    this.detector = next;
    this.maxBatch = Math.max(1, Math.min(this.options.maxBatch, next.maxBatch));
    this.schedule();
    await Promise.allSettled([...(this.calls.get(previous) ?? [])]);
    this.calls.delete(previous);
    return previous;
  }

  register(camera: string, mode: QueueMode): void {
    if (this.lanes.has(camera)) return;
    this.lanes.set(camera, { camera, mode, jobs: [], drops: 0, detected: 0 });
    this.order.push(camera);
  }

  unregister(camera: string): void {
    const lane = this.lanes.get(camera);
    if (!lane) return;
    for (const job of lane.jobs) job.resolve(null);
    this.lanes.delete(camera);
    this.order = this.order.filter((c) => c !== camera);
  }

  /** the frames the detector takes: its input size and colour order */
  get input(): BranchCaps {
    const d = this.detector;
    return { width: d.inputWidth, height: d.inputHeight, format: d.descriptor.input.colorOrder };
  }

  /**
   * frames of an ordered lane, submitted and not yet detected, at which its producer should wait:
   * a batch in every session and a whole next batch waiting, so no session waits for frames
   */
  get queueLimit(): number {
    return (this.detector.concurrency + 1) * this.maxBatch;
  }

  pending(camera: string): number {
    return this.lanes.get(camera)?.jobs.length ?? 0;
  }

  stats(camera: string): { drops: number; detected: number } {
    const lane = this.lanes.get(camera);
    return { drops: lane?.drops ?? 0, detected: lane?.detected ?? 0 };
  }

  /**
   * detections for the frame (only in `regions` when given), or null when a newer frame of the
   * same camera replaced it; `stamps`, when given, receives when its inference call started and ended
   */
  submit(
    camera: string,
    frame: ModelFrame,
    regions?: Rect[],
    stamps?: DetectionStamps,
  ): Promise<Detection[] | null> {
    const lane = this.lanes.get(camera);
    if (!lane || this.closed) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      if (lane.mode === 'newest' && lane.jobs.length > 0) {
        for (const old of lane.jobs.splice(0)) {
          lane.drops++;
          old.resolve(null);
        }
      }
      const { width, height } = this.input;
      lane.jobs.push({
        frame,
        regions,
        cost: regions && lane.mode === 'newest' ? areaOf(regions) / (width * height) : 1,
        height: regions ? Math.max(...regions.map((r) => r.height)) : Number.POSITIVE_INFINITY,
        submitted: performance.now(),
        stamps,
        resolve,
        reject,
      });
      this.schedule();
    });
  }

  /** the inputs the waiting frames fill */
  private waiting(): number {
    let n = 0;
    for (const lane of this.lanes.values()) for (const job of lane.jobs) n += job.cost;
    return n;
  }

  /**
   * how long the waiting frames have waited for a batch to fill: since the oldest was submitted or
   * a session became free, whichever is later
   */
  private fillingFor(): number {
    let oldest = Number.POSITIVE_INFINITY;
    for (const lane of this.lanes.values())
      if (lane.jobs[0]) oldest = Math.min(oldest, lane.jobs[0].submitted);
    return performance.now() - Math.max(oldest, this.freeSince);
  }

  private schedule(): void {
    if (this.running >= this.detector.concurrency || this.closed) return;
    const waiting = this.waiting();
    if (waiting === 0) return;
    const age = this.fillingFor();
    if (waiting >= this.maxBatch || age >= this.options.maxWaitMs) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      void this.runBatch();
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.schedule();
      }, this.options.maxWaitMs - age);
    }
  }

  /**
   * Fills up to `size` inputs with waiting frames. Candidates are taken one camera at a time in
   * turn, starting after the last served, while they would fill the inputs; whole frames then get
   * an input each and regions are packed tallest first (each at the lowest spot it fits, see
   * `Mosaic`). A frame that does not fit stays at the head of its camera's queue.
   */
  private take(size: number): Input[] {
    const picked: Entry[] = [];
    const depth = new Map<Lane, number>();
    let cost = 0;
    let idle = 0;
    while (idle < this.order.length && cost < size) {
      const camera = this.order[this.cursor % this.order.length]!;
      this.cursor = (this.cursor + 1) % Math.max(1, this.order.length);
      const lane = this.lanes.get(camera)!;
      const taken = depth.get(lane) ?? 0;
      const job = lane.jobs[taken];
      if (!job) {
        idle++;
        continue;
      }
      depth.set(lane, taken + 1);
      picked.push({ lane, job });
      cost += job.cost;
      idle = 0;
    }
    picked.sort((a, b) => b.job.height - a.job.height);
    const inputs: Input[] = [];
    const placed = new Set<Job>();
    for (const entry of picked) if (this.place(inputs, entry, size)) placed.add(entry.job);
    for (const lane of depth.keys()) lane.jobs = lane.jobs.filter((job) => !placed.has(job));
    return inputs;
  }

  /** adds the frame to the inputs: its regions into a shared mosaic with room, else a new input */
  private place(inputs: Input[], entry: Entry, size: number): boolean {
    const { job, lane } = entry;
    const regions = job.regions;
    if (!regions) {
      if (inputs.length >= size) return false;
      inputs.push({ entry });
      return true;
    }
    const shared = lane.mode === 'newest';
    if (shared) {
      for (const input of inputs)
        if ('mosaic' in input && input.shared && input.mosaic.tryPlace(entry, job.frame, regions))
          return true;
    }
    if (inputs.length >= size) return false;
    const mosaic = new Mosaic<Entry>(
      this.input.width,
      this.input.height,
      this.detector.descriptor.input.sizeStep,
    );
    // regions that do not fit one input together (rare: many large ones) go as the whole frame
    inputs.push(mosaic.tryPlace(entry, job.frame, regions) ? { mosaic, shared } : { entry });
    return true;
  }

  private async runBatch(): Promise<void> {
    // the waiting frames are shared among the sessions free now, so that a burst (cameras fed by
    // one clock deliver frames at the same moment) does not queue on one session while another idles
    const free = this.detector.concurrency - this.running;
    this.running++;
    const inputs = this.take(Math.min(this.maxBatch, Math.ceil(this.waiting() / free)));
    // another session may take the next batch at once
    this.schedule();
    const entries = inputs.flatMap((input) => ('entry' in input ? [input.entry] : input.mosaic.members));
    const detector = this.detector;
    const calls = this.calls.get(detector) ?? new Set();
    this.calls.set(detector, calls);
    let call: Promise<Detection[][]> | undefined;
    try {
      if (inputs.length > 0) {
        const startedAt = performance.now();
        for (const entry of entries) if (entry.job.stamps) entry.job.stamps.startedAt = startedAt;
        call = detector.detect(
          inputs.map((input) => ('entry' in input ? input.entry.job.frame : input.mosaic.frame())),
        );
        calls.add(call);
        const results = await call;
        const inferredAt = performance.now();
        for (const entry of entries) if (entry.job.stamps) entry.job.stamps.inferredAt = inferredAt;
        inputs.forEach((input, i) => {
          const found =
            'entry' in input ? [[input.entry, results[i]!] as const] : input.mosaic.distribute(results[i]!);
          for (const [entry, detections] of found) {
            entry.lane.detected++;
            entry.job.resolve(detections);
          }
        });
      }
    } catch (err) {
      this.log.error({ err }, 'inference failed');
      for (const entry of entries) entry.job.reject(err);
    } finally {
      if (call) calls.delete(call);
      this.running--;
      this.freeSince = performance.now();
      this.schedule();
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const lane of this.lanes.values()) for (const job of lane.jobs.splice(0)) job.resolve(null);
  }
}
