import ort from 'onnxruntime-node';
import { ArgusError } from '../common/errors.ts';
import { createLogger, type Logger } from '../common/logger.ts';
import { decode, decoderOutputs, type FrameOutputs } from './decoders.ts';
import type { ModelDescriptor } from './descriptor.ts';
import { type LoadedModel, loadModel } from './model-dir.ts';
import {
  framesInOneBuffer,
  type InputSize,
  inputBytes,
  inputSizeOf,
  type ModelFrame,
  modelInputSize,
} from './model-frame.ts';
import { nonMaxSuppression } from './nms.ts';
import type { Box } from './rect.ts';
import { type OpenedSession, openSession } from './session.ts';
import type { DetectorSettings } from './settings.ts';

/** an object found in a frame; `box` is [x1, y1, x2, y2] in source-frame pixels */
export interface Detection {
  label: string;
  classId: number;
  score: number;
  box: Box;
}

/** the input tensor for `n` packed HWC uint8 frames, normalised in JS only if the graph does not do it */
function inputTensor(d: ModelDescriptor, pixels: Uint8Array, n: number, size: InputSize): ort.Tensor {
  const { input } = d;
  const [h, w] = [size.height, size.width];
  const dims = input.layout === 'NHWC' ? [n, h, w, 3] : [n, 3, h, w];
  if (input.dtype === 'uint8') {
    if (input.layout !== 'NHWC')
      throw new ArgusError('uint8 model inputs must be NHWC (as GStreamer delivers frames)');
    return new ort.Tensor('uint8', pixels, dims);
  }
  const runtime = input.normalization.appliedIn === 'runtime';
  const mean = runtime ? input.normalization.mean : [0, 0, 0];
  const std = runtime ? input.normalization.std : [1, 1, 1];
  const out = new Float32Array(pixels.length);
  const plane = h * w;
  for (let f = 0; f < n; f++) {
    const base = f * plane * 3;
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) {
        const v = (pixels[base + i * 3 + c]! - mean[c]!) / std[c]!;
        out[input.layout === 'NHWC' ? base + i * 3 + c : base + c * plane + i] = v;
      }
    }
  }
  return new ort.Tensor('float32', out, dims);
}

/**
 * What the pipeline needs of a detector: the model's input contract and batched detection.
 * `Detector` runs on the calling thread; `ThreadedDetector` runs one on a worker thread.
 */
export interface FrameDetector {
  readonly descriptor: ModelDescriptor;
  /** the execution provider the session runs on */
  readonly provider: string;
  readonly inputWidth: number;
  readonly inputHeight: number;
  /** frames per inference call */
  readonly maxBatch: number;
  /** inference calls it runs at once */
  readonly concurrency: number;
  /** detects objects in each frame; boxes come back in each frame's source pixels */
  detect(frames: readonly ModelFrame[]): Promise<Detection[][]>;
  close(): Promise<void>;
}

/**
 * Runs a detection model described by its descriptor: batches frames into one inference call when
 * the graph allows it, decodes the heads and applies class-aware NMS. Pipeline code never sees
 * model-specific constants; all of them come from the descriptor.
 */
export class Detector implements FrameDetector {
  private constructor(
    readonly descriptor: ModelDescriptor,
    private readonly opened: OpenedSession,
    private readonly settings: DetectorSettings,
    private readonly outputs: string[],
  ) {}

  static async load(settings: DetectorSettings, log: Logger = createLogger('detector')): Promise<Detector> {
    return Detector.fromModel(await loadModel(settings.model), settings, log);
  }

  static async fromModel(
    model: LoadedModel,
    settings: DetectorSettings,
    log: Logger = createLogger('detector'),
  ): Promise<Detector> {
    const d = model.descriptor;
    const outputs = decoderOutputs(d);
    const opened = await openSession(
      model.bytes,
      settings,
      async (session) => {
        const missing = [d.input.name, ...outputs].filter(
          (n) => !session.inputNames.includes(n) && !session.outputNames.includes(n),
        );
        if (missing.length > 0) {
          throw new ArgusError(
            `model ${model.onnxPath} does not match its descriptor: no tensor named ${missing.map((m) => `"${m}"`).join(', ')}`,
          );
        }
        const n = d.input.batch === 'dynamic' ? 1 : d.input.batch;
        const size = modelInputSize(d);
        await session.run(
          { [d.input.name]: inputTensor(d, new Uint8Array(n * inputBytes(size)), n, size) },
          outputs,
        );
      },
      log.child({ model: d.name }),
    );
    return new Detector(d, opened, settings, outputs);
  }

