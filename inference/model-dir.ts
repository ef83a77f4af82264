import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ArgusError } from '../common/errors.ts';
import { sha256Hex } from '../common/hash.ts';
import { cacheDir } from '../common/paths.ts';
import { type ModelDescriptor, readDescriptor } from './descriptor.ts';

/**
 * A model directory: `descriptor.json` and the ONNX file it names, with its sha256. The model
 * factory writes them, a bundle installs them, the detector loads them.
 */

export const DESCRIPTOR_FILE = 'descriptor.json';

/** where installed models are kept: one directory per model with `model.onnx` and `descriptor.json` */
export function modelsDir(): string {
  return join(cacheDir(), 'models');
}

export interface LoadedModel {
  descriptor: ModelDescriptor;
  dir: string;
  onnxPath: string;
  bytes: Uint8Array;
}

/** whether a model reference names a directory (a path) rather than a model in the cache */
export function isModelPath(ref: string): boolean {
  return ref.includes('/') || ref.startsWith('.');
}

/** A model reference is a model name (looked up in the cache) or a directory holding a descriptor. */
export function resolveModelDir(ref: string): string {
  if (isModelPath(ref)) return resolve(ref);
  return join(modelsDir(), ref);
}

/**
 * Loads a model's descriptor and ONNX bytes, verifying the file against the descriptor's sha256 so
 * that a truncated or corrupted file is reported as such instead of failing deep inside the runtime.
 */
export async function loadModel(ref: string): Promise<LoadedModel> {
  const dir = resolveModelDir(ref);
  const descriptorPath = join(dir, DESCRIPTOR_FILE);
  const exists = await stat(descriptorPath).then(
    () => true,
    () => false,
  );
  if (!exists) {
    throw new ArgusError(
      `model "${ref}" is not installed (no ${descriptorPath})`,
      '`argus models list` shows the installed and catalog models; install one with `argus models fetch NAME` or `argus models install BUNDLE`',
    );
  }
  const descriptor = await readDescriptor(descriptorPath);
  const onnxPath = join(dir, descriptor.file);
  const bytes = await readFile(onnxPath).catch((err: Error) => {
    throw new ArgusError(
      `model file ${onnxPath} cannot be read: ${err.message}`,
      'run `argus models fetch --force`',
    );
  });
  const digest = sha256Hex(bytes);
  if (digest !== descriptor.sha256) {
    throw new ArgusError(
      `model file ${onnxPath} is corrupt or truncated: sha256 ${digest} does not match its descriptor (${descriptor.sha256}), ${bytes.length} bytes`,
      `run \`argus models fetch --force ${descriptor.name}\` to rebuild it`,
    );
  }
  return { descriptor, dir, onnxPath, bytes };
}
