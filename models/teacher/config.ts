import Type from 'typebox';
import { loadConfigFile } from '../../common/config-file.ts';
import { compileSchema } from '../../common/schema.ts';
import { TRAFFIC_LABELS } from '../prune/prune.ts';

/**
 * The teacher: detectors named by their model descriptors (a model in the cache or a model
 * directory), each run on views of the frame (the whole frame at its input size, tiles, their
 * mirror images), fused by weighted box fusion. Every field has a default: an empty file gives the
 * strongest teacher measured that runs offline on this product's CPUs — NanoDet-g at 768×576 (a
 * 768×576 camera's own resolution: no stretch, people nearly twice the pixels of the boxes' 416×416)
 * and its mirror image, weight 2, with MobileNetV3-CenterNet and its mirror, weight 1, fused at 0.35.
 * On the 33 hand-annotated frames of vtest.avi (172 scored persons) it found 167 at precision 0.949
 * (AP@0.5 0.989) where the boxes' student at its 0.4 found 166 at 0.943 (AP 0.973); tiles (2×2 at
 * 416) and a 1024×768 input measured worse (test/models/teacher.test.ts asserts the comparison).
 * A site with a GPU server names its own large ONNX detector and execution provider instead.
 */

const Size = Type.Integer({ minimum: 32, maximum: 4096 });

export const TeacherMemberSchema = Type.Object(
  {
    /** model name in the cache, or a model directory (descriptor.json + ONNX file) */
    model: Type.String({ minLength: 1, maxLength: 4096 }),
    /** how much its votes count in the fusion */
    weight: Type.Number({ exclusiveMinimum: 0, maximum: 100, default: 1 }),
    /**
     * the input size to run the whole frame at, for a fully convolutional model (one whose
     * descriptor has a `sizeStep`): multiples of it, larger than the descriptor's own size allowed
     * (default: the descriptor's size)
     */
    input: Type.Optional(Type.Object({ width: Size, height: Size }, { additionalProperties: false })),
    /**
     * also run on a grid of overlapping tiles of the frame, each stretched to the model's own input
     * size: small objects seen larger
     */
    tiles: Type.Optional(
      Type.Object(
        {
          rows: Type.Integer({ minimum: 1, maximum: 4 }),
          cols: Type.Integer({ minimum: 1, maximum: 4 }),
          /** share of a tile's width and height it overlaps its neighbour by */
          overlap: Type.Number({ minimum: 0, maximum: 0.5, default: 0.2 }),
        },
        { additionalProperties: false },
      ),
    ),
    /** also run on each view mirrored left to right (test-time augmentation) */
    flip: Type.Boolean({ default: true }),
    /** the model's detections down to this score go into the fusion */
    scoreThreshold: Type.Number({ minimum: 0.01, maximum: 1, default: 0.1 }),
  },
  { additionalProperties: false },
);

export const TeacherConfigSchema = Type.Object(
  {
    members: Type.Array(TeacherMemberSchema, {
      minItems: 1,
      maxItems: 8,
      default: [
        { model: 'nanodet', weight: 2, input: { width: 768, height: 576 }, flip: true, scoreThreshold: 0.1 },
        { model: 'centernet', weight: 1, flip: true, scoreThreshold: 0.1 },
      ],
    }),
    /** the classes it labels (the site's); others the members find are dropped */
    labels: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
      minItems: 1,
      maxItems: 100,
      default: [...TRAFFIC_LABELS],
    }),
    fusion: Type.Object(
      {
        /** boxes of one class overlapping a fused box by this IoU join it */
        iou: Type.Number({ minimum: 0.1, maximum: 0.95, default: 0.55 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** the fused score from which a box is a label */
    scoreThreshold: Type.Number({ minimum: 0.01, maximum: 1, default: 0.35 }),
    /** execution providers in order of preference; CPU is always the last resort */
    executionProviders: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
      maxItems: 8,
      default: ['cpu'],
    }),
    /** threads per operator (0: ONNX Runtime's default, one per core) */
    intraOpThreads: Type.Integer({ minimum: 0, maximum: 256, default: 0 }),
  },
  { additionalProperties: false },
);

export type TeacherMember = Type.Static<typeof TeacherMemberSchema>;
export type TeacherConfig = Type.Static<typeof TeacherConfigSchema>;

export const teacherConfigValidator = compileSchema<TeacherConfig>(TeacherConfigSchema);

/** the defaults, with any fields of `partial` applied (validated) */
export function teacherConfig(partial: unknown = {}): TeacherConfig {
  return teacherConfigValidator.parse(teacherConfigValidator.withDefaults(partial), 'teacher config');
}

/** reads a YAML or JSON teacher config; problems are reported with file, line and column */
export async function loadTeacherConfig(file: string): Promise<TeacherConfig> {
  return (await loadConfigFile(file, teacherConfigValidator, 'teacher config')).value;
}
