import type { Worker } from 'node:worker_threads';
import { ArgusError } from '../../common/errors.ts';
import { startThread } from '../../common/thread.ts';
import type { SqliteSettings } from '../config.ts';
import { RefusedDataError } from './repository.ts';
import type { WriteOp, WriteReply, WriteRequest, WriteResult, WriterReady } from './sqlite-writes.ts';

interface Pending {
  resolve: (result: WriteResult) => void;
  reject: (err: Error) => void;
}

/** a writer thread that does not end by itself after close is terminated */
const CLOSE_TIMEOUT_MS = 5000;

/**
 * The main thread's side of the SQLite writer thread: requests go out in order and each resolves
 * once its transaction committed. When the thread dies, the requests it held fail (their
 * messages stay unacknowledged and are retried) and the next request starts a new thread.
 */
export class SqliteWriter {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private thread: Promise<Worker> | undefined;
  private closed = false;

  constructor(private readonly settings: SqliteSettings) {}

  /** starts the thread, so that a database it cannot open fails at start-up */
  async start(): Promise<void> {
    await this.worker();
  }

  async request(op: WriteOp): Promise<WriteResult> {
    if (this.closed) throw new ArgusError('the SQLite writer is closed');
    const worker = await this.worker();
    const id = this.nextId++;
    return new Promise<WriteResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const req: WriteRequest = { ...op, id };
      worker.postMessage(req);
    });
  }

  /** waits for the requests sent so far, then ends the thread */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const worker = await this.thread?.catch(() => undefined);
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage('close');
    const timer = setTimeout(() => void worker.terminate(), CLOSE_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  private worker(): Promise<Worker> {
    this.thread ??= this.spawn();
    return this.thread;
  }

  private async spawn(): Promise<Worker> {
    const worker = startThread(new URL('./sqlite-writer-thread.ts', import.meta.url), this.settings);
    try {
      const ready = await new Promise<WriterReady>((resolve, reject) => {
        const onExit = (code: number) =>
          reject(new ArgusError(`the SQLite writer thread exited with code ${code}`));
        worker.once('error', reject);
        worker.once('exit', onExit);
        worker.once('message', (m: WriterReady) => {
          // only our own listeners: the Worker's internal ones start and stop its message port
          worker.off('error', reject);
          worker.off('exit', onExit);
          resolve(m);
        });
      });
      if (!ready.ready) throw new ArgusError(ready.error);
    } catch (err) {
      this.thread = undefined;
      await worker.terminate();
      throw err;
    }
    const onReply = (reply: WriteReply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if ('error' in reply)
        p.reject(reply.refusedData ? new RefusedDataError(reply.error) : new ArgusError(reply.error));
      else p.resolve(reply.result);
    };
    worker.on('message', onReply);
    let gone = false;
    const lost = (why: string) => {
      if (gone) return;
      gone = true;
      worker.off('message', onReply);
      this.thread = undefined;
      const err = new ArgusError(`the SQLite writer thread ${why}; the write is retried on a new thread`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    worker.once('error', (err) => lost(`failed: ${err.message}`));
    worker.once('exit', (code) => lost(`exited with code ${code}`));
    return worker;
  }
}
