import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, stat, truncate } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { dirname } from 'node:path';
import { BatchedWrites } from '../../common/batched-writes.ts';
import { ArgusError, errorMessage } from '../../common/errors.ts';
import { retryAfterMs } from '../../common/retry-after.ts';
import type { TokenBucket } from './token-bucket.ts';

/**
 * The artifact download: one GET with the device's credential into a partial file, resumed with
 * `Range` after a cut. The partial file's length is the truth of what arrived; a resumed answer must
 * be a 206 starting exactly there (`Content-Range`) for the same total and, when the server gave
 * one, the same ETag (sent as `If-Range`, so a changed artifact comes whole as a 200 and the
 * partial file starts over). The bytes pass through the updater's bandwidth cap, never exceed the
 * assignment's size, and the whole file must have the assignment's sha256 (its id).
 *
 * The bytes are also handed, in order and as they arrive, to the caller's consumer (the updater
 * unpacks them into a staging slot in the same pass); after a restart the consumer is given the
 * partial file's bytes first, read back, so what it derives from the stream (hash states, the
 * unpacked files) is derived again from the first byte. The partial file is not fsynced: nothing
 * is loaded from it, and a torn end after a power loss fails the sha256 check like any altered byte.
 */

export interface DownloadTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export interface DownloadRequest {
  url: string;
  /** sent as `Authorization: Bearer` (read at every attempt: a rotated credential is used at once) */
  credential: () => string;
  tls?: DownloadTls | undefined;
  /** the local address the request leaves from (a box with several interfaces); the system's choice when absent */
  localAddress?: string | undefined;
  /** the partial file */
  file: string;
  bytes: number;
  sha256: string;
  bucket: TokenBucket;
  signal: AbortSignal;
  /** the ETag of the bytes in the partial file, when known */
  etag: string | undefined;
  /** called with a new ETag before any byte of the answer that carries it is written */
  saveEtag: (etag: string | undefined) => Promise<void>;
  /** bytes the partial file holds, after each chunk (it takes them in batches: BatchedWrites) */
  onProgress: (bytes: number) => void;
  /** first wait after a failed attempt, doubling up to retryMaxMs; longer when a busy answer's Retry-After asks */
  retryStartMs?: number;
  retryMaxMs?: number;
  /** no byte for this long ends an attempt */
  idleTimeoutMs?: number;
  onRetry?: (problem: string, waitMs: number) => void;
}

/** a download failure that another attempt does not fix */
export class DownloadFailed extends ArgusError {
  constructor(
    readonly reason: 'not-assigned' | 'refused' | 'size-mismatch' | 'sha256-mismatch',
    message: string,
    hint: string,
  ) {
    super(message, hint);
    this.name = 'DownloadFailed';
  }
}

/** an attempt that may succeed when tried again (cut, unreachable, busy) */
class Retry extends Error {
  constructor(
    message: string,
    /** what the answer's Retry-After header asked (ms, bounded), if it said */
    readonly after?: number,
  ) {
    super(message);
  }
}

/** the partial file could not be written (no room, ...): not a cut, so not retried */
class WriteFailed extends Error {
  constructor(cause: unknown) {
    super(errorMessage(cause), { cause });
  }
}

const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;
const MAX_ERROR_BODY = 300;
/** the longest wait between attempts (default of retryMaxMs), also when Retry-After asks more */
const RETRY_MAX_MS = 30_000;
/** bytes per read when the partial file is read back */
const REPLAY_CHUNK = 256 * 1024;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', abort);
      resolve();
    }, ms);
    const abort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    if (signal.aborted) abort();
    else signal.addEventListener('abort', abort, { once: true });
  });
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

function get(
  r: DownloadRequest,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<IncomingMessage> {
  const send = r.url.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(r.url, {
      method: 'GET',
      headers,
      signal,
      ...(r.localAddress ? { localAddress: r.localAddress } : {}),
      ...(r.tls ?? {}),
    });
    req.setTimeout(r.idleTimeoutMs ?? 30_000, () => req.destroy(new Retry('no answer in time')));
    req.once('response', resolve);
    req.once('error', reject);
    req.end();
  });
}

async function errorBody(res: IncomingMessage): Promise<string> {
  let text = '';
  res.setEncoding('utf8');
  for await (const chunk of res) {
    if (text.length < MAX_ERROR_BODY) text += chunk;
  }
  return text.slice(0, MAX_ERROR_BODY).trim();
}

