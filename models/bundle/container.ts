import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline as pipeStreams, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Header, Parser, type ReadEntry } from 'tar';
import { BatchedWrites } from '../../common/batched-writes.ts';
import { BundleRejected } from './rejection.ts';

/**
 * The bundle container: a plain POSIX tar of a few regular files with simple names, built in
 * memory, read as a stream. Reading never touches the filesystem, so a hostile archive (links,
 * `../` paths, devices) cannot write anywhere; such entries are refused. Reading holds absolute
 * limits — bytes as stored, bytes once decompressed (a gzip-compressed tar is accepted, once),
 * bytes per file and number of files — and stops the moment one is passed, so a small file that
 * would expand to a gigabyte costs no more than the limit.
 */

export interface BundleEntry {
  name: string;
  data: Uint8Array;
}

/** what reading a bundle learnt of one of its files: its sha256 and size, and its bytes when kept */
export interface EntryDigest {
  sha256: string;
  bytes: number;
  /** the file's bytes, for the files the reader was asked to keep */
  data?: Uint8Array;
}

export interface BundleLimits {
  /** bytes of the bundle as stored (compressed, if it is) */
  maxBundleBytes: number;
  /** bytes of the tar archive once decompressed, headers and padding included */
  maxExpandedBytes: number;
  /** bytes of any one file in it */
  maxFileBytes: number;
  /** files in it */
  maxFiles: number;
}

const MiB = 1 << 20;

/** a model bundle holds its ONNX file, descriptor, manifest and signature; a scene bundle less */
export const DEFAULT_BUNDLE_LIMITS: BundleLimits = {
  maxBundleBytes: 128 * MiB,
  maxExpandedBytes: 128 * MiB,
  maxFileBytes: 128 * MiB,
  maxFiles: 16,
};

const BLOCK = 512;
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
/** the first byte of a tar of safely named files (its first header starts with the name) */
const TAR_START = /^[A-Za-z0-9]$/;
const GZIP_MAGIC = [0x1f, 0x8b];
/** pax and GNU long-name headers are parsed by tar itself, in memory: keep them small */
const MAX_META_ENTRY_BYTES = 64 * 1024;

export function isSafeEntryName(name: string): boolean {
  return SAFE_NAME.test(name) && !name.includes('..');
}

function mib(bytes: number): string {
  return bytes >= MiB ? `${(bytes / MiB).toFixed(bytes % MiB === 0 ? 0 : 1)} MiB` : `${bytes} bytes`;
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

const OBTAIN_AGAIN = 'do not install it; obtain the bundle again from its publisher';

function tooLarge(message: string): BundleRejected {
  return new BundleRejected(
    'too-large',
    message,
    'a bundle this large is refused before it is unpacked; if it is genuine, raise the limit',
  );
}

function malformed(message: string): BundleRejected {
  return new BundleRejected('malformed', message, OBTAIN_AGAIN);
}

/** passes chunks on and fails once more than `limit` bytes went through */
function byteLimit(limit: number, exceeded: (seen: number) => Error) {
  return async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    let seen = 0;
    for await (const chunk of source) {
      seen += chunk.length;
      if (seen > limit) throw exceeded(seen);
      yield chunk;
    }
  };
}

/**
 * the tar stream in `source`: gunzipped when it starts with the gzip magic; either way it must then
 * start as a tar of safely named files (so a second layer of compression is refused, not expanded)
 */
function tarStream(what: string) {
  return async function* (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    const it = source[Symbol.asyncIterator]();
    let head = Buffer.alloc(0);
    while (head.length < GZIP_MAGIC.length) {
      const next = await it.next();
      if (next.done) break;
      head = Buffer.concat([head, next.value]);
    }
    const rest = (async function* () {
      try {
        yield head;
        for (let next = await it.next(); !next.done; next = await it.next()) yield next.value;
      } finally {
        // stopped early (a refusal downstream): the source is closed too (a download, a file)
        await it.return?.();
      }
    })();
    const gzipped = GZIP_MAGIC.every((b, i) => head[i] === b);
    const plain: AsyncIterable<Buffer> = gzipped
      ? pipeStreams(Readable.from(rest), createGunzip({ chunkSize: 256 * 1024 }), () => {})
      : rest;
    let first = true;
    for await (const chunk of plain) {
      if (first && chunk.length > 0) {
        first = false;
        if (!TAR_START.test(String.fromCharCode(chunk[0]!)))
          throw malformed(
            `${what} is not a bundle: ${gzipped ? 'inside its gzip layer there is no tar of plain files' : 'it is neither a tar archive nor a gzip-compressed one'}`,
          );
      }
      yield chunk;
    }
  };
}

