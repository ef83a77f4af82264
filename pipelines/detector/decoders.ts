import type { GflDecoderSpec, InGraphDecoderSpec, ModelDescriptor } from '../../models/descriptor.ts';
import type { RawDetection } from './nms.ts';

/** one frame's slice of each named model output */
export type FrameOutputs = Record<string, Float32Array>;

export interface DecodeParams {
  scoreThreshold: number;
  inputWidth: number;
  inputHeight: number;
  numClasses: number;
}

/**
 * Generalized Focal Loss head (NanoDet): for every cell of every stride, class scores and for each
 * box side a distribution over regMax+1 bins; the side's distance is the distribution's expectation
 * times the stride, measured from the cell centre.
 */
function decodeGfl(spec: GflDecoderSpec, out: FrameOutputs, p: DecodeParams): RawDetection[] {
  const bins = spec.regMax + 1;
  const result: RawDetection[] = [];
  const probs = new Float64Array(bins);
  spec.strides.forEach((stride, level) => {
    const scores = out[spec.scoreOutputs[level]!]!;
    const boxes = out[spec.boxOutputs[level]!]!;
    const cols = Math.ceil(p.inputWidth / stride);
    const cells = scores.length / p.numClasses;
    for (let cell = 0; cell < cells; cell++) {
      const base = cell * p.numClasses;
      let any = false;
      for (let c = 0; c < p.numClasses; c++) {
        const s = spec.scoresActivated ? scores[base + c]! : 1 / (1 + Math.exp(-scores[base + c]!));
        if (s >= p.scoreThreshold) {
          any = true;
          break;
        }
      }
      if (!any) continue;
      const cx = ((cell % cols) + 0.5) * stride;
      const cy = (Math.floor(cell / cols) + 0.5) * stride;
      const dist = [0, 0, 0, 0];
      for (let side = 0; side < 4; side++) {
        const off = cell * 4 * bins + side * bins;
        let max = Number.NEGATIVE_INFINITY;
        for (let b = 0; b < bins; b++) max = Math.max(max, boxes[off + b]!);
        let sum = 0;
        for (let b = 0; b < bins; b++) {
          probs[b] = Math.exp(boxes[off + b]! - max);
          sum += probs[b]!;
        }
        let expectation = 0;
        for (let b = 0; b < bins; b++) expectation += (b * probs[b]!) / sum;
        dist[side] = expectation * stride;
      }
      const box: [number, number, number, number] = [
        Math.max(0, cx - dist[0]!),
        Math.max(0, cy - dist[1]!),
        Math.min(p.inputWidth, cx + dist[2]!),
        Math.min(p.inputHeight, cy + dist[3]!),
      ];
      for (let c = 0; c < p.numClasses; c++) {
        const s = spec.scoresActivated ? scores[base + c]! : 1 / (1 + Math.exp(-scores[base + c]!));
        if (s >= p.scoreThreshold) result.push({ box, classId: c, score: s });
      }
    }
  });
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
