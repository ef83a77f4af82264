import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ArgusError } from '../../common/errors.ts';
import { unpackStream } from '../../models/bundle/container.ts';
import { loadSigningKey } from '../../models/bundle/keys.ts';
import { readModelDescriptor } from '../../models/store.ts';
import { buildSceneBundle, SCENE_FILE } from '../../ota/scene-bundle.ts';
import { parseScene } from '../../pipelines/scene/load.ts';
import type { Scene } from '../../pipelines/scene/schema.ts';
import type { ArtifactRegistry, Published } from '../artifacts/registry.ts';
import type { SceneEditorSettings } from '../config.ts';
import { SceneRefused } from './refused.ts';

/** rules of one scene from the editor at most, and vertices of one polygon */
export const MAX_EDITOR_RULES = 64;
export const MAX_POLYGON_POINTS = 64;

/**
 * The scene editor's scenes: validated as a box validates them (the pipeline's scene schema and
 * geometry, the preview model's classes), published as a scene bundle signed with the operator's
 * key (`scenes.signingKey`, never one of the repository) into the artifact registry, which
 * verifies it against its keyring as it verifies every upload; and read back out of a published
 * scene artifact to edit it again.
 */
export class SceneBundles {
  constructor(
    private readonly settings: SceneEditorSettings,
    private readonly registry: ArtifactRegistry,
  ) {}

  /** a scene as the editor sends it, validated; the problems, each with its path, otherwise */
  async validate(data: Record<string, unknown>): Promise<{ scene: Scene; text: string }> {
    const rules = Array.isArray(data.rules) ? data.rules : [];
    if (rules.length > MAX_EDITOR_RULES)
      throw new SceneRefused(`the scene has ${rules.length} rules, more than ${MAX_EDITOR_RULES}`, 400);
    for (const [i, r] of rules.entries()) {
      const polygon = (r as { polygon?: unknown } | null)?.polygon;
      if (Array.isArray(polygon) && polygon.length > MAX_POLYGON_POINTS)
        throw new SceneRefused(
          `rules.${i}.polygon has ${polygon.length} vertices, more than ${MAX_POLYGON_POINTS}`,
          400,
        );
    }
    const text = stringify(data);
    const labels = await readModelDescriptor(this.settings.model).then(
      (d) => d.labels,
      () => undefined,
    );
    try {
      return { scene: parseScene(text, 'the scene', labels), text };
    } catch (err) {
      if (err instanceof ArgusError) throw new SceneRefused(err.message, 400, err.hint);
      throw err;
    }
  }

  /** the next version of scene `name` in the registry (1 for a new one) */
  async nextVersion(name: string): Promise<number> {
    let max = 0;
    let after: string | undefined;
    do {
      const page = await this.registry.store.list({ kind: 'scene', name, limit: 500, after });
      for (const a of page.artifacts) max = Math.max(max, a.version);
      after = page.next ?? undefined;
    } while (after);
    return max + 1;
  }

  /** builds, signs and publishes the scene as the next version of its name */
  async publish(data: Record<string, unknown>, publishedBy: string): Promise<Published> {
    const { scene, text } = await this.validate(data);
    if (!this.settings.signingKey)
      throw new SceneRefused(
        'this control plane has no key to sign scenes with',
        409,
        'set scenes.signingKey in the control plane config to a key of `argus keys generate` (its public key in artifacts.keyring and in the boxes’ ota.keyring)',
      );
    const key = await loadSigningKey(this.settings.signingKey);
    const dir = await mkdtemp(join(tmpdir(), 'argus-scene-'));
    try {
      const sceneFile = join(dir, SCENE_FILE);
      await writeFile(sceneFile, text);
      const out = join(dir, 'scene.bundle');
      await buildSceneBundle({
        sceneFile,
        out,
        version: await this.nextVersion(scene.name),
        expiresInDays: this.settings.expiresInDays,
        signWith: key,
      });
      return await this.registry.publish(createReadStream(out), publishedBy);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** the scene inside a published scene artifact, as data to edit */
  async read(id: string): Promise<Record<string, unknown>> {
    const artifact = await this.registry.store.get(id);
    if (artifact?.kind !== 'scene')
      throw new SceneRefused(`no scene artifact ${id}`, 404, 'GET /api/v1/artifacts?kind=scene lists them');
    const bytes = await this.registry.blobs.get(id);
    if (!bytes) throw new SceneRefused(`the bytes of artifact ${id} are gone`, 404);
    const files = await unpackStream(bytes, `artifact ${id}`);
    const file = files.get(SCENE_FILE);
    if (!file) throw new SceneRefused(`artifact ${id} holds no ${SCENE_FILE}`, 404);
    // with the schema's defaults filled in: the form shows every value the box will use
    const scene = parseScene(Buffer.from(file).toString('utf8'), `artifact ${id}`);
    return JSON.parse(JSON.stringify(scene)) as Record<string, unknown>;
  }
}
