import { isDeepStrictEqual } from 'node:util';
import type { Worker } from 'node:worker_threads';
import { ArgusError, errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { startThread } from '../common/thread.ts';
import type { ModelDescriptor } from './descriptor.ts';
import type { Detection, FrameDetector } from './detector.ts';
import { framesBytes, inputSizeOf, type ModelFrame, packFrames } from './model-frame.ts';
import type { DetectorSettings } from './settings.ts';
import type { DetectReply, DetectRequest, PackedFrame, ThreadInfo, ThreadReady } from './thread-protocol.ts';

/**
 * A thread that does not end by itself after close is terminated. Only then: terminating a thread
 * inside an ONNX Runtime call (loading a model or running it) aborts the whole process, as the
 * binding throws a C++ exception when the call returns into a JS engine that is being torn down.
 */
const CLOSE_TIMEOUT_MS = 5000;

/** request buffers a thread's owner keeps for reuse: one per call in flight and the next one */
const SPARE_BUFFERS = 3;

/**
 * How a crashed detector thread is started again: the wait before each attempt doubles from
 * `firstDelayMs` up to `maxDelayMs`, and starts over once a thread has run `healthyAfterMs`.
 */
export interface RestartPolicy {
  firstDelayMs: number;
  maxDelayMs: number;
  healthyAfterMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  firstDelayMs: 500,
  maxDelayMs: 30_000,
  healthyAfterMs: 60_000,
};

/** the waits between attempts to start a crashed thread again (times in ms, any monotonic clock) */
export class RestartBackoff {
  private nextMs: number;
  private upSince: number | undefined;

  constructor(private readonly policy: RestartPolicy) {
    this.nextMs = policy.firstDelayMs;
  }

  /** a thread is running since `now` */
  up(now: number): void {
    this.upSince = now;
  }

  /** the wait before the next attempt, after a crash or a failed attempt at `now` */
  delay(now: number): number {
    if (this.upSince !== undefined && now - this.upSince >= this.policy.healthyAfterMs)
      this.nextMs = this.policy.firstDelayMs;
    this.upSince = undefined;
    const delay = this.nextMs;
    this.nextMs = Math.min(this.policy.maxDelayMs, delay * 2);
    return delay;
  }
}

interface Pending {
  resolve: (d: Detection[][]) => void;
  reject: (err: Error) => void;
  result: Promise<Detection[][]>;
}

/** one worker thread running a Detector; once it has exited it stays so */
class DetectorThread {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /**
   * request buffers the thread gave back, taken again by requests of their size: a new buffer per
   * inference call was allocated zeroed, filled, and freed on the other thread (calloc's zeroing
   * and fresh pages for ~2 MB per call of four 416×416 frames)
   */
  private readonly spare: ArrayBuffer[] = [];
  /** set when the thread has exited */
  private ended: ArgusError | undefined;
  /** what the thread loaded; rejects, once the thread has exited, when it loaded nothing */
  readonly ready: Promise<ThreadInfo>;
  /** resolves with why the thread ended */
  readonly exited: Promise<string>;

  constructor(settings: DetectorSettings) {
    const worker = startThread(new URL('./detector-thread.ts', import.meta.url), settings);
    this.worker = worker;
    let uncaught: Error | undefined;
    let refused: ArgusError | undefined;
    let loaded!: (info: ThreadInfo) => void;
    let notLoaded!: (err: Error) => void;
    this.ready = new Promise((resolve, reject) => {
      loaded = resolve;
      notLoaded = reject;
    });
    worker.on('message', (m: ThreadReady | DetectReply) => {
      if ('ready' in m) {
        if (m.ready) {
          const { ready: _, ...info } = m;
          loaded(info);
        } else {
          refused = new ArgusError(m.error);
          void worker.terminate();
        }
        return;
      }
      if (this.spare.length < SPARE_BUFFERS) this.spare.push(m.pixels);
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if ('error' in m) p.reject(new ArgusError(`detection failed: ${m.error}`));
      else p.resolve(m.detections);
    });
    worker.on('error', (err) => {
      uncaught = err;
    });
    this.exited = new Promise((resolve) => {
      worker.on('exit', (code) => {
        const cause = uncaught?.message ?? `exited with code ${code}`;
        notLoaded(refused ?? uncaught ?? new ArgusError(`detector thread ${cause}`));
        const ended = new ArgusError(`detector thread crashed: ${cause}`);
        this.ended = ended;
        for (const p of this.pending.values()) p.reject(ended);
        this.pending.clear();
        resolve(cause);
      });
    });
  }

  /** `shapes`: the frames' sizes as the request gives them */
  detect(frames: readonly ModelFrame[], shapes: PackedFrame[]): Promise<Detection[][]> {
    // a call made while the owner has yet to hear of the exit (from a rejection of the requests in flight)
    if (this.ended) return Promise.reject(this.ended);
    const pixels = this.transferable(frames);
    const request: DetectRequest = { id: this.nextId++, pixels, frames: shapes };
    let settle!: Omit<Pending, 'result'>;
    const result = new Promise<Detection[][]>((resolve, reject) => {
      settle = { resolve, reject };
    });
    this.pending.set(request.id, { ...settle, result });
    this.worker.postMessage(request, [pixels]);
    return result;
  }

  /**
   * the frames' pixels back to back in a buffer the thread may take: a frame handed over whole is
   * sent as it is, anything else is copied into a spare buffer of its size or a new one (the caller
   * keeps its frames)
   */
  private transferable(frames: readonly ModelFrame[]): ArrayBuffer {
    const only = frames.length === 1 ? frames[0]! : undefined;
    const pixels = only?.pixels;
    if (
      only?.handedOver &&
      pixels &&
      pixels.byteOffset === 0 &&
      pixels.byteLength === pixels.buffer.byteLength
    )
      return pixels.buffer as ArrayBuffer;
    const bytes = framesBytes(frames);
    const i = this.spare.findIndex((b) => b.byteLength === bytes);
    const buffer = i >= 0 ? this.spare.splice(i, 1)[0]! : new ArrayBuffer(bytes);
    packFrames(frames, new Uint8Array(buffer));
    return buffer;
  }

  /**
   * Waits for detections in flight, then releases the session and ends the thread. A thread still
   * loading its model takes the request once it has loaded (or ends by itself when it fails to).
   */
  async close(): Promise<void> {
    await Promise.allSettled([...this.pending.values()].map((p) => p.result));
    this.worker.postMessage('close');
    const timer = setTimeout(() => void this.worker.terminate(), CLOSE_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }
}

/** the time since a thread crashed until one runs again */
interface Outage {
  crash: string;
  /** why the last attempt to start a thread failed */
  lastFailure?: string;
  /** the wait before the next attempt */
  timer?: NodeJS.Timeout;
  /** the thread of the latest attempt */
  starting?: DetectorThread;
}

/**
 * A Detector on its own worker thread. ONNX Runtime's Node binding runs a session synchronously on
 * the thread that calls it, so inference on the main thread would stall everything else for the
 * length of each call: frame pulls, tracking, snapshots, MQTT keep-alives, HTTP. Here the main
 * thread packs the frames into one transferred buffer and gets the decoded detections back.
 *
 * When the thread dies, the detections in flight fail naming the crash and a new thread is started
 * after a backoff (`RestartPolicy`). Calls in the meantime fail at once rather than wait: the
 * scheduler then goes on with each camera's newest frame instead of holding frames that would be
 * seconds old by the time a thread is back.
 */
export class ThreadedDetector implements FrameDetector {
  private thread: DetectorThread | undefined;
  private outage: Outage | undefined;
  private closing: Promise<void> | undefined;
  private restartCount = 0;
  private readonly backoff: RestartBackoff;

  private constructor(
    private readonly settings: DetectorSettings,
    private readonly log: Logger,
    policy: RestartPolicy,
    thread: DetectorThread,
    private info: ThreadInfo,
  ) {
    this.backoff = new RestartBackoff(policy);
    this.run(thread);
  }

  static async load(
    settings: DetectorSettings,
    log: Logger,
    restart: RestartPolicy = DEFAULT_RESTART_POLICY,
  ): Promise<ThreadedDetector> {
    const thread = new DetectorThread(settings);
    const info = await thread.ready;
    log.info(
      { model: info.descriptor.name, provider: info.provider, nice: info.nice },
      'detector thread ready',
    );
    return new ThreadedDetector(settings, log, restart, thread, info);
  }

  get descriptor(): ModelDescriptor {
    return this.info.descriptor;
  }

  get provider(): string {
    return this.info.provider;
  }

  get maxBatch(): number {
    return this.info.maxBatch;
  }

  /** the scheduling priority (nice) the thread runs at */
  get nice(): number {
    return this.info.nice;
  }

  /** the thread answers one call after the other */
  readonly concurrency = 1;

  get inputWidth(): number {
    return this.descriptor.input.width;
  }

  get inputHeight(): number {
    return this.descriptor.input.height;
  }

  /** times a thread came back after a crash */
  get restarts(): number {
    return this.restartCount;
  }

  detect(frames: readonly ModelFrame[]): Promise<Detection[][]> {
    if (this.closing) return Promise.reject(new ArgusError('detector closed'));
    if (!this.thread) return Promise.reject(this.outageError());
    let shapes: PackedFrame[];
    try {
      shapes = frames.map((f) => ({
        size: inputSizeOf(this.descriptor, f),
        sourceWidth: f.sourceWidth,
        sourceHeight: f.sourceHeight,
      }));
    } catch (err) {
      return Promise.reject(err);
    }
    return this.thread.detect(frames, shapes);
  }

  private outageError(): ArgusError {
    const { crash, lastFailure } = this.outage!;
    const last = lastFailure ? `; the last attempt failed: ${lastFailure}` : '';
    return new ArgusError(`detector thread crashed (${crash}) and is being restarted${last}`);
  }

  private run(thread: DetectorThread): void {
    this.thread = thread;
    this.backoff.up(performance.now());
    void thread.exited.then((cause) => this.crashed(cause));
  }

  private crashed(cause: string): void {
    if (this.closing) return;
    this.thread = undefined;
    this.log.error({ cause }, 'detector thread crashed');
    this.outage = { crash: cause };
    this.retry(this.outage);
  }

  private retry(outage: Outage): void {
    const delayMs = this.backoff.delay(performance.now());
    this.log.warn({ delayMs }, 'restarting the detector thread');
    outage.timer = setTimeout(() => void this.restart(outage), delayMs);
  }

  private async restart(outage: Outage): Promise<void> {
    const thread = new DetectorThread(this.settings);
    outage.starting = thread;
    let info: ThreadInfo;
    try {
      info = await thread.ready;
      if (!isDeepStrictEqual(info.descriptor, this.descriptor) || info.maxBatch !== this.maxBatch) {
        await thread.close();
        throw new ArgusError(
          `the restarted detector thread loaded a different model than the cameras were set up for (${info.descriptor.name} version ${info.descriptor.version}, batch ${info.maxBatch})`,
          'restart the pipeline to use the new model',
        );
      }
    } catch (err) {
      if (this.closing) return;
      outage.lastFailure = errorMessage(err);
      this.log.error({ err: outage.lastFailure }, 'detector thread did not start again');
      this.retry(outage);
      return;
    }
    // close() ends the thread of the latest attempt
    if (this.closing) return;
    this.outage = undefined;
    this.info = info;
    this.restartCount++;
    this.run(thread);
    this.log.info({ restarts: this.restartCount, provider: info.provider }, 'detector thread restarted');
  }

  /** waits for detections in flight, then releases the session and ends the thread */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearTimeout(this.outage?.timer);
      await this.outage?.starting?.close();
      await this.thread?.close();
    })();
    return this.closing;
  }
}
