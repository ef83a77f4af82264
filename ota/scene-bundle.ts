import { readConfigText } from '../common/config-file.ts';
import { ArgusError } from '../common/errors.ts';
import { sha256Hex } from '../common/hash.ts';
import { writeBundle } from '../models/bundle/build.ts';
import type { SigningKey } from '../models/bundle/keys.ts';
import type { SceneManifest } from '../models/bundle/manifest.ts';
import { parseScene } from '../pipelines/scene/load.ts';

/**
 * Scene bundles: a scene file, validated as the pipeline validates it, packed with a manifest of
 * kind `scene` (name, version, expiry, its classes and rules, the file's sha256) and signed like a
 * model bundle. Signing, verification and installation are those of every bundle
 * (`models/bundle`); a box installs a scene only from a verified bundle.
 */

/** the name of the scene file inside a scene bundle */
export const SCENE_FILE = 'scene.yaml';

const BUNDLE_NAME = /^[a-z0-9][a-z0-9._-]*$/;

export interface BuildSceneBundleOptions {
  /** the scene file (YAML) */
  sceneFile: string;
  /** bundle file to write */
  out: string;
  version: number;
  /** default: the scene's `name` */
  name?: string;
  /** validity from now */
  expiresInDays: number;
  /** sign right away (otherwise `argus models sign` does it later) */
  signWith?: SigningKey;
  now?: Date;
}

export async function buildSceneBundle(options: BuildSceneBundleOptions): Promise<SceneManifest> {
  if (!Number.isInteger(options.version) || options.version < 1) {
    throw new ArgusError(`bundle version ${options.version} is not a positive integer`);
  }
  const text = await readConfigText(options.sceneFile, 'scene');
  const scene = parseScene(text, options.sceneFile);
  const name = options.name ?? scene.name;
  if (!BUNDLE_NAME.test(name)) {
    throw new ArgusError(
      `"${name}" cannot name a bundle`,
      'pass --name with lower-case letters, digits, ".", "_" and "-"',
    );
  }
  const data = Buffer.from(text, 'utf8');
  const now = options.now ?? new Date();
  const manifest: SceneManifest = {
    kind: 'scene',
    schemaVersion: 1,
    name,
    version: options.version,
    created: now.toISOString(),
    expires: new Date(now.getTime() + options.expiresInDays * 86_400_000).toISOString(),
    files: [{ path: SCENE_FILE, sha256: sha256Hex(data), bytes: data.length }],
    scene: {
      file: SCENE_FILE,
      classes: scene.classes ?? [],
      rules: scene.rules.map((r) => ({ id: r.id, type: r.type })),
    },
  };
  await writeBundle(options.out, manifest, [{ name: SCENE_FILE, data }], options.signWith);
  return manifest;
}