/**
 * The files of the tar stream in `source` by name, within `limits`; throws a BundleRejected
 * (`too-large` or `malformed`) naming the limit or the entry at fault. `what` names the source.
 */
export async function unpackStream(
  source: Readable | AsyncIterable<Buffer>,
  what: string,
  limits: BundleLimits = DEFAULT_BUNDLE_LIMITS,
): Promise<Map<string, Uint8Array>> {
  const digests = await digestStream(source, what, limits, { keep: () => true });
  return new Map([...digests].map(([name, d]) => [name, d.data!]));
}

export interface DigestOptions {
  /** the files whose bytes are kept (the others are only hashed as they stream past) */
  keep: (name: string) => boolean;
  /** bytes of any one kept file at most (default: limits.maxFileBytes) */
  maxKeptBytes?: number;
  /**
   * a directory every file is written into as its bytes stream past (created there, never over an
   * existing file; each fsynced once whole), so that reading and unpacking are one pass. On a
   * refusal the files written so far stay: the caller drops the directory.
   */
  writeTo?: string;
}

/** an error of the stream read from (a cut download, an abort): passed on as it is */
class SourceFailed extends Error {
  constructor(readonly inner: unknown) {
    super('the source failed');
  }
}

function passErrors(source: Readable | AsyncIterable<Buffer>) {
  return async function* (): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of source) yield chunk as Buffer;
    } catch (err) {
      throw new SourceFailed(err);
    }
  };
}

/** the files of `writeTo`, written in order, one write at a time (the reader waits for them) */
class FileWriter {
  private chain: Promise<void> = Promise.resolve();
  private readonly open = new Set<FileHandle>();
  failure: unknown;

  constructor(private readonly dir: string) {}

  private queue(step: () => Promise<void>): void {
    this.chain = this.chain.then(step).catch((err: unknown) => {
      this.failure ??= err;
    });
  }

  /** a file of that name, taking `write`s until `end`, in batches (BatchedWrites) */
  file(name: string): { write: (c: Buffer) => void; end: () => void } {
    let out: BatchedWrites | undefined;
    this.queue(async () => {
      const fd = await open(join(this.dir, name), 'wx', 0o644);
      this.open.add(fd);
      out = new BatchedWrites(fd, 0);
    });
    return {
      write: (c) =>
        this.queue(async () => {
          if (this.failure || !out) return;
          await out.add(c);
        }),
      end: () =>
        this.queue(async () => {
          if (!out) return;
          this.open.delete(out.fd);
          try {
            if (!this.failure) {
              await out.flush();
              await out.fd.sync();
            }
          } finally {
            await out.fd.close();
          }
        }),
    };
  }

  /** every write so far is done; throws the first that failed */
  async settled(): Promise<void> {
    await this.chain;
    if (this.failure) throw this.failure;
  }

  /** after a failure: closes what is open */
  async abandon(): Promise<void> {
    await this.chain;
    for (const fd of this.open) await fd.close().catch(() => undefined);
    this.open.clear();
  }
}

/**
 * The sha256 and size of every file of the tar stream in `source`, within `limits`, keeping the
 * bytes only of the files `keep` names: a verifier that needs the manifest, its signature and the
 * descriptor holds those few KiB, never the model file. Throws a BundleRejected like unpackStream.
 */
