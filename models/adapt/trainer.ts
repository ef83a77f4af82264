import {
  type Batch,
  cloneParams,
  computeTargets,
  type HeadParams,
  type HeadShape,
  headLoss,
  type LossParts,
  type LossWeights,
  zeroParams,
} from './loss.ts';

/**
 * A small trainer for a linear head: Adam (Kingma & Ba) over minibatches of cached cells, a few
 * epochs, everything random drawn from one seeded generator, so the same frames, labels and options
 * give the same weights bit for bit.
 */

/** a seeded generator of uniform numbers in [0, 1) (mulberry32) */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** the items in an order drawn from `random` (Fisher–Yates) */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

const BETA1 = 0.9;
const BETA2 = 0.999;
const EPSILON = 1e-8;

/** Adam's moments for every parameter of a head */
export class Adam {
  private readonly m: HeadParams;
  private readonly v: HeadParams;
  private t = 0;

  constructor(
    shape: HeadShape,
    private readonly learningRate: number,
  ) {
    this.m = zeroParams(shape);
    this.v = zeroParams(shape);
  }

  /** one step of `params` against `grad`, in place */
  step(params: HeadParams, grad: HeadParams): void {
    this.t++;
    const c1 = 1 - BETA1 ** this.t;
    const c2 = 1 - BETA2 ** this.t;
    const update = (p: Float64Array, g: Float64Array, m: Float64Array, v: Float64Array) => {
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]!;
        m[i] = BETA1 * m[i]! + (1 - BETA1) * gi;
        v[i] = BETA2 * v[i]! + (1 - BETA2) * gi * gi;
        p[i] = p[i]! - (this.learningRate * (m[i]! / c1)) / (Math.sqrt(v[i]! / c2) + EPSILON);
      }
    };
    params.weights.forEach((w, l) => {
      update(w, grad.weights[l]!, this.m.weights[l]!, this.v.weights[l]!);
    });
    params.biases.forEach((b, l) => {
      update(b, grad.biases[l]!, this.m.biases[l]!, this.v.biases[l]!);
    });
  }
}

/** the mean of each loss term over an epoch's minibatches, as measured before each step */
export interface EpochLoss extends LossParts {
  epoch: number;
  batches: number;
}

export interface TrainOptions {
  shape: HeadShape;
  initial: HeadParams;
  epochs: number;
  learningRate: number;
  weights: LossWeights;
  seed: number;
  /** the minibatches of one epoch, in an order drawn from `random` */
  batches: (epoch: number, random: () => number) => AsyncIterable<Batch>;
  signal?: AbortSignal;
  onEpoch?: (loss: EpochLoss) => void;
}

export async function trainHead(o: TrainOptions): Promise<{ params: HeadParams; losses: EpochLoss[] }> {
  const params = cloneParams(o.initial);
  const grad = zeroParams(o.shape);
  const adam = new Adam(o.shape, o.learningRate);
  const random = seededRandom(o.seed);
  const losses: EpochLoss[] = [];
  for (let epoch = 1; epoch <= o.epochs; epoch++) {
    const sum: EpochLoss = { epoch, batches: 0, quality: 0, box: 0, distill: 0, decay: 0, total: 0 };
    for await (const batch of o.batches(epoch, random)) {
      if (o.signal?.aborted) throw o.signal.reason;
      const targets = computeTargets(o.shape, params, batch);
      const parts = headLoss(o.shape, params, o.initial, batch, targets, o.weights, grad);
      adam.step(params, grad);
      sum.batches++;
      sum.quality += parts.quality;
      sum.box += parts.box;
      sum.distill += parts.distill;
      sum.decay += parts.decay;
      sum.total += parts.total;
    }
    const n = Math.max(1, sum.batches);
    const mean: EpochLoss = {
      epoch,
      batches: sum.batches,
      quality: sum.quality / n,
      box: sum.box / n,
      distill: sum.distill / n,
      decay: sum.decay / n,
      total: sum.total / n,
    };
    losses.push(mean);
    o.onEpoch?.(mean);
  }
  return { params, losses };
}
