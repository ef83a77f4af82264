import Type from 'typebox';
import { ArgusError } from '../../common/errors.ts';
import { compileSchema } from '../../common/schema.ts';

/**
 * How the student's head is adapted to a site. Every field has a default (measured on vtest.avi,
 * see BENCHMARKS.md bench:loop), so `{}` is a complete configuration.
 */
export const AdaptOptionsSchema = Type.Object(
  {
    /** passes over the cached cells */
    epochs: Type.Integer({ minimum: 1, maximum: 100, default: 8 }),
    /** Adam's step size */
    learningRate: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.002 }),
    /** frames per minibatch (one optimiser step) */
    batchFrames: Type.Integer({ minimum: 1, maximum: 64, default: 4 }),
    /** seed of every random choice (cell sampling, frame order): the same inputs give the same weights */
    seed: Type.Integer({ minimum: 0, maximum: 2 ** 32 - 1, default: 1 }),
    /** λ of the decay towards the pretrained weights */
    weightDecay: Type.Number({ minimum: 0, maximum: 100, default: 0.01 }),
    /** weight of the quality focal loss on the class scores */
    qualityWeight: Type.Number({ minimum: 0, maximum: 100, default: 1 }),
    /** weight of the distribution focal loss on the box sides (NanoDet: 0.25) */
    boxWeight: Type.Number({ minimum: 0, maximum: 100, default: 0.25 }),
    /** weight of the distillation of the teacher's scores */
    distillWeight: Type.Number({ minimum: 0, maximum: 100, default: 0.5 }),
    /** β of the focal terms (GFL: 2) */
    focalBeta: Type.Number({ minimum: 1, maximum: 4, default: 2 }),
    /** train the box rows of the head too (else only the class rows) */
    trainBox: Type.Boolean({ default: true }),
    /** teacher boxes at or above this score are labels; below it, down to `minLabelScore`, only distilled */
    labelScore: Type.Number({ minimum: 0, maximum: 1, default: 0.4 }),
    /** teacher boxes below this score are not used at all */
    minLabelScore: Type.Number({ minimum: 0, maximum: 1, default: 0.1 }),
    /** teacher boxes a frame may carry (a frame with more is refused) */
    maxLabelsPerFrame: Type.Integer({ minimum: 1, maximum: 1000, default: 200 }),
    /** frames an adaptation takes at most */
    maxFrames: Type.Integer({ minimum: 1, maximum: 100_000, default: 5000 }),
    /** cells the student scores at least this high are kept as hard negatives */
    hardNegativeScore: Type.Number({ minimum: 0, maximum: 1, default: 0.05 }),
    /** share of the remaining (easy negative) cells kept, each weighted by its inverse */
    negativeRate: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.05 }),
    /** ATSS candidates per box and level */
    topK: Type.Integer({ minimum: 1, maximum: 64, default: 9 }),
    /** ATSS anchor side, in strides */
    anchorScale: Type.Number({ exclusiveMinimum: 0, maximum: 32, default: 5 }),
    /** intra-op threads of the feature run */
    threads: Type.Integer({ minimum: 1, maximum: 64, default: 1 }),
  },
  { additionalProperties: false },
);

export type AdaptOptions = Type.Static<typeof AdaptOptionsSchema>;

export const adaptOptionsValidator = compileSchema<AdaptOptions>(AdaptOptionsSchema);

/** the defaults with `partial` applied, validated */
export function adaptOptions(partial: unknown = {}): AdaptOptions {
  const options = adaptOptionsValidator.parse(
    adaptOptionsValidator.withDefaults(partial),
    'adaptation options',
  );
  if (options.minLabelScore > options.labelScore) {
    throw new ArgusError(
      `adaptation options: minLabelScore ${options.minLabelScore} is above labelScore ${options.labelScore}`,
      'minLabelScore is where distillation stops, labelScore where labels start: keep minLabelScore ≤ labelScore',
    );
  }
  return options;
}
