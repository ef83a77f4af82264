import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildDirAtomic, sweepStaging } from '../../common/fs-atomic.ts';
import { LINEAGE_FILE } from './lineage.ts';
import { MANIFEST_FILE, SIGNATURE_FILE } from './manifest.ts';
import { installedDirOf, type VerifiedBundle, type VerifyOptions, verifyBundle } from './verify.ts';

/**
 * Verifies a bundle and installs it as the directory `<installed>/<name>`: its files and the signed
 * manifest and signature (kept as the record of what was installed, and of its version), and for a
 * model its lineage. The directory is replaced atomically, so a running detector never sees half a
 * model; `loadModel(name)` accepts an installed model, and an installed scene is
 * `<installed>/<name>/<its scene file>`.
 */
export async function installBundle(
  path: string,
  options: VerifyOptions = {},
): Promise<VerifiedBundle & { dir: string }> {
  const verified = await verifyBundle(path, options);
  const { manifest, entries } = verified;
  const installedDir = options.installedDir ?? installedDirOf(manifest.kind);
  const dir = join(installedDir, manifest.name);
  await sweepStaging(installedDir);
  await buildDirAtomic(dir, async (staging) => {
    for (const f of manifest.files) await writeFile(join(staging, f.path), entries.get(f.path)!);
    await writeFile(join(staging, MANIFEST_FILE), entries.get(MANIFEST_FILE)!);
    await writeFile(join(staging, SIGNATURE_FILE), entries.get(SIGNATURE_FILE)!);
    if (manifest.kind === 'model')
      await writeFile(join(staging, LINEAGE_FILE), `${JSON.stringify(manifest.lineage, null, 2)}\n`);
  });
  return { ...verified, dir };
}
