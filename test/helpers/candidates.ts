import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Hex } from '../../common/hash.ts';
import { cacheDir, SAMPLE_VIDEO } from '../../common/paths.ts';
import { type LoadedModel, loadModel } from '../../inference/model-dir.ts';
import { buildBundle } from '../../models/bundle/build.ts';
import type { SigningKey } from '../../models/bundle/keys.ts';
import { type DerivedModel, readLineage, writeDerivedModel } from '../../models/bundle/lineage.ts';
import type { ModelManifest } from '../../models/bundle/manifest.ts';
import { evaluateCandidate } from '../../models/evaluate/evaluate.ts';
import { DEFAULT_GATE, type GateConfig } from '../../models/evaluate/gate.ts';
import { decodeModel, encodeModel } from '../../models/onnx/codec.ts';
import { quantizeConfig } from '../../models/quant/config.ts';
import { parseFrameRange } from '../../models/quant/frames.ts';
import { quantizeModel } from '../../models/quant/quantize.ts';
import { ensureCatalogModels } from './models.ts';

/**
 * Model candidates for OTA tests, made by the real model factory from the catalog's NanoDet-g:
 * - `int8`: the factory's static int8 quantization (a good candidate: it agrees with fp32);
 * - `broken`: that int8 model with every activation scale a quarter of its calibrated value, so
 *   most activations saturate (it loads and runs, and agrees badly: shadow validation refuses it);
 * - `slow`: the int8 model with a descriptor that keeps every candidate box at its operating
 *   threshold (score 0, no limit on detections): the decoder and NMS then handle every cell and
 *   class of every frame, so the cameras' detect fps falls once it runs. Shadow validation ranks
 *   a candidate's detections down to a low score of its own (0.05), which hides this: it passes
 *   shadow and regresses in production, for the health window to catch.
 * `signedBundle` packs any of them, signed, as the factory does; the gate it is given decides
 * what may be packed, so a test packs the broken one only with a gate it passes deliberately.
 */

/** calibration frames and the held-out frames a bundle's evaluation runs on (disjoint) */
const CALIBRATION_FRAMES = '10-370/40';
const EVALUATION_FRAMES = '405-765/60';

export interface Candidates {
  fp32: LoadedModel;
  int8: LoadedModel;
  broken: LoadedModel;
  slow: LoadedModel;
}

/** a model directory with the int8 model's weights and another descriptor */
function withDescriptor(
  model: LoadedModel,
  descriptor: LoadedModel['descriptor'],
  lineage: DerivedModel['lineage'],
): DerivedModel {
  return { bytes: model.bytes, descriptor, lineage };
}

export async function withWrongActivationScales(int8: LoadedModel): Promise<DerivedModel> {
  const model = decodeModel(int8.bytes);
  const scales = new Set(
    model.graph.nodes.filter((n) => n.opType === 'QuantizeLinear').map((n) => n.inputs[1]!),
  );
  model.graph.initializers = model.graph.initializers.map((t) =>
    scales.has(t.name) ? { ...t, data: Float32Array.from(t.data as Float32Array, (v) => v / 4) } : t,
  );
  const bytes = encodeModel(model);
  return {
    bytes,
    descriptor: { ...int8.descriptor, name: 'nanodet-int8-broken', sha256: sha256Hex(bytes) },
    lineage: await readLineage(int8.dir),
  };
}

