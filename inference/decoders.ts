import type { GflDecoderSpec, InGraphDecoderSpec, ModelDescriptor } from './descriptor.ts';
import type { RawDetection } from './nms.ts';

/** one frame's slice of each named model output */
export type FrameOutputs = Record<string, Float32Array>;

export interface DecodeParams {
  scoreThreshold: number;
  inputWidth: number;
  inputHeight: number;
  numClasses: number;
}

/** the expected distance (in bins) of one box side's distribution over `bins` bins starting at `off` */
function expectedBin(boxes: Float32Array, off: number, bins: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let b = 0; b < bins; b++) max = Math.max(max, boxes[off + b]!);
  let sum = 0;
  let weighted = 0;
  for (let b = 0; b < bins; b++) {
    const e = Math.exp(boxes[off + b]! - max);
    sum += e;
    weighted += b * e;
  }
  return weighted / sum;
}

/**
 * whether any of `values[from..to)` is at least `threshold`. Four values per test, as almost every
 * cell of a head has no class near it: this scan is most of a frame's decoding (0.17 against
 * 0.5 ms per NanoDet frame for a running maximum)
 */
function anyAtLeast(values: Float32Array, from: number, to: number, threshold: number): boolean {
  let i = from;
  for (; i + 4 <= to; i += 4)
    if (
      values[i]! >= threshold ||
      values[i + 1]! >= threshold ||
      values[i + 2]! >= threshold ||
      values[i + 3]! >= threshold
    )
      return true;
  for (; i < to; i++) if (values[i]! >= threshold) return true;
  return false;
}

/**
 * Generalized Focal Loss head (NanoDet): for every cell of every stride, class scores and for each
 * box side a distribution over regMax+1 bins; the side's distance is the distribution's expectation
 * times the stride, measured from the cell centre. Most cells hold no object: a cell is skipped
 * unless one of its raw scores reaches the threshold, taken in the graph's own terms (as a logit
 * when the graph leaves scores unactivated; the sigmoid keeps the order).
 */
function decodeGfl(spec: GflDecoderSpec, out: FrameOutputs, p: DecodeParams): RawDetection[] {
  const bins = spec.regMax + 1;
  const classes = p.numClasses;
  const result: RawDetection[] = [];
  const threshold = spec.scoresActivated
    ? p.scoreThreshold
    : Math.log(p.scoreThreshold / (1 - p.scoreThreshold));
  const activated = (s: number) => (spec.scoresActivated ? s : 1 / (1 + Math.exp(-s)));
  for (const [level, stride] of spec.strides.entries()) {
    const scores = out[spec.scoreOutputs[level]!]!;
    const boxes = out[spec.boxOutputs[level]!]!;
    const cols = Math.ceil(p.inputWidth / stride);
    const cells = scores.length / classes;
    for (let cell = 0; cell < cells; cell++) {
      const base = cell * classes;
      if (!anyAtLeast(scores, base, base + classes, threshold)) continue;
      const cx = ((cell % cols) + 0.5) * stride;
      const cy = (Math.floor(cell / cols) + 0.5) * stride;
      const off = cell * 4 * bins;
      const box: [number, number, number, number] = [
        Math.max(0, cx - expectedBin(boxes, off, bins) * stride),
        Math.max(0, cy - expectedBin(boxes, off + bins, bins) * stride),
        Math.min(p.inputWidth, cx + expectedBin(boxes, off + 2 * bins, bins) * stride),
        Math.min(p.inputHeight, cy + expectedBin(boxes, off + 3 * bins, bins) * stride),
      ];
      for (let c = 0; c < classes; c++)
        if (scores[base + c]! >= threshold)
          result.push({ box, classId: c, score: activated(scores[base + c]!) });
    }
  }
  return result;
}

/** detections decoded inside the graph: rows of [x1, y1, x2, y2, score, class] */
function decodeInGraph(spec: InGraphDecoderSpec, out: FrameOutputs, p: DecodeParams): RawDetection[] {
  const rows = out[spec.output]!;
  const sx = spec.coordinates === 'normalized' ? p.inputWidth : 1;
  const sy = spec.coordinates === 'normalized' ? p.inputHeight : 1;
  const result: RawDetection[] = [];
  for (let r = 0; r + 6 <= rows.length; r += 6) {
    const score = rows[r + 4]!;
    if (score < p.scoreThreshold) continue;
    result.push({
      box: [
        Math.max(0, rows[r]! * sx),
        Math.max(0, rows[r + 1]! * sy),
        Math.min(p.inputWidth, rows[r + 2]! * sx),
        Math.min(p.inputHeight, rows[r + 3]! * sy),
      ],
      classId: Math.round(rows[r + 5]!),
      score,
    });
  }
  return result;
}

/** names of the model outputs a decoder reads */
export function decoderOutputs(d: ModelDescriptor): string[] {
  return d.decoder.kind === 'gfl' ? [...d.decoder.scoreOutputs, ...d.decoder.boxOutputs] : [d.decoder.output];
}

export function decode(d: ModelDescriptor, out: FrameOutputs, p: DecodeParams): RawDetection[] {
  return d.decoder.kind === 'gfl' ? decodeGfl(d.decoder, out, p) : decodeInGraph(d.decoder, out, p);
}
