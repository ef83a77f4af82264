/**
 * Quantization arithmetic: real value ≈ scale × (q − zeroPoint). Activations get one (scale, zero
 * point) per tensor from their calibrated range; Conv weights get one symmetric int8 scale per
 * output channel; a Conv bias becomes int32 at scale = input scale × weight scale of its channel,
 * which is what integer convolution kernels add to their int32 accumulators.
 */

export type ActivationType = 'uint8' | 'int8';

export interface Range {
  min: number;
  max: number;
}

export interface QuantParams {
  type: ActivationType;
  scale: number;
  zeroPoint: number;
}

/**
 * Per-tensor parameters for an activation range. uint8 is asymmetric (the zero point places the
 * range); int8 is symmetric around 0. The range always includes 0 so that 0 (padding, ReLU floor)
 * is represented exactly.
 */
export function activationParams(range: Range, type: ActivationType): QuantParams {
  const lo = Math.min(0, range.min);
  const hi = Math.max(0, range.max);
  if (type === 'int8') {
    const absMax = Math.max(-lo, hi);
    return { type, scale: absMax > 0 ? absMax / 127 : 1, zeroPoint: 0 };
  }
  if (hi - lo <= 0) return { type, scale: 1, zeroPoint: 0 };
  const scale = (hi - lo) / 255;
  const zeroPoint = Math.min(255, Math.max(0, Math.round(-lo / scale)));
  return { type, scale, zeroPoint };
}

export interface ChannelQuantized {
  values: Int8Array;
  scales: Float32Array;
}

/** the largest int32 bias the quantizer writes: half the type's range, which leaves room for float32 rounding of scales */
const BIAS_LIMIT = 2 ** 30;

/**
 * The smallest weight scale of each of `channels` slices at which every bias of the slice still
 * fits int32 (within BIAS_LIMIT) at scale inputScale × weightScale: a channel with tiny weights and
 * a large bias would otherwise overflow the accumulator's range.
 */
export function biasFittingScales(bias: Float32Array, inputScale: number, channels: number): Float32Array {
  const floors = new Float32Array(channels);
  for (let c = 0; c < bias.length; c++) {
    const slot = channels === 1 ? 0 : c;
    floors[slot] = Math.max(floors[slot]!, Math.abs(bias[c]!) / (inputScale * BIAS_LIMIT));
  }
  return floors;
}

/**
 * Symmetric int8 quantization of a weight tensor with one scale per slice along axis 0 (the output
 * channels of a Conv; `channels` = 1 gives one scale for the whole tensor); values use [−127, 127]
 * so that negation is exact. `minScales` (see biasFittingScales) raises a slice's scale where needed.
 */
export function quantizeWeightsPerChannel(
  weights: Float32Array,
  channels: number,
  minScales?: Float32Array,
): ChannelQuantized {
  const per = weights.length / channels;
  const values = new Int8Array(weights.length);
  const scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) {
    let absMax = 0;
    for (let i = c * per; i < (c + 1) * per; i++) absMax = Math.max(absMax, Math.abs(weights[i]!));
    const scale = Math.max(absMax > 0 ? absMax / 127 : 1, minScales?.[c] ?? 0);
    scales[c] = scale;
    for (let i = c * per; i < (c + 1) * per; i++) {
      values[i] = Math.min(127, Math.max(-127, Math.round(weights[i]! / scale)));
    }
  }
  return { values, scales };
}

/** int32 bias at scale inputScale × weightScale[c], zero point 0 */
export function quantizeBias(
  bias: Float32Array,
  inputScale: number,
  weightScales: Float32Array,
): { values: Int32Array; scales: Float32Array } {
  const values = new Int32Array(bias.length);
  const scales = new Float32Array(bias.length);
  for (let c = 0; c < bias.length; c++) {
    const scale = inputScale * weightScales[weightScales.length === 1 ? 0 : c]!;
    scales[c] = scale;
    values[c] = Math.round(bias[c]! / scale);
  }
  return { values, scales };
}
