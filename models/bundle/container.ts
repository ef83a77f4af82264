import { readFile } from 'node:fs/promises';
import { Header, Parser, type ReadEntry } from 'tar';
import { ArgusError } from '../../common/errors.ts';

/**
 * The bundle container: a plain POSIX tar of a few regular files with simple names, built and read
 * in memory. Reading never touches the filesystem, so a hostile archive (links, `../` paths,
 * devices) cannot write anywhere; such entries are refused.
 */

export interface BundleEntry {
  name: string;
  data: Uint8Array;
}

const BLOCK = 512;
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export function isSafeEntryName(name: string): boolean {
  return SAFE_NAME.test(name) && !name.includes('..');
}

export function packEntries(entries: readonly BundleEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    if (!isSafeEntryName(entry.name))
      throw new Error(`bundle entry name "${entry.name}" is not a simple file name`);
    const header = Buffer.alloc(BLOCK);
    new Header({
      path: entry.name,
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: entry.data.length,
      mtime: new Date(0),
      type: 'File',
    }).encode(header, 0);
    parts.push(header, Buffer.from(entry.data));
    const pad = (BLOCK - (entry.data.length % BLOCK)) % BLOCK;
    if (pad > 0) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

/** the files of a bundle by name; throws an ArgusError when `bytes` is not a tar of plain files */
export async function unpackEntries(bytes: Uint8Array, what: string): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  const problems: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        const name = entry.path;
        if (entry.type !== 'File' || !isSafeEntryName(name)) {
          problems.push(`entry "${name}" (${entry.type}) is not a plain file with a simple name`);
          entry.resume();
          return;
        }
        if (files.has(name)) problems.push(`entry "${name}" appears twice`);
        const chunks: Buffer[] = [];
        entry.on('data', (c: Buffer) => chunks.push(c));
        entry.on('end', () => files.set(name, Buffer.concat(chunks)));
      },
    });
    parser.on('error', (err: Error) => reject(err));
    parser.on('end', () => resolve());
    parser.end(Buffer.from(bytes));
  }).catch((err: Error) => {
    throw new ArgusError(`${what} is not a model bundle (not a readable tar archive: ${err.message})`);
  });
  if (problems.length > 0)
    throw new ArgusError(`${what} is not a valid model bundle:\n  ${problems.join('\n  ')}`);
  if (files.size === 0) throw new ArgusError(`${what} is not a model bundle (no files in it)`);
  return files;
}

/** the entries of a bundle file */
export async function readBundleFile(path: string): Promise<Map<string, Uint8Array>> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new ArgusError(`cannot read bundle ${path}: ${(err as Error).message}`);
  }
  return unpackEntries(bytes, `bundle ${path}`);
}