/** the partial file is dropped: the bytes start over from the first, and whoever took the earlier ones starts over with them */
export class StartOver extends Error {}

/**
 * One request for the bytes after the first `have` of the partial file: each chunk is written to
 * the partial file at its place, then yielded. Ends when the artifact is whole; throws a Retry for
 * a cut or a busy server, a StartOver when the answer does not continue the partial file (which is
 * then emptied), a DownloadFailed for what another attempt does not fix.
 */
async function* attempt(
  r: DownloadRequest,
  state: { etag: string | undefined },
  have: number,
): AsyncGenerator<Buffer> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${r.credential()}`,
    'accept-encoding': 'identity',
  };
  if (have > 0) {
    headers.range = `bytes=${have}-`;
    if (state.etag) headers['if-range'] = state.etag;
  }
  let res: IncomingMessage;
  try {
    res = await get(r, headers, r.signal);
  } catch (err) {
    if (r.signal.aborted) throw r.signal.reason;
    throw new Retry(`cannot reach ${r.url}: ${errorMessage(err)}`);
  }
  const startOver = async (message: string) => {
    res.resume();
    await truncate(r.file, 0);
    return new StartOver(message);
  };
  const status = res.statusCode ?? 0;
  if (status === 404) {
    throw new DownloadFailed(
      'not-assigned',
      `the control plane has no artifact ${r.sha256} for this box (404: ${await errorBody(res)})`,
      'the assignment was withdrawn or the artifact deleted; the rollout decides what comes next',
    );
  }
  if (status === 416)
    throw await startOver('the server refused the range of the partial download (416); starting over');
  if (status === 401 || status === 403 || status === 429 || status === 408 || status >= 500) {
    const after = retryAfterMs(res.headers['retry-after'], Date.now(), r.retryMaxMs ?? RETRY_MAX_MS);
    throw new Retry(`${r.url} answered ${status}: ${await errorBody(res)}`, after);
  }
  if (status !== 200 && status !== 206) {
    throw new DownloadFailed(
      'refused',
      `${r.url} answered ${status}: ${await errorBody(res)}`,
      'the control plane refuses this download; check the artifact and the rollout',
    );
  }
  const etag = typeof res.headers.etag === 'string' ? res.headers.etag : undefined;
  if (status === 200) {
    const length = Number(res.headers['content-length'] ?? r.bytes);
    if (length !== r.bytes) {
      res.resume();
      throw new DownloadFailed(
        'size-mismatch',
        `${r.url} sends ${length} bytes; the assignment says the artifact has ${r.bytes}`,
        'the registry and the rollout disagree about this artifact; publish it again',
      );
    }
    // the whole artifact again (a changed ETag, or a server that ignores Range)
    if (have > 0)
      throw await startOver(`${r.url} sent the whole artifact instead of the rest; starting over`);
  } else {
    const range = CONTENT_RANGE.exec(String(res.headers['content-range'] ?? ''));
    const total = range?.[3] === '*' ? undefined : Number(range?.[3]);
    const sameEtag = !state.etag || !etag || etag === state.etag;
    if (
      !range ||
      Number(range[1]) !== have ||
      Number(range[2]) !== r.bytes - 1 ||
      total !== r.bytes ||
      !sameEtag
    ) {
      throw await startOver(
        `the resumed answer does not continue the partial file (Content-Range ${res.headers['content-range'] ?? 'missing'}, ETag ${etag ?? 'none'} after ${state.etag ?? 'none'}); starting over`,
      );
    }
  }
  if (etag !== state.etag) {
    await r.saveEtag(etag);
    state.etag = etag;
  }
  const fd = await open(r.file, have === 0 ? 'w' : 'r+');
  const out = new BatchedWrites(fd, have);
  const writeFailed = (err: unknown) => {
    throw new WriteFailed(err);
  };
  let at = have;
  try {
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        if (at + chunk.length > r.bytes) {
          throw new DownloadFailed(
            'size-mismatch',
            `${r.url} sends more than the ${r.bytes} bytes the assignment says the artifact has`,
            'the registry and the rollout disagree about this artifact; publish it again',
          );
        }
        await r.bucket.take(chunk.length, r.signal);
        await out.add(chunk).catch(writeFailed);
        at += chunk.length;
        r.onProgress(out.written);
        yield chunk;
      }
      await out.flush().catch(writeFailed);
      r.onProgress(out.written);
    } catch (err) {
      // what came before a cut is in the partial file before the next attempt asks for the rest
      // with Range; a file that cannot take it fails the download as a write would
      await out.flush();
      if (r.signal.aborted) throw r.signal.reason;
      if (err instanceof WriteFailed) throw err.cause;
      if (err instanceof DownloadFailed) throw err;
      throw new Retry(`the download was cut after ${at} of ${r.bytes} bytes: ${errorMessage(err)}`);
    }
    if (!res.complete || at < r.bytes)
      throw new Retry(`the download was cut after ${at} of ${r.bytes} bytes`);
  } finally {
    res.destroy();
    await fd.close();
  }
}

/**
 * The artifact's bytes from the first to the last, as one stream: those the partial file already
 * holds (read back from it), then the rest as it arrives, written to the partial file in batches
 * (BatchedWrites: what an attempt received is there when it ends, a kill loses at most a batch),
 * through cuts, unreachable or busy servers (resumed with `Range` after a doubling wait, or what a
 * busy answer's Retry-After asks). The whole must have the artifact's sha256: the last step throws a
 * DownloadFailed `sha256-mismatch` (the partial file emptied) before the stream ends otherwise.
 */
async function* artifactBytes(
  r: DownloadRequest,
  state: { etag: string | undefined },
): AsyncGenerator<Buffer> {
  await mkdir(dirname(r.file), { recursive: true });
  let have = await sizeOf(r.file);
  if (have > r.bytes) {
    await truncate(r.file, 0);
    have = 0;
  }
  const hash = createHash('sha256');
  let at = 0;
  if (have > 0) {
    for await (const chunk of createReadStream(r.file, {
      start: 0,
      end: have - 1,
      highWaterMark: REPLAY_CHUNK,
    })) {
      hash.update(chunk as Buffer);
      at += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
  }
  const startMs = r.retryStartMs ?? 500;
  let wait = startMs;
  while (at < r.bytes) {
    if (r.signal.aborted) throw r.signal.reason;
    const before = at;
    try {
      for await (const chunk of attempt(r, state, at)) {
        hash.update(chunk);
        at += chunk.length;
        yield chunk;
      }
    } catch (err) {
      if (!(err instanceof Retry)) throw err;
      // an attempt that brought bytes starts the backoff again
      if (at > before) wait = startMs;
      const asked = Math.max(wait, err.after ?? 0);
      r.onRetry?.(err.message, asked);
      await sleep(asked, r.signal);
      wait = Math.min(wait * 2, r.retryMaxMs ?? RETRY_MAX_MS);
    }
  }
  const digest = hash.digest('hex');
  if (digest !== r.sha256) {
    await truncate(r.file, 0);
    throw new DownloadFailed(
      'sha256-mismatch',
      `the downloaded artifact has sha256 ${digest}, not its id ${r.sha256}: it was altered on the way or in the registry`,
      'do not install it; publish the artifact again from its signed bundle',
    );
  }
}

/** takes the bytes and drops them (the partial file keeps them) */
async function drain(bytes: AsyncIterable<Buffer>): Promise<void> {
  for await (const _ of bytes);
}

/**
 * Downloads the artifact into the partial file, passing its bytes in order, once, to `consume` as
 * they arrive (the bytes an earlier attempt or process left in the partial file first), so that
 * unpacking and hashing happen in the pass that downloads. The stream `consume` reads throws a
 * DownloadFailed for what another attempt cannot fix, the signal's reason when it aborts (cancel,
 * deadline, shutdown), and ends only once the whole has the artifact's sha256; when the server's
 * answer means starting over from the first byte, `consume` is called again with a new stream
 * (whatever it made of the first one is its to drop).
 */
export async function downloadArtifact<T = void>(
  r: DownloadRequest,
  consume: (bytes: AsyncIterable<Buffer>) => Promise<T> = drain as (
    bytes: AsyncIterable<Buffer>,
  ) => Promise<T>,
): Promise<T> {
  const state = { etag: r.etag };
  for (;;) {
    try {
      return await consume(artifactBytes(r, state));
    } catch (err) {
      if (!(err instanceof StartOver)) throw err;
      r.onRetry?.(err.message, 0);
    }
  }
}
