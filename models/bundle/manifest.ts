import Type from 'typebox';
import { parseBoundedJson } from '../../common/bounded-json.ts';
import { ArgusError } from '../../common/errors.ts';
import { compileSchema } from '../../common/schema.ts';
import { ModelDescriptorSchema } from '../../inference/descriptor.ts';
import { LineageSchema, ModelRefSchema } from './lineage.ts';

/**
 * The manifest of a bundle, of one of two kinds. A model bundle says what the model is, where it
 * came from and what it was measured to do on which hardware; a scene bundle says which scene file
 * it ships, the classes it tracks and its rules. Both say when they stop being valid and the sha256
 * of every file they ship. The signature (`manifest.sig`) covers the exact bytes of
 * `manifest.json`, and through the hashes, every file.
 */

export const MANIFEST_FILE = 'manifest.json';
export const SIGNATURE_FILE = 'manifest.sig';

const FileEntry = Type.Object(
  {
    path: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$' }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    bytes: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);

/**
 * the hardware class of a target that fits a box of any class (e.g. an fp32 model on CPU): the
 * control plane's registry gives it to a device that has no variant for its own class, and a box
 * accepts it like a target of its own class
 */
export const ANY_HARDWARE_CLASS = 'any';

const Target = Type.Object(
  {
    /** ONNX Runtime execution provider, e.g. "cpu" */
    executionProvider: Type.String({ minLength: 1 }),
    /**
     * hardware class the model is meant for, e.g. "x86_64-avx512vnni" (see inference/hardware-class.ts),
     * or ANY_HARDWARE_CLASS
     */
    hardwareClass: Type.String({ minLength: 1 }),
  },
  { additionalProperties: false },
);

/** what an evaluation measured on one hardware class */
const Metrics = Type.Object(
  {
    reference: ModelRefSchema,
    map50: Type.Number({ minimum: 0, maximum: 1 }),
    latencyRatio: Type.Number({ minimum: 0 }),
    latencyP50Ms: Type.Number({ minimum: 0 }),
    referenceLatencyP50Ms: Type.Number({ minimum: 0 }),
    threads: Type.Integer({ minimum: 0 }),
    /** evaluation frames, FIRST-LAST/STEP of `video` */
    frames: Type.String(),
    video: Type.String(),
    evaluatedAt: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
);

const common = {
  schemaVersion: Type.Literal(1),
  name: Type.String({ pattern: '^[a-z0-9][a-z0-9._-]*$' }),
  /** integer that increases with every bundle of this name; devices refuse older or equal */
  version: Type.Integer({ minimum: 1 }),
  created: Type.String({ format: 'date-time' }),
  expires: Type.String({ format: 'date-time' }),
  files: Type.Array(FileEntry, { minItems: 1 }),
};

const ModelManifest = Type.Object(
  {
    /** a detection model: its ONNX file and descriptor */
    kind: Type.Literal('model'),
    ...common,
    lineage: LineageSchema,
    targets: Type.Array(Target, { minItems: 1 }),
    descriptor: ModelDescriptorSchema,
    labels: Type.Array(Type.String(), { minItems: 1 }),
    /** by hardware class */
    metrics: Type.Record(Type.String(), Metrics),
  },
  { additionalProperties: false },
);

const SceneManifest = Type.Object(
  {
    /** a scene file (what a camera looks for), validated when the bundle was built */
    kind: Type.Literal('scene'),
    ...common,
    scene: Type.Object(
      {
        /** the scene file among `files` */
        file: FileEntry.properties.path,
        /** classes the scene tracks (empty: every class of the model) */
        classes: Type.Array(Type.String({ minLength: 1 })),
        /** its rules, by id and type */
        rules: Type.Array(
          Type.Object(
            { id: Type.String({ minLength: 1 }), type: Type.String({ minLength: 1 }) },
            { additionalProperties: false },
          ),
          { minItems: 1 },
        ),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/** one manifest for every kind of bundle, told apart by `kind` */
export const ManifestSchema = Type.Union([ModelManifest, SceneManifest]);

export type Manifest = Type.Static<typeof ManifestSchema>;
export type ModelManifest = Type.Static<typeof ModelManifest>;
export type SceneManifest = Type.Static<typeof SceneManifest>;
export type BundleKind = Manifest['kind'];
export type BundleTarget = Type.Static<typeof Target>;
export type BundleMetrics = Type.Static<typeof Metrics>;

export const manifestValidator = compileSchema<Manifest>(ManifestSchema);

/** a manifest is a few KiB; these bound what parsing one may cost */
const MANIFEST_LIMITS = { maxBytes: 1 << 20, maxDepth: 16 };

/** the manifest in `bytes`, validated; `what` names it in errors */
export function parseManifest(bytes: Uint8Array, what: string): Manifest {
  let raw: unknown;
  try {
    raw = parseBoundedJson(Buffer.from(bytes).toString('utf8'), MANIFEST_LIMITS);
  } catch (err) {
    throw new ArgusError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
  return manifestValidator.parse(raw, what);
}

export const SignatureSchema = Type.Object(
  {
    algorithm: Type.Literal('ed25519'),
    keyId: Type.String({ pattern: '^[0-9a-f]{16}$' }),
    /** base64 of the 64-byte signature over the bytes of manifest.json */
    signature: Type.String({ minLength: 1 }),
  },
  { additionalProperties: false },
);

export type Signature = Type.Static<typeof SignatureSchema>;

export const signatureValidator = compileSchema<Signature>(SignatureSchema);
