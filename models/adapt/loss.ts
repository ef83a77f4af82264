import { iou } from '../../inference/nms.ts';
import type { Box } from '../../inference/rect.ts';

/**
 * The loss a GFL head (NanoDet) is trained with, over the cells of a batch, with its gradient with
 * respect to the head's last layer: per level a 1×1 Conv, so each cell's outputs are `W·f + b` of
 * the cell's feature vector `f`. Three terms of the detector's own kind and one regulariser:
 *
 * - quality focal loss on the class logits (GFL, Li et al. 2020): for every cell and class the
 *   target is the IoU of the cell's decoded box with the teacher box it is assigned to (that box's
 *   class only), 0 otherwise; `|y − σ(z)|^β · BCE(σ(z), y)`, summed, over the number of positive
 *   cells. Cells assigned to a soft box (a teacher box below the label score) are ignored for that
 *   box's class: the teacher is unsure, the distillation term speaks for it.
 * - distribution focal loss on the box sides of the positive cells: the two bins either side of
 *   the side's distance (in strides) share its mass; cross-entropy of the side's softmax with them,
 *   averaged over the 4 sides, weighted by the cell's best predicted score, over their sum (as
 *   NanoDet weights it).
 * - distillation of the teacher's scores: for every cell assigned to a teacher box, hard or soft,
 *   the same focal form with the teacher's score of that box as target, on that box's class, over
 *   the number of such cells.
 * - decay towards the pretrained weights, `λ/2 · ‖θ − θ₀‖²`: a few hundred site frames must move
 *   the head, not replace what it learnt from COCO.
 *
 * The targets (IoUs, DFL weights, the normalisers) are computed from the weights before a step and
 * held fixed through it, as GFL detaches them; `headLoss` is exact for given targets, which is
 * what the gradient check compares against finite differences.
 */

/** the layout of a head's last layer: `cout` output channels per cell, computed from `cin` features */
export interface HeadShape {
  /** class channels (the kept classes) */
  classes: number;
  /** bins per box side (regMax + 1) */
  bins: number;
  /** first output channel of the class logits */
  classOffset: number;
  /** first output channel of the box bins (4 sides × `bins`, side-major) */
  boxOffset: number;
  cout: number;
  /** features per cell, per level */
  cin: number[];
  strides: number[];
}

/** per level: row-major `cout × cin` weights and `cout` biases */
export interface HeadParams {
  weights: Float64Array[];
  biases: Float64Array[];
}

/** a teacher box in model-input pixels, with the student's class index */
export interface TrainingBox {
  box: Box;
  classId: number;
  score: number;
  /** at or above the label score: a label for QFL and DFL; below: distillation only */
  hard: boolean;
}

/** the cells of one level kept for training */
export interface LevelCells {
  count: number;
  /** cell centres (x, y) in model-input pixels */
  centres: Float32Array;
  /** features, `count × cin` */
  features: Float32Array;
  /** sample weight: 1, or 1/rate for an easy negative kept at random */
  weight: Float32Array;
  /** index into the batch's boxes of the box the cell is assigned to, or -1 */
  box: Int32Array;
}

export interface Batch {
  boxes: TrainingBox[];
  /** one entry per level */
  levels: LevelCells[];
  /** the model input's size, which decoded boxes are clipped to */
  inputWidth: number;
  inputHeight: number;
}

export interface LossWeights {
  quality: number;
  box: number;
  distill: number;
  /** λ of the decay towards the pretrained weights */
  decay: number;
  /** β of the focal terms (GFL: 2) */
  beta: number;
  /** whether the box rows are trained (DFL); when not, their gradient is zero */
  trainBox: boolean;
}

export interface Targets {
  /** per level, per cell: QFL target of a cell assigned to a hard box (IoU of its decoded box), else 0 */
  quality: Float64Array[];
  /** per level, per cell: DFL weight of a cell assigned to a hard box (its best score), else 0 */
  boxWeight: Float64Array[];
  /** positive cells (assigned to a hard box), at least 1 */
  positives: number;
  /** sum of the DFL weights (1 when there are none) */
  boxNorm: number;
  /** cells assigned to any teacher box, at least 1 */
  distilled: number;
}

/** each term unweighted, and the weighted total */
export interface LossParts {
  quality: number;
  box: number;
  distill: number;
  decay: number;
  total: number;
}

export function zeroParams(shape: HeadShape): HeadParams {
  return {
    weights: shape.cin.map((c) => new Float64Array(shape.cout * c)),
    biases: shape.cin.map(() => new Float64Array(shape.cout)),
  };
}

export function cloneParams(p: HeadParams): HeadParams {
  return {
    weights: p.weights.map((w) => Float64Array.from(w)),
    biases: p.biases.map((b) => Float64Array.from(b)),
  };
}

