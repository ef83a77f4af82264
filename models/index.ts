/** The model factory: import, convert, describe and store the small models the boxes run. */

export { type FrameMatch, type MapResult, meanAveragePrecision } from '../inference/map.ts';
export { type BuildBundleOptions, buildBundle, writeBundle } from './bundle/build.ts';
export { type BundleLimits, DEFAULT_BUNDLE_LIMITS, readBundleFile } from './bundle/container.ts';
export { installBundle } from './bundle/install.ts';
export {
  defaultKeyring,
  type GeneratedKey,
  generateSigningKey,
  type Keyring,
  keysDir,
  loadKeyring,
  loadSigningKey,
  type SigningKey,
  trustPublicKey,
  type UnreadableKey,
} from './bundle/keys.ts';
export {
  type DerivedModel,
  type Lineage,
  type LineageStep,
  readLineage,
  writeDerivedModel,
} from './bundle/lineage.ts';
export {
  type BundleKind,
  type BundleMetrics,
  type BundleTarget,
  MANIFEST_FILE,
  type Manifest,
  ManifestSchema,
  type ModelManifest,
  parseManifest,
  type SceneManifest,
  SIGNATURE_FILE,
} from './bundle/manifest.ts';
export { BundleRejected, type RejectionReason } from './bundle/rejection.ts';
export { signBundle } from './bundle/sign.ts';
export {
  installedDirOf,
  type VerifiedBundle,
  type VerifyOptions,
  verifyBundle,
} from './bundle/verify.ts';
export { CATALOG, type CatalogEntry, catalogEntry, DEFAULT_MODEL } from './catalog.ts';
export {
  DEFAULT_EVALUATE_OPTIONS,
  type EvaluateOptions,
  evaluateCandidate,
} from './evaluate/evaluate.ts';
export {
  checkGate,
  DEFAULT_GATE,
  enforceGate,
  type GateConfig,
  GateConfigSchema,
  type GateVerdict,
  loadGateConfig,
} from './evaluate/gate.ts';
export {
  type EvaluationReport,
  formatEvaluation,
  readEvaluationReport,
  writeEvaluationReport,
} from './evaluate/report.ts';
export { COCO80_LABELS } from './labels.ts';
export type {
  HarvestedFrame,
  HarvestedFrames,
} from './loop/frames.ts';
export { type LoopOptions, type LoopReport, type LoopResult, runLoop } from './loop/loop.ts';
export { type LoopSettings, LoopSettingsSchema, loopSettings } from './loop/settings.ts';
export { LOOP_STEPS, type LoopState, type LoopStep, readLoopState } from './loop/state.ts';
export { decodeModel, encodeModel } from './onnx/codec.ts';
export type { Graph, Model, Node, Tensor } from './onnx/ir.ts';
export { type PruneOptions, pruneClasses, TRAFFIC_LABELS } from './prune/prune.ts';
export {
  loadQuantizeConfig,
  type QuantizeConfig,
  QuantizeConfigSchema,
  quantizeConfig,
} from './quant/config.ts';
export {
  DEFAULT_CALIBRATION_FRAMES,
  DEFAULT_EVALUATION_FRAMES,
  type FrameRange,
  formatFrameRange,
  parseFrameRange,
  readModelFrames,
} from './quant/frames.ts';
export { type QuantizeOptions, quantizableNodes, quantizeModel } from './quant/quantize.ts';
export { simplifyForQuantization } from './quant/simplify.ts';
export {
  ensureModelInstalled,
  fetchModels,
  importTfjsModel,
  listModels,
} from './store.ts';
export {
  type AnnotatedFrame,
  type AnnotatedSet,
  AnnotatedSetSchema,
  type LabelScore,
  readVideoImages,
  scoreOnAnnotated,
} from './teacher/annotated.ts';
export {
  loadTeacherConfig,
  type TeacherConfig,
  TeacherConfigSchema,
  teacherConfig,
} from './teacher/config.ts';
export { decodeImage, modelFrameOf, type RgbImage } from './teacher/image.ts';
export { type FrameLabeller, Teacher } from './teacher/teacher.ts';
export { type FusionBox, type FusionRun, weightedBoxFusion } from './teacher/wbf.ts';
export { convertTfjsGraph } from './tfjs/converter.ts';
