import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { sha256Hex } from '../../common/hash.ts';
import type { ModelDescriptor } from '../../inference/descriptor.ts';
import { modelsDir } from '../../inference/model-dir.ts';
import { buildBundle } from '../../models/bundle/build.ts';
import type { SigningKey } from '../../models/bundle/keys.ts';
import type { BundleTarget } from '../../models/bundle/manifest.ts';
import { DEFAULT_GATE } from '../../models/evaluate/gate.ts';
import { buildSceneBundle } from '../../ota/scene-bundle.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
export const CAMPUS_SCENE = join(ROOT, 'scenes', 'vtest-campus.yaml');

/** the descriptor of the catalog's centernet, the template of the test models */
async function templateDescriptor(): Promise<ModelDescriptor> {
  await ensureCatalogModels();
  return JSON.parse(await readFile(join(modelsDir(), 'centernet', 'descriptor.json'), 'utf8'));
}

export interface ModelBundleOptions {
  name: string;
  version: number;
  targets: BundleTarget[];
  key: SigningKey;
  /** bytes of the model file (random, from `seed`) */
  modelBytes?: number;
  seed?: string;
  expiresInDays?: number;
  now?: Date;
}

/** deterministic pseudo-random bytes: the same seed gives the same model file */
function bytesOf(seed: string, n: number): Buffer {
  const out = Buffer.alloc(n);
  let block = createHash('sha256').update(seed).digest();
  for (let i = 0; i < n; i += block.length) {
    block.copy(out, i);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/**
 * A model bundle built by the model factory's own `buildBundle` from a model directory whose model
 * file holds `modelBytes` bytes (centernet's descriptor, so the bundle is a well-formed one; the
 * registry never runs the model)
 */
export async function modelBundle(dir: string, o: ModelBundleOptions): Promise<string> {
  const modelDir = join(dir, `model-${o.name}-${o.version}-${randomBytes(4).toString('hex')}`);
  await mkdir(modelDir, { recursive: true });
  const bytes = bytesOf(
    o.seed ?? `${o.name}-${o.version}-${JSON.stringify(o.targets)}`,
    o.modelBytes ?? 4096,
  );
  const descriptor = {
    ...(await templateDescriptor()),
    name: o.name,
    file: 'model.onnx',
    sha256: sha256Hex(bytes),
  };
  await writeFile(join(modelDir, 'model.onnx'), bytes);
  await writeFile(join(modelDir, 'descriptor.json'), `${JSON.stringify(descriptor, null, 2)}\n`);
  const out = join(dir, `${o.name}-v${o.version}-${randomBytes(4).toString('hex')}.argus-model`);
  await buildBundle({
    modelDir,
    out,
    version: o.version,
    name: o.name,
    evaluations: [],
    gate: DEFAULT_GATE,
    targets: o.targets,
    expiresInDays: o.expiresInDays ?? 30,
    signWith: o.key,
    ...(o.now ? { now: o.now } : {}),
  });
  return out;
}

/** a signed scene bundle of the campus scene */
export async function sceneBundle(
  dir: string,
  o: { name?: string; version: number; key: SigningKey; expiresInDays?: number; now?: Date },
): Promise<string> {
  const out = join(
    dir,
    `scene-${o.name ?? 'campus'}-v${o.version}-${randomBytes(4).toString('hex')}.argus-scene`,
  );
  await buildSceneBundle({
    sceneFile: CAMPUS_SCENE,
    out,
    version: o.version,
    expiresInDays: o.expiresInDays ?? 30,
    signWith: o.key,
    ...(o.name ? { name: o.name } : {}),
    ...(o.now ? { now: o.now } : {}),
  });
  return out;
}
