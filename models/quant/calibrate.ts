import ort from 'onnxruntime-node';
import { ArgusError } from '../../common/errors.ts';
import { encodeModel } from '../onnx/codec.ts';
import type { Model } from '../onnx/ir.ts';
import type { Range } from './qparams.ts';

/**
 * Activation ranges from real frames: the float graph is run with every tensor to calibrate exposed
 * as an extra graph output, and each tensor's values are summarised per tensor over all frames.
 * `minmax` keeps the extremes; `percentile` clips both tails at the given percentile of the value
 * distribution (a histogram over the min/max range, so a second pass over the frames), which keeps
 * a few outliers from stretching the scale of every other value.
 */

export type CalibrationMethod = 'minmax' | 'percentile';

export interface CalibrationOptions {
  method: CalibrationMethod;
  /** for `percentile`: the share of values (in %) kept inside the range, e.g. 99.99 */
  percentile: number;
  /** graph input name and the shape of one frame's tensor (batch 1) */
  input: { name: string; dims: number[] };
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

const HISTOGRAM_BINS = 2048;

function exposeTensors(model: Model, tensors: readonly string[]): Uint8Array {
  const existing = new Set(model.graph.outputs.map((o) => o.name));
  const extra = tensors
    .filter((t) => !existing.has(t))
    .map((name) => ({ name, type: 'float32' as const, shape: undefined }));
  return encodeModel({ ...model, graph: { ...model.graph, outputs: [...model.graph.outputs, ...extra] } });
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw signal.reason instanceof Error ? signal.reason : new ArgusError('calibration interrupted');
  }
}

/** runs the exposed graph once per frame and hands each calibrated tensor's values to `visit` */
async function forEachActivation(
  session: ort.InferenceSession,
  frames: readonly Uint8Array[],
  tensors: readonly string[],
  options: CalibrationOptions,
  pass: { done: number; total: number },
  visit: (tensor: string, values: Float32Array) => void,
): Promise<void> {
  for (const frame of frames) {
    checkAborted(options.signal);
    const feeds = { [options.input.name]: new ort.Tensor('uint8', frame, options.input.dims) };
    const out = await session.run(feeds, [...tensors]);
    for (const name of tensors) {
      const value = out[name];
      if (value?.type !== 'float32') {
        throw new ArgusError(`tensor "${name}" chosen for calibration is not a float32 activation`);
      }
      visit(name, value.data as Float32Array);
    }
    pass.done++;
    options.onProgress?.(pass.done, pass.total);
  }
}

function percentileRange(histogram: Float64Array, range: Range, percentile: number): Range {
  const total = histogram.reduce((a, b) => a + b, 0);
  const tail = (total * (100 - percentile)) / 100;
  const width = (range.max - range.min) / HISTOGRAM_BINS;
  let lowBin = 0;
  for (let seen = 0; lowBin < HISTOGRAM_BINS - 1; lowBin++) {
    seen += histogram[lowBin]!;
    if (seen > tail) break;
  }
  let highBin = HISTOGRAM_BINS - 1;
  for (let seen = 0; highBin > 0; highBin--) {
    seen += histogram[highBin]!;
    if (seen > tail) break;
  }
  return { min: range.min + lowBin * width, max: range.min + (highBin + 1) * width };
}

/** the calibrated range of every tensor in `tensors` over `frames` (uint8 frames at the model input size) */
export async function calibrateRanges(
  model: Model,
  tensors: readonly string[],
  frames: readonly Uint8Array[],
  options: CalibrationOptions,
): Promise<Map<string, Range>> {
  if (frames.length === 0) throw new ArgusError('calibration needs at least one frame');
  const session = await ort.InferenceSession.create(exposeTensors(model, tensors), {
    graphOptimizationLevel: 'basic',
  });
  try {
    const passes = options.method === 'percentile' ? 2 : 1;
    const progress = { done: 0, total: passes * frames.length };
    const ranges = new Map<string, Range>(
      tensors.map((t) => [t, { min: Number.POSITIVE_INFINITY, max: Number.NEGATIVE_INFINITY }]),
    );
    await forEachActivation(session, frames, tensors, options, progress, (name, values) => {
      const r = ranges.get(name)!;
      for (let i = 0; i < values.length; i++) {
        const v = values[i]!;
        if (v < r.min) r.min = v;
        if (v > r.max) r.max = v;
      }
    });
    if (options.method === 'minmax') return ranges;

    const histograms = new Map(tensors.map((t) => [t, new Float64Array(HISTOGRAM_BINS)]));
    await forEachActivation(session, frames, tensors, options, progress, (name, values) => {
      const r = ranges.get(name)!;
      const h = histograms.get(name)!;
      const perBin = HISTOGRAM_BINS / Math.max(r.max - r.min, Number.MIN_VALUE);
      for (let i = 0; i < values.length; i++) {
        const bin = Math.min(HISTOGRAM_BINS - 1, Math.floor((values[i]! - r.min) * perBin));
        h[bin]!++;
      }
    });
    return new Map(
      tensors.map((t) => [t, percentileRange(histograms.get(t)!, ranges.get(t)!, options.percentile)]),
    );
  } finally {
    await session.release();
  }
}