/** the cell's outputs `W·f + b` */
function forward(
  shape: HeadShape,
  p: HeadParams,
  level: number,
  cells: LevelCells,
  i: number,
  out: Float64Array,
): void {
  const cin = shape.cin[level]!;
  const w = p.weights[level]!;
  const b = p.biases[level]!;
  const f = cells.features;
  const base = i * cin;
  for (let o = 0; o < shape.cout; o++) {
    let s = b[o]!;
    const row = o * cin;
    for (let k = 0; k < cin; k++) s += w[row + k]! * f[base + k]!;
    out[o] = s;
  }
}

export function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

function softplus(z: number): number {
  return z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z));
}

/** the focal term `|y − σ(z)|^β · BCE(σ(z), y)` and its derivative in z */
export function focal(z: number, y: number, beta: number): { loss: number; grad: number } {
  const p = sigmoid(z);
  const bce = softplus(z) - y * z;
  const d = p - y;
  const a = Math.abs(d);
  const mod = a ** beta;
  const dmod = a === 0 ? 0 : beta * a ** (beta - 1) * Math.sign(d) * p * (1 - p);
  return { loss: mod * bce, grad: mod * d + dmod * bce };
}

/** the distances (in strides) of the box's sides from the cell centre, as the bins can express them */
export function sideTargets(
  box: Readonly<Box>,
  cx: number,
  cy: number,
  stride: number,
  bins: number,
): number[] {
  const top = bins - 1 - 0.01;
  const clamp = (v: number) => Math.min(top, Math.max(0, Number.isFinite(v) ? v : 0));
  return [(cx - box[0]) / stride, (cy - box[1]) / stride, (box[2] - cx) / stride, (box[3] - cy) / stride].map(
    clamp,
  );
}

/**
 * distribution focal loss of one side: the logits `z[off .. off+bins)`, the target distance `t`;
 * adds `scale · ∂loss/∂z` into `grad` (when given) and returns the loss
 */
function dfl(
  z: Float64Array,
  off: number,
  bins: number,
  t: number,
  scale: number,
  grad: Float64Array | undefined,
): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < bins; j++) max = Math.max(max, z[off + j]!);
  let sum = 0;
  for (let j = 0; j < bins; j++) sum += Math.exp(z[off + j]! - max);
  const logSum = max + Math.log(sum);
  const left = Math.floor(t);
  const wl = left + 1 - t;
  const wr = t - left;
  const loss = -(wl * (z[off + left]! - logSum) + wr * (z[off + left + 1]! - logSum));
  if (grad) {
    for (let j = 0; j < bins; j++) {
      const target = j === left ? wl : j === left + 1 ? wr : 0;
      grad[off + j] = grad[off + j]! + scale * (Math.exp(z[off + j]! - logSum) - target);
    }
  }
  return loss;
}

/** the box a cell's bins decode to, as inference/decoders.ts decodes it (expectation × stride, clipped) */
export function decodeCellBox(
  shape: HeadShape,
  z: Float64Array,
  cx: number,
  cy: number,
  stride: number,
  width: number,
  height: number,
): Box {
  const side = (s: number) => {
    const off = shape.boxOffset + s * shape.bins;
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < shape.bins; j++) max = Math.max(max, z[off + j]!);
    let sum = 0;
    let weighted = 0;
    for (let j = 0; j < shape.bins; j++) {
      const e = Math.exp(z[off + j]! - max);
      sum += e;
      weighted += j * e;
    }
    return (weighted / sum) * stride;
  };
  return [
    Math.max(0, cx - side(0)),
    Math.max(0, cy - side(1)),
    Math.min(width, cx + side(2)),
    Math.min(height, cy + side(3)),
  ];
}

/** the targets of a batch under the current weights (held fixed through a step) */
export function computeTargets(shape: HeadShape, p: HeadParams, batch: Batch): Targets {
  const z = new Float64Array(shape.cout);
  let positives = 0;
  let boxNorm = 0;
  let distilled = 0;
  const quality: Float64Array[] = [];
  const boxWeight: Float64Array[] = [];
  batch.levels.forEach((cells, level) => {
    const q = new Float64Array(cells.count);
    const w = new Float64Array(cells.count);
    for (let i = 0; i < cells.count; i++) {
      const b = cells.box[i]!;
      if (b < 0) continue;
      distilled++;
      const teacher = batch.boxes[b]!;
      if (!teacher.hard) continue;
      forward(shape, p, level, cells, i, z);
      const decoded = decodeCellBox(
        shape,
        z,
        cells.centres[2 * i]!,
        cells.centres[2 * i + 1]!,
        shape.strides[level]!,
        batch.inputWidth,
        batch.inputHeight,
      );
      q[i] = iou(decoded, teacher.box);
      let best = 0;
      for (let c = 0; c < shape.classes; c++) best = Math.max(best, sigmoid(z[shape.classOffset + c]!));
      w[i] = best;
      positives++;
      boxNorm += best;
    }
    quality.push(q);
    boxWeight.push(w);
  });
  return {
    quality,
    boxWeight,
    positives: Math.max(1, positives),
    boxNorm: boxNorm > 0 ? boxNorm : 1,
    distilled: Math.max(1, distilled),
  };
}

