import { verify } from 'node:crypto';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { ArgusError } from '../../common/errors.ts';
import { sha256Hex } from '../../common/hash.ts';
import { readDescriptor } from '../../inference/descriptor.ts';
import { DESCRIPTOR_FILE, modelsDir } from '../../inference/model-dir.ts';
import { readBundleFile } from './container.ts';
import { defaultKeyring, loadKeyring } from './keys.ts';
import {
  MANIFEST_FILE,
  type Manifest,
  parseManifest,
  SIGNATURE_FILE,
  type Signature,
  signatureValidator,
} from './manifest.ts';

/**
 * Verification of a bundle before anything in it is used, in this order: it is signed, by a key in
 * the keyring, the signature matches the manifest bytes, every file matches its manifest hash (and
 * nothing else is in it), it has not expired, and its version is newer than the installed model of
 * that name. Each refusal is a BundleRejected with its own reason and message.
 */

export type RejectionReason =
  | 'unsigned'
  | 'unknown-key'
  | 'tampered-manifest'
  | 'tampered-file'
  | 'expired'
  | 'not-newer';

export class BundleRejected extends ArgusError {
  constructor(
    readonly reason: RejectionReason,
    message: string,
    hint: string,
  ) {
    super(message, hint);
    this.name = 'BundleRejected';
  }
}

export interface VerifyOptions {
  /** directory of trusted public keys (default: the key directory's `trusted/`) */
  keyring?: string;
  /** where installed models live, to compare versions (default: the model cache) */
  installedDir?: string;
  now?: Date;
}

export interface VerifiedBundle {
  path: string;
  manifest: Manifest;
  signature: Signature;
  /** every entry of the bundle, by name */
  entries: Map<string, Uint8Array>;
  /** version of the model installed under the bundle's name, if any */
  installedVersion: number | undefined;
}

function parseSignature(bytes: Uint8Array, path: string): Signature {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
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

async function installedVersion(name: string, installedDir: string): Promise<number | undefined> {
  try {
    return (await readDescriptor(join(installedDir, name, DESCRIPTOR_FILE))).version;
  } catch {
    return undefined;
  }
}

/** the shipped descriptor is the manifest's and names a shipped file with its hash */
function checkConsistent(manifest: Manifest, entries: Map<string, Uint8Array>, path: string): void {
  const descriptorBytes = entries.get(DESCRIPTOR_FILE);
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
    throw new ArgusError(
      `bundle ${path} is inconsistent: its ${DESCRIPTOR_FILE} or model file does not match the manifest's descriptor`,
      'rebuild the bundle with `argus models build`',
    );
  }
}

export async function verifyBundle(path: string, options: VerifyOptions = {}): Promise<VerifiedBundle> {
  return verifyBundleEntries(path, await readBundleFile(path), options);
}

/** verifyBundle on the entries of the bundle file at `path`, already read (`path` names it in messages) */
export async function verifyBundleEntries(
  path: string,
  entries: Map<string, Uint8Array>,
  options: VerifyOptions = {},
): Promise<VerifiedBundle> {
  const keyringDir = options.keyring ?? defaultKeyring();
  const manifestBytes = entries.get(MANIFEST_FILE);
  if (!manifestBytes) {
    throw new ArgusError(`${path} is not a model bundle: it has no ${MANIFEST_FILE}`);
  }
  const signatureBytes = entries.get(SIGNATURE_FILE);
  if (!signatureBytes) {
    throw new BundleRejected(
      'unsigned',
      `bundle ${path} is not signed (it has no ${SIGNATURE_FILE})`,
      'sign it with `argus models sign BUNDLE --key NAME`; devices install only signed bundles',
    );
  }
  const signature = parseSignature(signatureBytes, path);
  const keyring = await loadKeyring(keyringDir);
  const trusted = keyring.get(signature.keyId);
  if (!trusted) {
    throw new BundleRejected(
      'unknown-key',
      `bundle ${path} is signed by key ${signature.keyId}, which is not in the keyring ${keyringDir}`,
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
    const data = entries.get(f.path);
    if (!data) {
      throw new BundleRejected(
        'tampered-file',
        `bundle ${path}: ${f.path} is listed in the manifest but missing`,
        'do not install it; obtain the bundle again from its publisher',
      );
    }
    const digest = sha256Hex(data);
    if (digest !== f.sha256 || data.length !== f.bytes) {
      throw new BundleRejected(
        'tampered-file',
        `bundle ${path}: ${f.path} does not match the manifest (sha256 ${digest.slice(0, 16)}…, ${data.length} bytes; signed ${f.sha256.slice(0, 16)}…, ${f.bytes} bytes)`,
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

  checkConsistent(manifest, entries, path);

  const now = options.now ?? new Date();
  const expires = new Date(manifest.expires);
  if (expires.getTime() <= now.getTime()) {
    const days = Math.floor((now.getTime() - expires.getTime()) / 86_400_000);
    throw new BundleRejected(
      'expired',
      `bundle ${path} (${manifest.name} v${manifest.version}) expired on ${manifest.expires}${days > 0 ? `, ${days} day(s) ago` : ''}`,
      'build and sign a new bundle of this model',
    );
  }

  const installed = await installedVersion(manifest.name, options.installedDir ?? modelsDir());
  if (installed !== undefined && manifest.version <= installed) {
    throw new BundleRejected(
      'not-newer',
      `bundle ${path} has ${manifest.name} v${manifest.version}, which is not newer than the installed v${installed}`,
      'bundles must carry a higher version than the installed model; build one with a higher --version',
    );
  }
  return { path, manifest, signature, entries, installedVersion: installed };
}