/** the candidates made from `fp32` under `dir` when they are there and intact (their files match their hashes) */
async function madeBefore(fp32: LoadedModel, dir: string): Promise<Candidates | undefined> {
  try {
    const [int8, broken, slow] = await Promise.all(
      ['nanodet-int8', 'nanodet-int8-broken', 'nanodet-int8-slow'].map((n) => loadModel(join(dir, n))),
    );
    const lineage = await readLineage(int8!.dir);
    return lineage.derivedFrom?.sha256 === fp32.descriptor.sha256
      ? { fp32, int8: int8!, broken: broken!, slow: slow! }
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The candidates (int8, broken, slow), made from the catalog's nanodet once per machine: they are
 * kept in the cache (like the catalog models) as quantizing takes a while on a small box
 */
export async function makeCandidates(dir = join(cacheDir(), 'test-candidates')): Promise<Candidates> {
  await ensureCatalogModels();
  const fp32 = await loadModel('nanodet');
  const made = await madeBefore(fp32, dir);
  if (made) return made;
  await rm(dir, { recursive: true, force: true });
  const derived = await quantizeModel(fp32, {
    config: quantizeConfig({ calibrationFrames: CALIBRATION_FRAMES }),
    video: SAMPLE_VIDEO,
  });
  await writeDerivedModel(join(dir, 'nanodet-int8'), derived);
  const int8 = await loadModel(join(dir, 'nanodet-int8'));
  await writeDerivedModel(join(dir, 'nanodet-int8-broken'), await withWrongActivationScales(int8));
  const lineage = await readLineage(int8.dir);
  await writeDerivedModel(
    join(dir, 'nanodet-int8-slow'),
    withDescriptor(
      int8,
      {
        ...int8.descriptor,
        name: 'nanodet-int8-slow',
        thresholds: { ...int8.descriptor.thresholds, score: 0, maxDetections: 1_000_000 },
      },
      lineage,
    ),
  );
  return {
    fp32,
    int8,
    broken: await loadModel(join(dir, 'nanodet-int8-broken')),
    slow: await loadModel(join(dir, 'nanodet-int8-slow')),
  };
}

/** a gate every candidate passes: for packing a deliberately bad candidate */
export const PERMISSIVE_GATE: GateConfig = { minMap50: 0, maxLatencyRatio: 1e9 };

export interface SignedBundleOptions {
  /** the model as the factory made it */
  model: LoadedModel;
  /** the model it is evaluated against (the factory's reference) */
  reference: LoadedModel;
  out: string;
  /** the bundle's model line and version (what a box compares with the version it runs) */
  name: string;
  version: number;
  key: SigningKey;
  /** default: the factory's own gate */
  gate?: GateConfig;
  hardwareClass?: string;
}

/** evaluates the candidate on held-out frames and packs it as a signed bundle, as `argus models bundle` does */
export async function signedBundle(o: SignedBundleOptions): Promise<ModelManifest> {
  const report = await evaluateCandidate(o.reference, o.model, {
    frames: parseFrameRange(EVALUATION_FRAMES),
    threads: 1,
    latencyRuns: 1,
    candidateScoreThreshold: 0.05,
    minTruths: 10,
  });
  return buildBundle({
    modelDir: o.model.dir,
    out: o.out,
    name: o.name,
    version: o.version,
    evaluations: [report],
    gate: o.gate ?? { ...DEFAULT_GATE, maxLatencyRatio: Number.POSITIVE_INFINITY },
    ...(o.hardwareClass ? { targets: [{ executionProvider: 'cpu', hardwareClass: o.hardwareClass }] } : {}),
    expiresInDays: 30,
    signWith: o.key,
  });
}

/**
 * the model in `modelDir` packed as a signed NanoDet bundle without an evaluation, for the box's
 * side of an update, where the bundle's figures do not matter: built for `hardwareClass` on CPU
 */
export function unevaluatedBundle(o: {
  modelDir: string;
  out: string;
  version: number;
  hardwareClass: string;
  key: SigningKey;
}): Promise<ModelManifest> {
  return buildBundle({
    modelDir: o.modelDir,
    out: o.out,
    version: o.version,
    name: 'nanodet',
    evaluations: [],
    gate: DEFAULT_GATE,
    targets: [{ executionProvider: 'cpu', hardwareClass: o.hardwareClass }],
    expiresInDays: 30,
    signWith: o.key,
  });
}
