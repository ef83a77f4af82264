import { readFile } from 'node:fs/promises';
import { ArgusError, errorMessage } from './errors.ts';

/** reads a PEM file named by config key `key` (certificate, key or CA); a failure names both */
export async function readPem(file: string, key: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new ArgusError(
      `cannot read ${key} ${file}: ${errorMessage(err)}`,
      `check ${key} (relative to the config file)`,
    );
  }
}
