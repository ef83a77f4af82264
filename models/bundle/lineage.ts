import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import Type from 'typebox';
import { ArgusError } from '../../common/errors.ts';
import { buildDirAtomic, sweepStaging } from '../../common/fs-atomic.ts';
import { compileSchema } from '../../common/schema.ts';
import type { ModelDescriptor } from '../../inference/descriptor.ts';
import { DESCRIPTOR_FILE, type LoadedModel } from '../../inference/model-dir.ts';
import { AdaptOptionsSchema } from '../adapt/options.ts';
import { FrameSetSchema, SiteFramesSchema } from '../quant/frames.ts';

/**
 * Where a model came from and how: the model it was derived from and each factory step applied
 * since (pruning, adaptation to a site, quantization), with their settings. Written as `lineage.json` into every model
 * directory the factory produces and copied into the bundle manifest.
 */

export const LINEAGE_FILE = 'lineage.json';

export const ModelRefSchema = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    version: Type.Integer({ minimum: 1 }),
    /** sha256 of its ONNX file */
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  },
  { additionalProperties: false },
);

const QuantizeStep = Type.Object(
  {
    kind: Type.Literal('quantize'),
    at: Type.String({ format: 'date-time' }),
    format: Type.Literal('qdq'),
    activations: Type.Object(
      {
        type: Type.Union([Type.Literal('uint8'), Type.Literal('int8')]),
        calibration: Type.Union([Type.Literal('minmax'), Type.Literal('percentile')]),
        percentile: Type.Optional(Type.Number()),
      },
      { additionalProperties: false },
    ),
    weights: Type.Object(
      { type: Type.Literal('int8'), perChannel: Type.Boolean() },
      { additionalProperties: false },
    ),
    calibrationFrames: FrameSetSchema,
    /** nodes left in float */
    keptFloat: Type.Array(Type.String()),
    /** zero point of the raw input when the normalisation was folded into the first Conv */
    inputZeroPoint: Type.Optional(Type.Integer({ minimum: 0, maximum: 255 })),
    quantizedNodes: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);

const PruneStep = Type.Object(
  {
    kind: Type.Literal('prune'),
    at: Type.String({ format: 'date-time' }),
    /** labels the pruned head keeps, in output order */
    keptLabels: Type.Array(Type.String(), { minItems: 1 }),
    removedClasses: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);

const LossesSchema = Type.Object(
  {
    epoch: Type.Integer({ minimum: 1 }),
    quality: Type.Number(),
    box: Type.Number(),
    distill: Type.Number(),
    decay: Type.Number(),
    total: Type.Number(),
  },
  { additionalProperties: false },
);

const AdaptStep = Type.Object(
  {
    kind: Type.Literal('adapt'),
    at: Type.String({ format: 'date-time' }),
    /** the labeller whose boxes the head was trained on */
    teacher: Type.Object(
      {
        name: Type.String({ minLength: 1, maxLength: 200 }),
        /** sha256 of the teacher's configuration or model, when it has one */
        sha256: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$' })),
      },
      { additionalProperties: false },
    ),
    /** frames trained on */
    frames: Type.Integer({ minimum: 1 }),
    /** sha256 over the training frames' pixel digests, in training order */
    framesSha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    /** teacher boxes used as labels, and cells assigned to them */
    labels: Type.Integer({ minimum: 0 }),
    positives: Type.Integer({ minimum: 0 }),
    /** which rows of the head's last layer were trained */
    trained: Type.Union([Type.Literal('classes'), Type.Literal('classes+boxes')]),
    options: AdaptOptionsSchema,
    /** the mean of each loss term over every epoch */
    losses: Type.Array(LossesSchema, { maxItems: 100 }),
  },
  { additionalProperties: false },
);

/** what the gate measured of a loop's candidate (models/adapt/gate.ts) */
const LoopGateMetrics = Type.Object(
  {
    heldOutFrames: Type.Integer({ minimum: 0 }),
    teacherBoxes: Type.Integer({ minimum: 0 }),
    agreementBefore: Type.Number(),
    agreementAfter: Type.Number(),
    gapClosedShare: Type.Number(),
    annotatedFrames: Type.Integer({ minimum: 0 }),
    annotatedBefore: Type.Number(),
    annotatedAfter: Type.Number(),
    falsePositivesPerFrameBefore: Type.Number({ minimum: 0 }),
    falsePositivesPerFrameAfter: Type.Number({ minimum: 0 }),
  },
  { additionalProperties: false },
);

/** the data–model loop (models/loop) that made a site's candidate: teacher, frames, gate, wall times */
const LoopStepSchema = Type.Object(
  {
    kind: Type.Literal('loop'),
    at: Type.String({ format: 'date-time' }),
    site: Type.String({ minLength: 1, maxLength: 200 }),
    teacher: Type.Object(
      {
        /** sha256 of the teacher's whole configuration */
        configSha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
        /** its members' models */
        members: Type.Array(Type.String({ maxLength: 4096 }), { maxItems: 8 }),
      },
      { additionalProperties: false },
    ),
    trainFrames: SiteFramesSchema,
    heldOutFrames: SiteFramesSchema,
    gate: LoopGateMetrics,
    /** wall time of each step of the loop before signing, ms */
    wallMs: Type.Record(Type.String({ maxLength: 32 }), Type.Number({ minimum: 0 })),
  },
  { additionalProperties: false },
);

export const LineageStepSchema = Type.Union([QuantizeStep, PruneStep, AdaptStep, LoopStepSchema]);

export const LineageSchema = Type.Object(
  {
    /** the original model this one descends from (undefined for an original) */
    derivedFrom: Type.Optional(ModelRefSchema),
    /** factory steps in the order they were applied */
    steps: Type.Array(LineageStepSchema),
  },
  { additionalProperties: false },
);

export type ModelRef = Type.Static<typeof ModelRefSchema>;
export type LineageStep = Type.Static<typeof LineageStepSchema>;
export type QuantizeLineageStep = Type.Static<typeof QuantizeStep>;
export type LoopLineageStep = Type.Static<typeof LoopStepSchema>;
export type AdaptLineageStep = Type.Static<typeof AdaptStep>;
export type Lineage = Type.Static<typeof LineageSchema>;

export const lineageValidator = compileSchema<Lineage>(LineageSchema);

/** the lineage stored beside a model, or an empty one (an original model) when there is none */
export async function readLineage(modelDir: string): Promise<Lineage> {
  const path = join(modelDir, LINEAGE_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return { steps: [] };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ArgusError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  return lineageValidator.parse(raw, path);
}

/** the lineage of a model derived from `source` by one more step */
export async function extendLineage(source: LoadedModel, step: LineageStep): Promise<Lineage> {
  const previous = await readLineage(source.dir);
  const derivedFrom = previous.derivedFrom ?? {
    name: source.descriptor.name,
    version: source.descriptor.version,
    sha256: source.descriptor.sha256,
  };
  return { derivedFrom, steps: [...previous.steps, step] };
}

/** a model the factory made: ONNX bytes, descriptor (with their sha256) and lineage */
export interface DerivedModel {
  bytes: Uint8Array;
  descriptor: ModelDescriptor;
  lineage: Lineage;
}

/**
 * Writes a derived model as a model directory (`model.onnx`, `descriptor.json`, `lineage.json`)
 * that `loadModel(dir)` accepts. Atomic: on any error or abort nothing appears at `target`. Staging
 * leftovers of writers that were killed outright are swept from `target`'s parent directory first.
 */
export async function writeDerivedModel(target: string, model: DerivedModel): Promise<void> {
  await sweepStaging(dirname(target));
  await buildDirAtomic(target, async (dir) => {
    await writeFile(join(dir, model.descriptor.file), model.bytes);
    await writeFile(join(dir, DESCRIPTOR_FILE), `${JSON.stringify(model.descriptor, null, 2)}\n`);
    await writeFile(join(dir, LINEAGE_FILE), `${JSON.stringify(model.lineage, null, 2)}\n`);
  });
}
