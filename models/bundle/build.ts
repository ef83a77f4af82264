import { ArgusError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/fs-atomic.ts';
import { sha256Hex } from '../../common/hash.ts';
import { descriptorValidator } from '../../inference/descriptor.ts';
import { DESCRIPTOR_FILE, loadModel } from '../../inference/model-dir.ts';
import { enforceGate, type GateConfig } from '../evaluate/gate.ts';
import type { EvaluationReport } from '../evaluate/report.ts';
import { formatFrameSet, frameSetSource } from '../quant/frames.ts';
import { type BundleEntry, DEFAULT_BUNDLE_LIMITS, packEntries } from './container.ts';
import type { SigningKey } from './keys.ts';
import { readLineage } from './lineage.ts';
import {
  type BundleMetrics,
  type BundleTarget,
  MANIFEST_FILE,
  type Manifest,
  type ModelManifest,
  manifestValidator,
} from './manifest.ts';
import { signManifest } from './sign.ts';

/**
 * Packs a model directory into a bundle: the ONNX file and the descriptor (renamed and re-versioned
 * to the bundle's name and version), and a manifest with lineage, targets, metrics, file hashes and
 * expiry. A derived model (one with factory steps in its lineage) is only packed with evaluation
 * reports of this exact file that pass the gate.
 */

export interface BuildBundleOptions {
  /** model directory (descriptor.json + ONNX file, lineage.json for derived models) */
  modelDir: string;
  /** bundle file to write */
  out: string;
  version: number;
  /** default: the descriptor's name */
  name?: string;
  /** evaluation reports (one per hardware class) */
  evaluations: readonly EvaluationReport[];
  gate: GateConfig;
  /** default: one CPU target per evaluated hardware class */
  targets?: readonly BundleTarget[];
  /** validity from now */
  expiresInDays: number;
  /** sign right away (otherwise `argus models sign` does it later) */
  signWith?: SigningKey;
  now?: Date;
}

function metricsOf(report: EvaluationReport): BundleMetrics {
  return {
    reference: report.reference,
    map50: report.map50,
    latencyRatio: report.latency.ratio,
    latencyP50Ms: report.latency.candidateP50Ms,
    referenceLatencyP50Ms: report.latency.referenceP50Ms,
    threads: report.latency.threads,
    frames: formatFrameSet(report.frames),
    video: frameSetSource(report.frames),
    evaluatedAt: report.createdAt,
  };
}

export async function buildBundle(options: BuildBundleOptions): Promise<ModelManifest> {
  const model = await loadModel(options.modelDir);
  const lineage = await readLineage(model.dir);
  const name = options.name ?? model.descriptor.name;
  if (!Number.isInteger(options.version) || options.version < 1) {
    throw new ArgusError(`bundle version ${options.version} is not a positive integer`);
  }
  for (const report of options.evaluations) {
    if (report.candidate.sha256 !== model.descriptor.sha256) {
      throw new ArgusError(
        `evaluation of ${report.candidate.name} (${report.hardwareClass}, ${report.createdAt}) is of another model file (sha256 ${report.candidate.sha256.slice(0, 12)}…, this one is ${model.descriptor.sha256.slice(0, 12)}…)`,
        'evaluate this model file with `argus models evaluate` and build with that report',
      );
    }
    enforceGate(report, options.gate);
  }
  if (lineage.steps.length > 0 && options.evaluations.length === 0) {
    throw new ArgusError(
      `${model.descriptor.name} was derived (${lineage.steps.map((s) => s.kind).join(' → ')}) and has no evaluation`,
      'run `argus models evaluate` on it first; a derived model must pass the gate before it is packaged',
    );
  }
  const classes = [...new Set(options.evaluations.map((e) => e.hardwareClass))];
  const targets =
    options.targets ?? classes.map((hardwareClass) => ({ executionProvider: 'cpu', hardwareClass }));
  if (targets.length === 0) {
    throw new ArgusError('a bundle needs at least one target', 'pass --target PROVIDER:HARDWARE_CLASS');
  }

  const descriptor = { ...model.descriptor, name, version: options.version };
  descriptorValidator.parse(descriptor, 'bundle descriptor');
  const descriptorBytes = Buffer.from(`${JSON.stringify(descriptor, null, 2)}\n`);
  const files: BundleEntry[] = [
    { name: descriptor.file, data: model.bytes },
    { name: DESCRIPTOR_FILE, data: descriptorBytes },
  ];
  const now = options.now ?? new Date();
  const manifest: ModelManifest = {
    kind: 'model',
    schemaVersion: 1,
    name,
    version: options.version,
    created: now.toISOString(),
    expires: new Date(now.getTime() + options.expiresInDays * 86_400_000).toISOString(),
    lineage,
    targets: [...targets],
    descriptor,
    labels: descriptor.labels,
    metrics: Object.fromEntries(options.evaluations.map((e) => [e.hardwareClass, metricsOf(e)])),
    files: files.map((f) => ({ path: f.name, sha256: sha256Hex(f.data), bytes: f.data.length })),
  };
  await writeBundle(options.out, manifest, files, options.signWith);
  return manifest;
}

/**
 * Writes a bundle of any kind: the manifest (validated; its file list must be that of `files`,
 * with their hashes), the signature when a key is given, then the files. Atomic.
 */
export async function writeBundle(
  out: string,
  manifest: Manifest,
  files: readonly BundleEntry[],
  signWith?: SigningKey,
): Promise<void> {
  manifestValidator.parse(manifest, 'bundle manifest');
  const listed = files.map((f) => ({ path: f.name, sha256: sha256Hex(f.data), bytes: f.data.length }));
  if (JSON.stringify(listed) !== JSON.stringify(manifest.files)) {
    throw new ArgusError('the manifest does not list exactly the files of the bundle');
  }
  const manifestBytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
  const entries: BundleEntry[] = [{ name: MANIFEST_FILE, data: manifestBytes }];
  if (signWith) entries.push(signManifest(manifestBytes, signWith).entry);
  const packed = packEntries([...entries, ...files]);
  const limits = DEFAULT_BUNDLE_LIMITS;
  const largest = Math.max(...files.map((f) => f.data.length));
  if (
    packed.length > limits.maxExpandedBytes ||
    largest > limits.maxFileBytes ||
    files.length + 2 > limits.maxFiles
  ) {
    throw new ArgusError(
      `bundle ${manifest.name} v${manifest.version} would be ${packed.length} bytes in ${files.length + 2} files (largest ${largest} bytes): beyond what a box reads (${limits.maxExpandedBytes} bytes, ${limits.maxFileBytes} per file, ${limits.maxFiles} files)`,
      'a box would refuse it; make the model smaller (e.g. `argus models quantize`)',
    );
  }
  await writeFileAtomic(out, packed);
}
