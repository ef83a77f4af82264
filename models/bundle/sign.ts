import { sign } from 'node:crypto';
import { ArgusError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/fs-atomic.ts';
import { sha256Hex } from '../../common/hash.ts';
import { type BundleEntry, packEntries, readBundleFile } from './container.ts';
import type { SigningKey } from './keys.ts';
import { MANIFEST_FILE, parseManifest, SIGNATURE_FILE, type Signature } from './manifest.ts';

/** the detached signature over the exact manifest bytes, and its bundle entry */
export function signManifest(
  manifestBytes: Uint8Array,
  key: SigningKey,
): { signature: Signature; entry: BundleEntry } {
  const signature: Signature = {
    algorithm: 'ed25519',
    keyId: key.keyId,
    signature: sign(null, manifestBytes, key.privateKey).toString('base64'),
  };
  return {
    signature,
    entry: { name: SIGNATURE_FILE, data: Buffer.from(`${JSON.stringify(signature, null, 2)}\n`) },
  };
}

/**
 * Signs a bundle in place (replacing any previous signature). Refuses a bundle whose files do not
 * match its manifest: a signature vouches for the files, so they are checked before signing.
 */
export async function signBundle(path: string, key: SigningKey): Promise<Signature> {
  const entries = await readBundleFile(path);
  const manifestBytes = entries.get(MANIFEST_FILE);
  if (!manifestBytes)
    throw new ArgusError(`bundle ${path} has no ${MANIFEST_FILE}`, 'build it with `argus models build`');
  const manifest = parseManifest(manifestBytes, `${MANIFEST_FILE} of bundle ${path}`);
  for (const f of manifest.files) {
    const data = entries.get(f.path);
    if (!data || sha256Hex(data) !== f.sha256) {
      throw new ArgusError(
        `bundle ${path}: ${f.path} ${data ? 'does not match its manifest hash' : 'is missing'}; refusing to sign`,
        'rebuild the bundle with `argus models build`',
      );
    }
  }
  const { signature, entry } = signManifest(manifestBytes, key);
  const rest = [...entries]
    .filter(([name]) => name !== MANIFEST_FILE && name !== SIGNATURE_FILE)
    .map(([name, data]) => ({ name, data }));
  await writeFileAtomic(path, packEntries([{ name: MANIFEST_FILE, data: manifestBytes }, entry, ...rest]));
  return signature;
}
