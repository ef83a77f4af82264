import Type from 'typebox';
import { ArgusError } from '../../common/errors.ts';
import { compileSchema } from '../../common/schema.ts';
import { adaptGate } from '../adapt/gate.ts';
import { adaptOptions } from '../adapt/options.ts';
import { GateConfigSchema } from '../evaluate/gate.ts';
import { AnnotatedSetSchema } from '../teacher/annotated.ts';
import { teacherConfig } from '../teacher/config.ts';

const PartialConfig = (what: string) =>
  Type.Record(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9]{0,63}$' }), Type.Unknown(), {
    maxProperties: 64,
    description: `a partial ${what}: missing fields take their defaults`,
  });

const ModelRef = Type.String({ minLength: 1, maxLength: 4096 });

/**
 * What a site's loop is run with, beside its site, work directory and frames: the
 * `loop.options` section of the control-plane config, or a caller's options. Every field is
 * bounded here, once, and the partial teacher, adaptation and gate configs are checked against
 * their own schemas before a frame is read.
 */
export const LoopSettingsSchema = Type.Object(
  {
    /** hand-annotated frames of the site the candidate must not do worse on (AnnotatedSetSchema) */
    annotated: AnnotatedSetSchema,
    /** partial teacher config (models/teacher/config.ts); default: the built-in teacher */
    teacher: Type.Optional(PartialConfig('teacher config (models/teacher/config.ts)')),
    /**
     * the model the site's boxes run (a model name or directory): the gate's baseline, and the
     * student adapted unless `student` is given (default: NanoDet-g pruned to the teacher's classes)
     */
    baseline: Type.Optional(ModelRef),
    /** the float student to adapt (default: the baseline) */
    student: Type.Optional(ModelRef),
    /** frames captured at or after this instant are held out (default: the latest `heldOutShare`) */
    heldOutFrom: Type.Optional(Type.String({ format: 'date-time' })),
    heldOutShare: Type.Number({ minimum: 0.01, maximum: 0.99, default: 1 / 3 }),
    /** most frames taken from the source */
    maxFrames: Type.Integer({ minimum: 2, maximum: 100_000, default: 5000 }),
    /** partial adaptation options (models/adapt/options.ts) */
    adapt: Type.Optional(PartialConfig('adaptation options (models/adapt/options.ts)')),
    /** partial adaptation gate (models/adapt/gate.ts) */
    gate: Type.Optional(PartialConfig('adaptation gate (models/adapt/gate.ts)')),
    /** the factory's quantization gate the int8 candidate passes against its float model */
    quantizationGate: Type.Optional(GateConfigSchema),
    /** calibration frames taken from the training frames, evenly spread */
    calibrationFrames: Type.Integer({ minimum: 1, maximum: 1000, default: 32 }),
    /** bundle name (default: the adapted student's name) */
    bundleName: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' })),
    bundleVersion: Type.Integer({ minimum: 1, maximum: 2 ** 31 - 1, default: 1 }),
    expiresInDays: Type.Number({ minimum: 1, maximum: 3650, default: 365 }),
    /** ONNX Runtime threads per session (0: one per core) */
    threads: Type.Integer({ minimum: 0, maximum: 256, default: 0 }),
  },
  { additionalProperties: false },
);

export type LoopSettings = Type.Static<typeof LoopSettingsSchema>;

/** the fields with a default */
type Defaulted =
  | 'heldOutShare'
  | 'maxFrames'
  | 'calibrationFrames'
  | 'bundleVersion'
  | 'expiresInDays'
  | 'threads';

/** the settings as a caller may give them: the fields with a default may be left out */
export type LoopSettingsInput = Omit<LoopSettings, Defaulted> & Partial<Pick<LoopSettings, Defaulted>>;

export const loopSettingsValidator = compileSchema<LoopSettings>(LoopSettingsSchema);

/**
 * `value` with its defaults, validated, the partial configs in it included; `what` names where it
 * came from in the errors (e.g. "loop.options of control-plane.yaml")
 */
export function loopSettings(value: unknown, what: string): LoopSettings {
  if (
    typeof value === 'object' &&
    value !== null &&
    (value as { annotated?: unknown }).annotated === undefined
  ) {
    throw new ArgusError(
      `${what} name no hand-annotated frames of the site ("annotated"): the gate checks on them that a candidate does no worse, and a run without them is refused before it reads a frame`,
      'give them as `annotated` (in the control-plane config: loop.options.annotated): { video: <recording>, label: person, width, height, frames: [{ index: <frame>, boxes: [[x1, y1, x2, y2], …] }, …] } (AnnotatedSetSchema, models/teacher/annotated.ts)',
    );
  }
  const settings = loopSettingsValidator.parse(loopSettingsValidator.withDefaults(value), what);
  teacherConfig(settings.teacher);
  adaptOptions(settings.adapt);
  adaptGate(settings.gate);
  return settings;
}
