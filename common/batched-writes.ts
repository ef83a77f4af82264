import type { FileHandle } from 'node:fs/promises';

/** bytes gathered before one writev: an 8 MB file in 16 writes instead of 128 of a socket's 64 KiB */
export const WRITE_BATCH_BYTES = 512 * 1024;
/** chunks gathered at most before one writev, however small they are */
const WRITE_BATCH_CHUNKS = 64;
/** a batch is written once its first chunk is this old, however few bytes it holds (a slow link) */
const WRITE_BATCH_MS = 200;

/**
 * The chunks of a stream written to a file in order, gathered into one `writev` per ~512 KiB:
 * each asynchronous write is a round trip through the thread pool, which for chunks of a socket's
 * size costs more than the copy itself (on tmpfs, an 8 MB file took 21 ms in 64 KiB writes and
 * 7 ms in 512 KiB ones). Holds at most one batch, and a chunk at most ~200 ms when more come
 * (`written` tells how far the file holds the stream); `flush` writes what it holds. The chunks
 * are kept by reference until written, so a caller must not reuse a chunk it passed.
 */
export class BatchedWrites {
  private pending: Buffer[] = [];
  private bytes = 0;
  private firstAt = 0;

  constructor(
    readonly fd: FileHandle,
    /** where the first byte goes; after that, each batch follows the last */
    private position: number,
  ) {}

  /** where the file's bytes end: what was written of the stream so far */
  get written(): number {
    return this.position;
  }

  /** takes `chunk`; writes the batch when it is full or its first chunk has waited long enough */
  async add(chunk: Buffer): Promise<void> {
    if (chunk.length === 0) return;
    const now = performance.now();
    if (this.pending.length === 0) this.firstAt = now;
    this.pending.push(chunk);
    this.bytes += chunk.length;
    if (
      this.bytes >= WRITE_BATCH_BYTES ||
      this.pending.length >= WRITE_BATCH_CHUNKS ||
      now - this.firstAt >= WRITE_BATCH_MS
    )
      await this.flush();
  }

  /** writes every chunk taken so far */
  async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const { bytesWritten } = await this.fd.writev(this.pending, this.position);
      if (bytesWritten === 0) throw new Error('the file took no byte of a write');
      this.position += bytesWritten;
      this.bytes -= bytesWritten;
      // a short write leaves the rest of the batch, from the first byte it did not take
      let left = bytesWritten;
      while (left > 0) {
        const first = this.pending[0]!;
        if (first.length <= left) {
          left -= first.length;
          this.pending.shift();
        } else {
          this.pending[0] = first.subarray(left);
          left = 0;
        }
      }
    }
  }
}
