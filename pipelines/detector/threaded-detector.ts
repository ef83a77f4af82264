import { Worker } from 'node:worker_threads';
import { ArgusError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import type { ModelDescriptor } from '../../models/descriptor.ts';
import type { Detection, FrameDetector, ModelFrame } from './detector.ts';
import type { DetectorSettings } from './settings.ts';
import type { DetectReply, DetectRequest, ThreadReady } from './thread-protocol.ts';

/** a thread that does not end by itself after close is terminated */
const CLOSE_TIMEOUT_MS = 5000;

interface Pending {
  resolve: (d: Detection[][]) => void;
  reject: (err: Error) => void;
  /** settles with the request */
  done: Promise<unknown>;
}

/**
 * A Detector on its own worker thread. ONNX Runtime's Node binding runs a session synchronously on
 * the thread that calls it, so inference on the main thread would stall everything else for the
 * length of each call: frame pulls, tracking, snapshots, MQTT keep-alives, HTTP. Here the main
 * thread packs the frames into one transferred buffer and gets the decoded detections back.
 */
export class ThreadedDetector implements FrameDetector {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly descriptor: ModelDescriptor,
    readonly provider: string,
    readonly maxBatch: number,
  ) {
    worker.on('message', (reply: DetectReply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if ('error' in reply) p.reject(new ArgusError(`detection failed: ${reply.error}`));
      else p.resolve(reply.detections);
    });
    worker.on('error', (err) => this.fail(new ArgusError(`detector thread failed: ${err.message}`)));
    worker.on('exit', (code) => {
      if (!this.closing) this.fail(new ArgusError(`detector thread exited with code ${code}`));
    });
  }

  static async load(settings: DetectorSettings, log: Logger): Promise<ThreadedDetector> {
    const worker = new Worker(new URL('./detector-thread.mjs', import.meta.url), { workerData: settings });
    const ready = await new Promise<ThreadReady>((resolve, reject) => {
      const onExit = (code: number) => reject(new ArgusError(`detector thread exited with code ${code}`));
      worker.once('error', reject);
      worker.once('exit', onExit);
      worker.once('message', (m: ThreadReady) => {
        // only our own listeners: the Worker's internal ones start and stop its message port
        worker.off('error', reject);
        worker.off('exit', onExit);
        resolve(m);
      });
    });
    if (!ready.ready) {
      await worker.terminate();
      throw new ArgusError(ready.error);
    }
    log.info({ model: ready.descriptor.name, provider: ready.provider }, 'detector thread ready');
    return new ThreadedDetector(worker, ready.descriptor, ready.provider, ready.maxBatch);
  }

  get inputWidth(): number {
    return this.descriptor.input.width;
  }

  get inputHeight(): number {
    return this.descriptor.input.height;
  }

  detect(frames: readonly ModelFrame[]): Promise<Detection[][]> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new ArgusError('detector closed'));
    const size = this.inputWidth * this.inputHeight * 3;
    const packed = new Uint8Array(frames.length * size);
    for (const [i, f] of frames.entries()) {
      if (f.pixels.length !== size)
        return Promise.reject(
          new ArgusError(`frame of ${f.pixels.length} bytes does not match the model input (${size} bytes)`),
        );
      packed.set(f.pixels, i * size);
    }
    const id = this.nextId++;
    const request: DetectRequest = {
      id,
      pixels: packed.buffer,
      sizes: frames.map((f) => [f.sourceWidth, f.sourceHeight]),
    };
    let pending: Omit<Pending, 'done'> | undefined;
    const result = new Promise<Detection[][]>((resolve, reject) => {
      pending = { resolve, reject };
    });
    this.pending.set(id, { ...pending!, done: result.catch(() => {}) });
    this.worker.postMessage(request, [packed.buffer]);
    return result;
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /** waits for detections in flight, then releases the session and ends the thread */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.pending.values()].map((p) => p.done));
      const exited = new Promise<void>((r) => this.worker.once('exit', () => r()));
      this.worker.postMessage('close');
      const timer = setTimeout(() => void this.worker.terminate(), CLOSE_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    })();
    return this.closing;
  }
}
