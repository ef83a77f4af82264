import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ArgusError } from '../../common/errors.ts';
import { stagingPath, writeFileAtomic } from '../../common/fs-atomic.ts';

/**
 * Ed25519 keys for bundles (models and scenes). A key directory holds `signing/<name>.key` (private, PKCS#8 PEM,
 * mode 0600, only on the machine that builds bundles) and `trusted/` — the keyring: public keys
 * (SPKI PEM, `<key id>.pub`) whose signatures devices accept. A key id is the first 16 hex digits
 * of the sha256 of the public key's DER encoding, computed from the key itself, never from a file
 * name.
 */

/** `$ARGUS_KEYS_DIR`, else `$XDG_CONFIG_HOME/argus/keys`, else `~/.config/argus/keys` */
export function keysDir(): string {
  if (process.env.ARGUS_KEYS_DIR) return resolve(process.env.ARGUS_KEYS_DIR);
  const xdg = process.env.XDG_CONFIG_HOME;
  return join(xdg ? resolve(xdg) : join(homedir(), '.config'), 'argus', 'keys');
}

export function defaultKeyring(): string {
  return join(keysDir(), 'trusted');
}

export function keyId(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

const KEY_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export interface GeneratedKey {
  keyId: string;
  privateKeyPath: string;
  publicKeyPath: string;
}

/**
 * Creates a signing key pair named `name` in `dir` and adds its public key to the keyring of the
 * same directory. Refuses to replace an existing key of that name.
 */
export async function generateSigningKey(name: string, dir: string = keysDir()): Promise<GeneratedKey> {
  if (!KEY_NAME.test(name)) {
    throw new ArgusError(
      `key name "${name}" is not valid`,
      'use lower-case letters, digits, ".", "_" and "-"',
    );
  }
  const privateKeyPath = join(dir, 'signing', `${name}.key`);
  if (
    await stat(privateKeyPath).then(
      () => true,
      () => false,
    )
  ) {
    throw new ArgusError(
      `a signing key named "${name}" already exists (${privateKeyPath})`,
      'choose another name; replacing a key would orphan every bundle it signed',
    );
  }
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const id = keyId(publicKey);
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  await mkdir(join(dir, 'signing'), { recursive: true, mode: 0o700 });
  // the private key is created with mode 0600 from its first byte, then renamed into place
  const staged = stagingPath(privateKeyPath);
  try {
    await writeFile(staged, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, {
      mode: 0o600,
      flag: 'wx',
    });
    await rename(staged, privateKeyPath);
  } catch (err) {
    await rm(staged, { force: true });
    throw err;
  }
  const publicKeyPath = join(dir, 'signing', `${name}.pub`);
  await writeFileAtomic(publicKeyPath, publicPem);
  await writeFileAtomic(join(dir, 'trusted', `${id}.pub`), publicPem);
  return { keyId: id, privateKeyPath, publicKeyPath };
}

export interface SigningKey {
  privateKey: KeyObject;
  keyId: string;
}

/** a private key by name (in the key directory's `signing/`) or by path to its PEM file */
export async function loadSigningKey(nameOrPath: string, dir: string = keysDir()): Promise<SigningKey> {
  const path =
    nameOrPath.includes('/') || nameOrPath.endsWith('.key')
      ? resolve(nameOrPath)
      : join(dir, 'signing', `${nameOrPath}.key`);
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch {
    throw new ArgusError(`signing key ${path} cannot be read`, 'create one with `argus keys generate NAME`');
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (err) {
    throw new ArgusError(`${path} is not a private key: ${(err as Error).message}`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new ArgusError(`${path} is a ${privateKey.asymmetricKeyType} key; bundles are signed with ed25519`);
  }
  return { privateKey, keyId: keyId(createPublicKey(privateKey)) };
}

function parsePublicKey(pem: string, path: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new ArgusError(`${path} is not a public key: ${(err as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new ArgusError(`${path} is a ${key.asymmetricKeyType} key; bundles are signed with ed25519`);
  }
  return key;
}

/** adds a public key (PEM file) to a keyring; returns its key id */
export async function trustPublicKey(file: string, keyring: string = defaultKeyring()): Promise<string> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (err) {
    throw new ArgusError(`cannot read public key ${file}: ${(err as Error).message}`);
  }
  const key = parsePublicKey(pem, file);
  const id = keyId(key);
  await writeFileAtomic(join(keyring, `${id}.pub`), key.export({ type: 'spki', format: 'pem' }) as string);
  return id;
}

export interface TrustedKey {
  key: KeyObject;
  /** the file it was read from */
  file: string;
}

/** a key file of the keyring that could not be used, and why */
export interface UnreadableKey {
  file: string;
  problem: string;
}

export interface Keyring {
  /** by key id */
  keys: Map<string, TrustedKey>;
  /** files that are not readable ed25519 public keys: skipped, the other keys still count */
  unreadable: UnreadableKey[];
}

/** a public key file is a few hundred bytes; anything much larger is not one */
const MAX_KEY_FILE_BYTES = 64 * 1024;

async function readKeyFile(file: string): Promise<KeyObject> {
  const info = await stat(file);
  if (!info.isFile()) throw new ArgusError(`${file} is not a regular file`);
  if (info.size > MAX_KEY_FILE_BYTES)
    throw new ArgusError(`${file} is ${info.size} bytes, too large for a key`);
  return parsePublicKey(await readFile(file, 'utf8'), file);
}

/**
 * Every public key of a keyring directory (`*.pub`), by key id; a missing directory is an empty
 * keyring. A file that cannot be read or is not an ed25519 public key is listed in `unreadable`
 * with its problem and does not keep the other keys from counting.
 */
export async function loadKeyring(keyring: string = defaultKeyring()): Promise<Keyring> {
  const keys = new Map<string, TrustedKey>();
  const unreadable: UnreadableKey[] = [];
  let names: string[];
  try {
    names = await readdir(keyring);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      unreadable.push({ file: keyring, problem: (err as Error).message });
    names = [];
  }
  for (const name of names.filter((n) => n.endsWith('.pub')).sort()) {
    const file = join(keyring, name);
    try {
      const key = await readKeyFile(file);
      keys.set(keyId(key), { key, file });
    } catch (err) {
      unreadable.push({ file, problem: err instanceof ArgusError ? err.message : (err as Error).message });
    }
  }
  return { keys, unreadable };
}
