import { verify } from 'node:crypto';
import { lstat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parseBoundedJson } from '../../common/bounded-json.ts';
import { errorMessage } from '../../common/errors.ts';
import { sha256Hex } from '../../common/hash.ts';
import { createLogger } from '../../common/logger.ts';
import { cacheDir } from '../../common/paths.ts';
import { readDescriptor } from '../../inference/descriptor.ts';
import { DESCRIPTOR_FILE, modelsDir } from '../../inference/model-dir.ts';
import { type BundleLimits, type EntryDigest, readBundleFile } from './container.ts';
import { defaultKeyring, loadKeyring, type UnreadableKey } from './keys.ts';
import {
  type BundleKind,
  MANIFEST_FILE,
  type Manifest,
  type ModelManifest,
  parseManifest,
  type SceneManifest,
  SIGNATURE_FILE,
  type Signature,
  signatureValidator,
} from './manifest.ts';
import { BundleRejected } from './rejection.ts';

/**
 * Verification of a bundle before anything in it is used, in this order: it is read within the
 * container's limits, it is signed, by a key in the keyring, the signature matches the manifest
 * bytes, every file matches its manifest hash (and nothing else is in it), it has not expired, and
 * its version is newer than the installed model or scene of that name — which must be readable
 * when it exists: a version that cannot be read refuses the bundle rather than letting it pass.
 * Each refusal is a BundleRejected with its own reason and message.
 */

const log = createLogger('bundles');

export interface VerifyOptions {
  /** directory of trusted public keys (default: the key directory's `trusted/`) */
  keyring?: string;
  /** where installed models or scenes live, to compare versions (default: by kind, see installedDirOf) */
  installedDir?: string;
  /** default: DEFAULT_BUNDLE_LIMITS */
  limits?: BundleLimits;
  /**
   * the last trusted version of the manifest's kind and name, in place of the look-up in
   * `installedDir` (the device updater keeps its own store, so that an old bundle is never
   * replayed); undefined when none was ever trusted. It throws a BundleRejected to fail closed.
   */
  trustedVersion?: (manifest: Manifest) => Promise<number | undefined>;
  now?: Date;
}

export interface VerifiedDigests {
  path: string;
  manifest: Manifest;
  signature: Signature;
  /** version of the model or scene installed under the bundle's name, if any */
  installedVersion: number | undefined;
  /** key files of the keyring that were skipped because they could not be read */
  unreadableKeys: UnreadableKey[];
}

export interface VerifiedBundle extends VerifiedDigests {
  /** every entry of the bundle, by name */
  entries: Map<string, Uint8Array>;
}

/** the files whose bytes verification reads (the others it knows by their digests) */
export function readByVerification(name: string): boolean {
  return name === MANIFEST_FILE || name === SIGNATURE_FILE || name === DESCRIPTOR_FILE;
}

/** where bundles of a kind are installed by default: the model cache, or the scene store beside it */
export function installedDirOf(kind: BundleKind): string {
  return kind === 'model' ? modelsDir() : join(cacheDir(), 'scenes');
}

/** a signature is one flat object of a few hundred bytes */
const SIGNATURE_LIMITS = { maxBytes: 4096, maxDepth: 1 };

function parseSignature(bytes: Uint8Array, path: string): Signature {
  let raw: unknown;
  try {
    raw = parseBoundedJson(Buffer.from(bytes).toString('utf8'), SIGNATURE_LIMITS);
  } catch {
    raw = undefined;
  }
  if (!signatureValidator.check(raw)) {
    throw new BundleRejected(
      'tampered-manifest',
      `bundle ${path}: ${SIGNATURE_FILE} is not a readable signature`,
      'the bundle was damaged or altered; obtain it again from its publisher',
    );
  }
  return raw;
}

function installedUnreadable(manifest: Manifest, dir: string, problem: string): BundleRejected {
  return new BundleRejected(
    'installed-unreadable',
    `the installed ${manifest.kind} ${manifest.name} in ${dir} has no readable version (${problem}); a bundle is not accepted without one to compare with`,
    `repair or remove ${dir}, then verify the bundle again`,
  );
}

