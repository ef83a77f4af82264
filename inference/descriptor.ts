import { readFile } from 'node:fs/promises';
import Type from 'typebox';
import { ArgusError } from '../common/errors.ts';
import { compileSchema } from '../common/schema.ts';

/**
 * The model descriptor: everything the runtime needs to feed a model and read its outputs.
 * It lives beside the ONNX file as `descriptor.json`; pipeline code reads it instead of holding
 * model-specific constants.
 */

const Normalization = Type.Object(
  {
    /** per channel, in the descriptor's colour order */
    mean: Type.Array(Type.Number(), { minItems: 3, maxItems: 3 }),
    std: Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 3, maxItems: 3 }),
    /** `graph`: folded into the ONNX graph, the runtime feeds raw uint8 pixels; `runtime`: applied in JS */
    appliedIn: Type.Union([Type.Literal('graph'), Type.Literal('runtime')]),
  },
  { additionalProperties: false },
);

const ModelInput = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    /** layout of the tensor the runtime feeds */
    layout: Type.Union([Type.Literal('NHWC'), Type.Literal('NCHW')]),
    dtype: Type.Union([Type.Literal('uint8'), Type.Literal('float32')]),
    width: Type.Integer({ minimum: 1 }),
    height: Type.Integer({ minimum: 1 }),
    colorOrder: Type.Union([Type.Literal('RGB'), Type.Literal('BGR')]),
    /** how frames are fitted to width × height */
    resize: Type.Union([Type.Literal('stretch')]),
    normalization: Normalization,
    /** `dynamic`: one run takes N frames; a number: the fixed batch the graph was built for */
    batch: Type.Union([Type.Literal('dynamic'), Type.Integer({ minimum: 1 })]),
    /**
     * present when the graph also runs on smaller inputs (a fully convolutional detector): any
     * width and height that are multiples of this (its largest stride) up to width × height; the
     * runtime then feeds a region mosaic only as large as its regions instead of the whole size
     */
    sizeStep: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);

const GflDecoder = Type.Object(
  {
    /** Generalized Focal Loss heads (NanoDet): per-stride class scores and 4 × (regMax + 1) box bins */
    kind: Type.Literal('gfl'),
    strides: Type.Array(Type.Integer({ minimum: 1 }), { minItems: 1 }),
    regMax: Type.Integer({ minimum: 1 }),
    /** output names, one per stride, same order as `strides` */
    scoreOutputs: Type.Array(Type.String(), { minItems: 1 }),
    boxOutputs: Type.Array(Type.String(), { minItems: 1 }),
    /** whether scores are already probabilities (sigmoid applied in the graph) */
    scoresActivated: Type.Boolean(),
  },
  { additionalProperties: false },
);

const InGraphDecoder = Type.Object(
  {
    /** the graph decodes itself (CenterNet): rows of [x1, y1, x2, y2, score, class] */
    kind: Type.Literal('in-graph'),
    output: Type.String(),
    /** `input-pixels`: coordinates in the model input's pixel space; `normalized`: 0..1 */
    coordinates: Type.Union([Type.Literal('input-pixels'), Type.Literal('normalized')]),
  },
  { additionalProperties: false },
);

export const ModelDescriptorSchema = Type.Object(
  {
    schemaVersion: Type.Literal(1),
    name: Type.String({ pattern: '^[a-z0-9][a-z0-9._-]*$' }),
    /** monotonically increasing integer version of this model line */
    version: Type.Integer({ minimum: 1 }),
    task: Type.Literal('detection'),
    /** ONNX file name, relative to the descriptor */
    file: Type.String({ minLength: 1 }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    input: ModelInput,
    decoder: Type.Union([GflDecoder, InGraphDecoder]),
    labels: Type.Array(Type.String(), { minItems: 1 }),
    thresholds: Type.Object(
      {
        score: Type.Number({ minimum: 0, maximum: 1 }),
        iou: Type.Number({ minimum: 0, maximum: 1 }),
        maxDetections: Type.Integer({ minimum: 1 }),
      },
      { additionalProperties: false },
    ),
    /** where the weights came from and under which licence */
    source: Type.Object(
      {
        origin: Type.String(),
        upstream: Type.String(),
        license: Type.String(),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export type ModelDescriptor = Type.Static<typeof ModelDescriptorSchema>;
export type GflDecoderSpec = Type.Static<typeof GflDecoder>;
export type InGraphDecoderSpec = Type.Static<typeof InGraphDecoder>;

export const descriptorValidator = compileSchema<ModelDescriptor>(ModelDescriptorSchema);

/** Reads and validates a descriptor.json; errors name the file and every problem in it. */
export async function readDescriptor(path: string): Promise<ModelDescriptor> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new ArgusError(`cannot read model descriptor ${path}: ${(err as Error).message}`);
  }
  const d = descriptorValidator.parse(raw, `model descriptor ${path}`);
  const decoder = d.decoder;
  if (
    decoder.kind === 'gfl' &&
    (decoder.scoreOutputs.length !== decoder.strides.length ||
      decoder.boxOutputs.length !== decoder.strides.length)
  ) {
    throw new ArgusError(
      `model descriptor ${path} is invalid:\n  /decoder: needs one score and one box output per stride`,
    );
  }
  return d;
}