/**
 * The loss of the batch for fixed targets; with `grad`, its gradient (overwritten) with respect to
 * every weight and bias. `initial` is what the decay pulls towards.
 */
export function headLoss(
  shape: HeadShape,
  p: HeadParams,
  initial: HeadParams,
  batch: Batch,
  targets: Targets,
  weights: LossWeights,
  grad?: HeadParams,
): LossParts {
  const z = new Float64Array(shape.cout);
  const dz = new Float64Array(shape.cout);
  let quality = 0;
  let box = 0;
  let distill = 0;
  if (grad) {
    for (const g of [...grad.weights, ...grad.biases]) g.fill(0);
  }
  batch.levels.forEach((cells, level) => {
    const cin = shape.cin[level]!;
    const stride = shape.strides[level]!;
    for (let i = 0; i < cells.count; i++) {
      forward(shape, p, level, cells, i, z);
      dz.fill(0);
      const b = cells.box[i]!;
      const teacher = b >= 0 ? batch.boxes[b]! : undefined;
      const sample = cells.weight[i]!;
      for (let c = 0; c < shape.classes; c++) {
        const assigned = teacher?.classId === c;
        if (assigned && !teacher.hard) continue;
        const y = assigned ? targets.quality[level]![i]! : 0;
        const f = focal(z[shape.classOffset + c]!, y, weights.beta);
        quality += (sample * f.loss) / targets.positives;
        dz[shape.classOffset + c] =
          dz[shape.classOffset + c]! + (weights.quality * sample * f.grad) / targets.positives;
      }
      if (teacher) {
        const c = shape.classOffset + teacher.classId;
        const f = focal(z[c]!, teacher.score, weights.beta);
        distill += f.loss / targets.distilled;
        dz[c] = dz[c]! + (weights.distill * f.grad) / targets.distilled;
      }
      if (teacher?.hard && weights.trainBox) {
        const cw = targets.boxWeight[level]![i]! / targets.boxNorm;
        const sides = sideTargets(
          teacher.box,
          cells.centres[2 * i]!,
          cells.centres[2 * i + 1]!,
          stride,
          shape.bins,
        );
        for (let s = 0; s < 4; s++) {
          const off = shape.boxOffset + s * shape.bins;
          box += (cw * dfl(z, off, shape.bins, sides[s]!, (weights.box * cw) / 4, grad ? dz : undefined)) / 4;
        }
      }
      if (!grad) continue;
      const gw = grad.weights[level]!;
      const gb = grad.biases[level]!;
      const base = i * cin;
      for (let o = 0; o < shape.cout; o++) {
        const d = dz[o]!;
        if (d === 0) continue;
        gb[o] = gb[o]! + d;
        const row = o * cin;
        for (let k = 0; k < cin; k++) gw[row + k] = gw[row + k]! + d * cells.features[base + k]!;
      }
    }
  });
  let decay = 0;
  const frozen = frozenRows(shape, weights);
  p.weights.forEach((w, level) => {
    const w0 = initial.weights[level]!;
    const cin = shape.cin[level]!;
    for (let j = 0; j < w.length; j++) {
      if (frozen(Math.floor(j / cin))) continue;
      const d = w[j]! - w0[j]!;
      decay += 0.5 * d * d;
      if (grad) grad.weights[level]![j] = grad.weights[level]![j]! + weights.decay * d;
    }
    const b = p.biases[level]!;
    const b0 = initial.biases[level]!;
    for (let o = 0; o < b.length; o++) {
      if (frozen(o)) continue;
      const d = b[o]! - b0[o]!;
      decay += 0.5 * d * d;
      if (grad) grad.biases[level]![o] = grad.biases[level]![o]! + weights.decay * d;
    }
  });
  if (grad) zeroFrozen(shape, weights, grad);
  return {
    quality,
    box,
    distill,
    decay,
    total: weights.quality * quality + weights.box * box + weights.distill * distill + weights.decay * decay,
  };
}

/** whether output channel `o` is left as it is (the box rows, when boxes are not trained) */
function frozenRows(shape: HeadShape, weights: LossWeights): (o: number) => boolean {
  return (o) => !weights.trainBox && o >= shape.boxOffset && o < shape.boxOffset + 4 * shape.bins;
}

function zeroFrozen(shape: HeadShape, weights: LossWeights, grad: HeadParams): void {
  const frozen = frozenRows(shape, weights);
  grad.weights.forEach((g, level) => {
    const cin = shape.cin[level]!;
    for (let o = 0; o < shape.cout; o++) if (frozen(o)) g.fill(0, o * cin, (o + 1) * cin);
  });
  for (const g of grad.biases) for (let o = 0; o < shape.cout; o++) if (frozen(o)) g[o] = 0;
}
