import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Content-addressed storage of artifact bytes: a blob is named by the sha256 of its bytes, written
 * once and never changed. The registry keeps the metadata in the database and the bytes here, so
 * that an S3-compatible object store can take the bytes later behind the same interface.
 */

/** an inclusive byte range, as in HTTP `Range: bytes=start-end` */
export interface ByteRange {
  start: number;
  end: number;
}

export interface BlobInfo {
  sha256: string;
  bytes: number;
}

export class BlobTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`more than ${limit} bytes`);
    this.name = 'BlobTooLarge';
  }
}

export interface BlobStore {
  /**
   * Stores the bytes of `source`, hashing them as they stream, and answers their sha256 and size.
   * Fails with BlobTooLarge once more than `maxBytes` went through (nothing is stored then). The
   * blob becomes visible only whole; putting the same bytes again changes nothing.
   */
  put(source: Readable | AsyncIterable<Uint8Array>, maxBytes: number): Promise<BlobInfo>;
  /**
   * Takes the file at `staged` (a staging file, whose sha256 and size `info` says, as `spoolToFile`
   * answered them) as the blob `info.sha256`; the file is gone afterwards either way
   */
  adopt(staged: string, info: BlobInfo): Promise<void>;
  /** the blob's bytes (within `range` when given) as a stream; undefined when there is no such blob */
  get(sha256: string, range?: ByteRange): Promise<Readable | undefined>;
  stat(sha256: string): Promise<BlobInfo | undefined>;
  /** true when a blob was removed */
  delete(sha256: string): Promise<boolean>;
}

const SHA256 = /^[0-9a-f]{64}$/;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Writes `source` to the new file `path`, hashing it as it streams, and flushes it to disk; fails
 * with BlobTooLarge (the file then holds at most `maxBytes`, for the caller to remove) once more than
 * `maxBytes` went through, without reading further
 */
export async function spoolToFile(
  source: Readable | AsyncIterable<Uint8Array>,
  path: string,
  maxBytes: number,
): Promise<BlobInfo> {
  const hash = createHash('sha256');
  let bytes = 0;
  await pipeline(
    source,
    async function* (chunks: AsyncIterable<Uint8Array>) {
      for await (const chunk of chunks) {
        bytes += chunk.length;
        if (bytes > maxBytes) throw new BlobTooLarge(maxBytes);
        hash.update(chunk);
        yield chunk;
      }
    },
    createWriteStream(path, { flags: 'wx', mode: 0o644 }),
  );
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  return { sha256: hash.digest('hex'), bytes };
}

function checkName(sha256: string): void {
  if (!SHA256.test(sha256)) throw new Error(`"${sha256}" is not a sha256`);
}

/**
 * The filesystem BlobStore: `<dir>/sha256/<first two hex digits>/<sha256>`, each written to
 * `<dir>/staging/` first, flushed to disk and renamed into place (a crash leaves a staging file,
 * never a partial blob; `sweepStaging` removes what a dead process left). The directories are made
 * on the first put, so a control plane that never stores an artifact writes nothing.
 */
export class FsBlobStore implements BlobStore {
  constructor(readonly dir: string) {}

  private pathOf(sha256: string): string {
    checkName(sha256);
    return join(this.dir, 'sha256', sha256.slice(0, 2), sha256);
  }

  /** the staging directory, where `put` and callers that spool a stream (uploads) write first */
  get stagingDir(): string {
    return join(this.dir, 'staging');
  }

  /** a new path in the staging directory (created) */
  async stagingFile(): Promise<string> {
    await mkdir(this.stagingDir, { recursive: true });
    return join(this.stagingDir, `${process.pid}-${randomBytes(8).toString('hex')}.partial`);
  }

  async put(source: Readable | AsyncIterable<Uint8Array>, maxBytes: number): Promise<BlobInfo> {
    const staged = await this.stagingFile();
    try {
      const info = await spoolToFile(source, staged, maxBytes);
      await this.adopt(staged, info);
      return info;
    } finally {
      await rm(staged, { force: true });
    }
  }

  async adopt(staged: string, info: BlobInfo): Promise<void> {
    try {
      const target = this.pathOf(info.sha256);
      await mkdir(dirname(target), { recursive: true });
      // the same bytes under the same name: replacing an existing blob changes nothing
      await rename(staged, target);
    } finally {
      await rm(staged, { force: true });
    }
  }

  /** removes the staging files that processes no longer running left behind (a crash mid-upload) */
  async sweepStaging(): Promise<number> {
    const names = await readdir(this.stagingDir).catch(() => [] as string[]);
    let removed = 0;
    for (const name of names) {
      const pid = Number(/^(\d+)-[0-9a-f]{16}\.partial$/.exec(name)?.[1]);
      if (!pid || processAlive(pid)) continue;
      await rm(join(this.stagingDir, name), { force: true });
      removed++;
    }
    return removed;
  }

  async get(sha256: string, range?: ByteRange): Promise<Readable | undefined> {
    const path = this.pathOf(sha256);
    // opened before answering, so a missing blob is `undefined`, not a stream that fails later
    const handle = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (!handle) return undefined;
    return createReadStream('', {
      fd: handle,
      ...(range ? { start: range.start, end: range.end } : {}),
      highWaterMark: 64 * 1024,
    });
  }

  async stat(sha256: string): Promise<BlobInfo | undefined> {
    try {
      const s = await stat(this.pathOf(sha256));
      return { sha256, bytes: s.size };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async delete(sha256: string): Promise<boolean> {
    const path = this.pathOf(sha256);
    const existed = await this.stat(sha256);
    await rm(path, { force: true });
    return existed !== undefined;
  }
}