/**
 * the version installed under the manifest's name; undefined only when nothing is installed under
 * that name. Any other failure to read it refuses the bundle: the check fails closed.
 */
async function installedVersion(manifest: Manifest, installedDir: string): Promise<number | undefined> {
  const dir = join(installedDir, manifest.name);
  try {
    await lstat(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw installedUnreadable(manifest, dir, (err as Error).message);
  }
  try {
    if (manifest.kind === 'model') return (await readDescriptor(join(dir, DESCRIPTOR_FILE))).version;
    const file = join(dir, MANIFEST_FILE);
    const installed = parseManifest(await readFile(file), file);
    if (installed.kind !== 'scene') throw new Error(`${file} is the manifest of a ${installed.kind}`);
    return installed.version;
  } catch (err) {
    throw installedUnreadable(manifest, dir, errorMessage(err).split('\n')[0]!);
  }
}

function inconsistent(path: string, what: string): BundleRejected {
  return new BundleRejected(
    'malformed',
    `bundle ${path} is inconsistent: ${what}`,
    'rebuild the bundle with `argus models build`',
  );
}

/** a model bundle's descriptor is the manifest's and names a shipped file with its hash */
function checkModel(manifest: ModelManifest, entries: Map<string, EntryDigest>, path: string): void {
  const descriptorBytes = entries.get(DESCRIPTOR_FILE)?.data;
  const d = manifest.descriptor;
  const model = manifest.files.find((f) => f.path === d.file);
  let shipped: unknown;
  try {
    shipped = JSON.parse(Buffer.from(descriptorBytes ?? []).toString('utf8'));
  } catch {
    shipped = undefined;
  }
  const same =
    isDeepStrictEqual(shipped, d) &&
    model?.sha256 === d.sha256 &&
    d.name === manifest.name &&
    d.version === manifest.version;
  if (!same) {
    throw inconsistent(path, `its ${DESCRIPTOR_FILE} or model file does not match the manifest's descriptor`);
  }
}

/** a scene bundle ships its scene file and nothing else */
function checkScene(manifest: SceneManifest, path: string): void {
  const names = manifest.files.map((f) => f.path);
  if (names.length !== 1 || names[0] !== manifest.scene.file) {
    throw inconsistent(
      path,
      `a scene bundle ships its scene file ${manifest.scene.file} alone, not ${names.join(', ')}`,
    );
  }
}

export async function verifyBundle(path: string, options: VerifyOptions = {}): Promise<VerifiedBundle> {
  return verifyBundleEntries(path, await readBundleFile(path, options.limits), options);
}

/** verifyBundle on the entries of the bundle file at `path`, already read (`path` names it in messages) */
export async function verifyBundleEntries(
  path: string,
  entries: Map<string, Uint8Array>,
  options: VerifyOptions = {},
): Promise<VerifiedBundle> {
  const digests = new Map(
    [...entries].map(([name, data]): [string, EntryDigest] => [
      name,
      { sha256: sha256Hex(data), bytes: data.length, data },
    ]),
  );
  return { ...(await verifyBundleDigests(path, digests, options)), entries };
}

/**
 * verifyBundle on the digests of the bundle's entries (see digestStream), which must hold the bytes
 * of the files `readByVerification` names: the same checks, without the other files' bytes
 */
export async function verifyBundleDigests(
  path: string,
  entries: Map<string, EntryDigest>,
  options: VerifyOptions = {},
): Promise<VerifiedDigests> {
  const keyringDir = options.keyring ?? defaultKeyring();
  const manifestBytes = entries.get(MANIFEST_FILE)?.data;
  if (!manifestBytes) {
    throw new BundleRejected(
      'malformed',
      `${path} is not a bundle: it has no ${MANIFEST_FILE}`,
      'build one with `argus models build`',
    );
  }
  const signatureBytes = entries.get(SIGNATURE_FILE)?.data;
  if (!signatureBytes) {
    throw new BundleRejected(
      'unsigned',
      `bundle ${path} is not signed (it has no ${SIGNATURE_FILE})`,
      'sign it with `argus models sign BUNDLE --key NAME`; devices install only signed bundles',
    );
  }
  const signature = parseSignature(signatureBytes, path);
  const keyring = await loadKeyring(keyringDir);
  for (const k of keyring.unreadable) log.warn({ file: k.file, problem: k.problem }, 'keyring file skipped');
  const trusted = keyring.keys.get(signature.keyId);
  if (!trusted) {
    const skipped = keyring.unreadable.map((k) => `${k.file} (${k.problem})`);
    throw new BundleRejected(
      'unknown-key',
      `bundle ${path} is signed by key ${signature.keyId}, which is not in the keyring ${keyringDir}${skipped.length > 0 ? `; unreadable key files skipped: ${skipped.join(', ')}` : ''}`,
      'if you trust its publisher, add their public key with `argus keys trust FILE.pub`',
    );
  }
  const valid = verify(null, manifestBytes, trusted.key, Buffer.from(signature.signature, 'base64'));
  if (!valid) {
    throw new BundleRejected(
      'tampered-manifest',
      `bundle ${path}: the manifest does not match its signature by key ${signature.keyId}; it was changed after signing`,
      'do not install it; obtain the bundle again from its publisher',
    );
  }
  const manifest = parseManifest(manifestBytes, `${MANIFEST_FILE} of bundle ${path}`);

  const listed = new Set(manifest.files.map((f) => f.path));
  for (const f of manifest.files) {
    const found = entries.get(f.path);
    if (!found) {
      throw new BundleRejected(
        'tampered-file',
        `bundle ${path}: ${f.path} is listed in the manifest but missing`,
        'do not install it; obtain the bundle again from its publisher',
      );
    }
    const digest = found.sha256;
    if (digest !== f.sha256 || found.bytes !== f.bytes) {
      throw new BundleRejected(
        'tampered-file',
        `bundle ${path}: ${f.path} does not match the manifest (sha256 ${digest.slice(0, 16)}…, ${found.bytes} bytes; signed ${f.sha256.slice(0, 16)}…, ${f.bytes} bytes)`,
        'do not install it; obtain the bundle again from its publisher',
      );
    }
  }
  const extra = [...entries.keys()].filter(
    (n) => n !== MANIFEST_FILE && n !== SIGNATURE_FILE && !listed.has(n),
  );
  if (extra.length > 0) {
    throw new BundleRejected(
      'tampered-file',
      `bundle ${path} holds ${extra.map((e) => `"${e}"`).join(', ')}, which its manifest does not list`,
      'do not install it; obtain the bundle again from its publisher',
    );
  }

  if (manifest.kind === 'model') checkModel(manifest, entries, path);
  else checkScene(manifest, path);

  const now = options.now ?? new Date();
  const expires = new Date(manifest.expires);
  if (expires.getTime() <= now.getTime()) {
    const days = Math.floor((now.getTime() - expires.getTime()) / 86_400_000);
    throw new BundleRejected(
      'expired',
      `bundle ${path} (${manifest.name} v${manifest.version}) expired on ${manifest.expires}${days > 0 ? `, ${days} day(s) ago` : ''}`,
      `build and sign a new bundle of this ${manifest.kind}`,
    );
  }

  const installed = options.trustedVersion
    ? await options.trustedVersion(manifest)
    : await installedVersion(manifest, options.installedDir ?? installedDirOf(manifest.kind));
  if (installed !== undefined && manifest.version <= installed) {
    throw new BundleRejected(
      'not-newer',
      `bundle ${path} has ${manifest.name} v${manifest.version}, which is not newer than the ${options.trustedVersion ? 'last trusted' : 'installed'} v${installed}`,
      `bundles must carry a higher version than the installed ${manifest.kind}; build one with a higher --version`,
    );
  }
  return {
    path,
    manifest,
    signature,
    installedVersion: installed,
    unreadableKeys: keyring.unreadable,
  };
}
