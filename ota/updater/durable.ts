import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseBoundedJson } from '../../common/bounded-json.ts';

/**
 * Durable files for the updater's state: a write is staged beside its target, fsynced, renamed
 * over it and the directory fsynced, so after a SIGKILL or a power loss a reader finds the old
 * file or the whole new one, never a mix.
 */

export async function fsyncDir(dir: string): Promise<void> {
  const fd = await open(dir, 'r');
  try {
    await fd.sync();
  } finally {
    await fd.close();
  }
}

/** writes `data` to `path` (the file is complete and on disk before it is renamed in) */
export async function writeDurable(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const staged = join(dirname(path), `.${process.pid}-${randomBytes(6).toString('hex')}.partial`);
  try {
    const fd = await open(staged, 'wx', mode);
    try {
      await fd.writeFile(data);
      await fd.sync();
    } finally {
      await fd.close();
    }
    await rename(staged, path);
  } catch (err) {
    await rm(staged, { force: true });
    throw err;
  }
  await fsyncDir(dirname(path));
}

export async function writeJsonDurable(path: string, value: unknown): Promise<void> {
  await writeDurable(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** the updater's own files are a few KiB; anything beyond these is not one of them */
const STATE_LIMITS = { maxBytes: 1 << 20, maxDepth: 16 };

/**
 * the JSON in `path`; undefined when the file does not exist. Any other failure (unreadable, not
 * JSON, beyond the limits) throws: the callers decide how to fail closed.
 */
export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return parseBoundedJson(text, STATE_LIMITS);
}