  get provider(): string {
    return this.opened.provider;
  }

  get inputWidth(): number {
    return this.descriptor.input.width;
  }

  get inputHeight(): number {
    return this.descriptor.input.height;
  }

  /** one call at a time: a session runs synchronously on the calling thread */
  readonly concurrency = 1;

  /** frames per inference call: the configured maximum, or the graph's fixed batch */
  get maxBatch(): number {
    const b = this.descriptor.input.batch;
    return b === 'dynamic' ? this.settings.maxBatch : b;
  }

  /**
   * One inference call on `n` frames of `size` (default: the model's input size) packed back to
   * back (n × H × W × 3 bytes). Returns each frame's view of every output the decoder reads.
   * Exposed for raw-throughput benchmarks.
   */
  async runBatch(
    pixels: Uint8Array,
    n: number,
    size: InputSize = modelInputSize(this.descriptor),
  ): Promise<FrameOutputs[]> {
    const fixed = this.descriptor.input.batch;
    if (fixed !== 'dynamic' && n !== fixed) {
      const bytes = inputBytes(size);
      const parts: FrameOutputs[] = [];
      for (let i = 0; i < n; i += fixed)
        parts.push(...(await this.runBatch(pixels.subarray(i * bytes, (i + fixed) * bytes), fixed, size)));
      return parts;
    }
    const result = await this.opened.session.run(
      { [this.descriptor.input.name]: inputTensor(this.descriptor, pixels, n, size) },
      this.outputs,
    );
    const frames: FrameOutputs[] = Array.from({ length: n }, () => ({}));
    for (const name of this.outputs) {
      const data = result[name]!.data as Float32Array;
      const per = data.length / n;
      for (let f = 0; f < n; f++) frames[f]![name] = data.subarray(f * per, (f + 1) * per);
    }
    return frames;
  }

  /**
   * detects objects in each frame; boxes come back in each frame's source pixels. Frames of one
   * size share inference calls (a call takes one shape), at most `maxBatch` at a time.
   */
  async detect(frames: readonly ModelFrame[]): Promise<Detection[][]> {
    const bySize = new Map<string, { size: InputSize; frames: number[] }>();
    frames.forEach((frame, i) => {
      const size = inputSizeOf(this.descriptor, frame);
      const key = `${size.width}x${size.height}`;
      const group = bySize.get(key) ?? { size, frames: [] };
      group.frames.push(i);
      bySize.set(key, group);
    });
    const results: Detection[][] = new Array(frames.length);
    for (const { size, frames: indices } of bySize.values()) {
      for (let start = 0; start < indices.length; start += this.maxBatch) {
        const chunk = indices.slice(start, start + this.maxBatch).map((i) => frames[i]!);
        const packed = framesInOneBuffer(chunk);
        const outputs = await this.runBatch(packed, chunk.length, size);
        chunk.forEach((frame, k) => {
          results[indices[start + k]!] = this.postprocess(outputs[k]!, frame, size);
        });
      }
    }
    return results;
  }

  private postprocess(outputs: FrameOutputs, frame: ModelFrame, size: InputSize): Detection[] {
    const d = this.descriptor;
    const raw = decode(d, outputs, {
      scoreThreshold: this.settings.scoreThreshold ?? d.thresholds.score,
      inputWidth: size.width,
      inputHeight: size.height,
      numClasses: d.labels.length,
    });
    const kept = nonMaxSuppression(
      raw,
      this.settings.iouThreshold ?? d.thresholds.iou,
      this.settings.maxDetections ?? d.thresholds.maxDetections,
    );
    const sx = frame.sourceWidth / size.width;
    const sy = frame.sourceHeight / size.height;
    return kept.map((k) => ({
      label: d.labels[k.classId] ?? `class${k.classId}`,
      classId: k.classId,
      score: k.score,
      box: [k.box[0] * sx, k.box[1] * sy, k.box[2] * sx, k.box[3] * sy],
    }));
  }

  async close(): Promise<void> {
    await this.opened.session.release();
  }
}