export async function digestStream(
  source: Readable | AsyncIterable<Buffer>,
  what: string,
  limits: BundleLimits,
  options: DigestOptions,
): Promise<Map<string, EntryDigest>> {
  const maxKept = Math.min(options.maxKeptBytes ?? limits.maxFileBytes, limits.maxFileBytes);
  const files = new Map<string, EntryDigest>();
  const writer = options.writeTo ? new FileWriter(options.writeTo) : undefined;
  const written = new Set<string>();
  const problems: string[] = [];
  let entries = 0;
  let failure: Error | undefined;
  const parser = new Parser({
    strict: true,
    zstd: false,
    maxMetaEntrySize: MAX_META_ENTRY_BYTES,
    onReadEntry: (entry: ReadEntry) => {
      const name = entry.path;
      entries++;
      if (entries > limits.maxFiles) {
        failure ??= tooLarge(`${what} holds more than ${limits.maxFiles} files (the limit)`);
      } else if (entry.type !== 'File' || !isSafeEntryName(name)) {
        problems.push(`entry "${name}" (${entry.type}) is not a plain file with a simple name`);
      } else if (entry.size > limits.maxFileBytes) {
        failure ??= tooLarge(
          `${what}: ${name} is ${mib(entry.size)}, more than the limit of ${mib(limits.maxFileBytes)} per file`,
        );
      } else {
        if (files.has(name)) problems.push(`entry "${name}" appears twice`);
        const kept = options.keep(name);
        if (kept && entry.size > maxKept) {
          failure ??= tooLarge(
            `${what}: ${name} is ${mib(entry.size)}, more than the limit of ${mib(maxKept)} for a file read whole`,
          );
          entry.resume();
          return;
        }
        const hash = createHash('sha256');
        const chunks: Buffer[] = [];
        let bytes = 0;
        // a second entry of a name is refused above; only the first is written
        const out = writer && !written.has(name) ? writer.file(name) : undefined;
        written.add(name);
        entry.on('data', (c: Buffer) => {
          hash.update(c);
          bytes += c.length;
          if (kept) chunks.push(c);
          out?.write(c);
        });
        entry.on('end', () => {
          out?.end();
          files.set(name, {
            sha256: hash.digest('hex'),
            bytes,
            ...(kept ? { data: Buffer.concat(chunks) } : {}),
          });
        });
        return;
      }
      entry.resume();
    },
  });
  let parseError: Error | undefined;
  const parsed = new Promise<void>((resolve, reject) => {
    parser.on('end', () => resolve());
    parser.on('error', (err: Error) => {
      parseError ??= err;
      reject(err);
    });
  });
  parsed.catch(() => {});
  let ended = false;
  parser.on('eof', () => {
    ended = true;
  });
  const unreadable = (err: Error) =>
    malformed(`${what} is not a bundle (not a readable tar archive: ${err.message})`);
  try {
    await pipeline(
      passErrors(source),
      byteLimit(limits.maxBundleBytes, () =>
        tooLarge(`${what} is larger than ${mib(limits.maxBundleBytes)} (the limit)`),
      ),
      tarStream(what),
      byteLimit(limits.maxExpandedBytes, (seen) =>
        tooLarge(
          `${what} expands to more than ${mib(limits.maxExpandedBytes)} (the limit); stopped after ${mib(seen)}`,
        ),
      ),
      async (tar: AsyncIterable<Buffer>) => {
        for await (const chunk of tar) {
          // past the archive's end the parser would buffer all that follows: it only counts to the limit
          if (ended) continue;
          parser.write(chunk);
          if (failure) throw failure;
          if (parseError) throw unreadable(parseError);
          // the chunk is written, or in the file's batch, before the next is read: memory holds
          // one batch of the file being written (WRITE_BATCH_BYTES)
          await writer?.settled();
        }
        parser.end();
        await parsed.catch((err: Error) => {
          throw unreadable(err);
        });
        if (failure) throw failure;
        await writer?.settled();
      },
    );
  } catch (err) {
    parser.abort(err as Error);
    await writer?.abandon();
    if (err instanceof SourceFailed) throw err.inner;
    if (err instanceof BundleRejected || err === writer?.failure) throw err;
    throw malformed(`${what} cannot be read: ${(err as Error).message}`);
  }
  if (problems.length > 0) throw malformed(`${what} is not a valid bundle:\n  ${problems.join('\n  ')}`);
  if (files.size === 0) throw malformed(`${what} is not a bundle (no files in it)`);
  return files;
}

/** the entries of a bundle file, read as a stream within `limits` (see unpackStream) */
export async function readBundleFile(
  path: string,
  limits: BundleLimits = DEFAULT_BUNDLE_LIMITS,
): Promise<Map<string, Uint8Array>> {
  await checkBundleFile(path, limits);
  return unpackStream(createReadStream(path), `bundle ${path}`, limits);
}

/** the digests of a bundle file's entries, read as a stream within `limits` (see digestStream) */
export async function digestBundleFile(
  path: string,
  limits: BundleLimits,
  options: DigestOptions,
  what = `bundle ${path}`,
): Promise<Map<string, EntryDigest>> {
  await checkBundleFile(path, limits);
  return digestStream(createReadStream(path), what, limits, options);
}

/** a regular file within the bundle size limit, or a BundleRejected saying why not */
async function checkBundleFile(path: string, limits: BundleLimits): Promise<void> {
  let size: number;
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new Error('not a regular file');
    size = s.size;
  } catch (err) {
    throw new BundleRejected(
      'malformed',
      `cannot read bundle ${path}: ${(err as Error).message}`,
      'check the path of the bundle file',
    );
  }
  if (size > limits.maxBundleBytes) {
    throw tooLarge(`bundle ${path} is ${mib(size)}, more than the limit of ${mib(limits.maxBundleBytes)}`);
  }
}
