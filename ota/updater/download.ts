import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, stat, truncate } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { dirname } from 'node:path';
import { ArgusError, errorMessage } from '../../common/errors.ts';
import type { TokenBucket } from './token-bucket.ts';

/**
 * The artifact download: one GET with the device's credential into a partial file, resumed with
 * `Range` after a cut. The partial file's length is the truth of what arrived; a resumed answer must
 * be a 206 starting exactly there (`Content-Range`) for the same total and, when the server gave
 * one, the same ETag (sent as `If-Range`, so a changed artifact comes whole as a 200 and the
 * partial file starts over). The bytes pass through the updater's bandwidth cap, never exceed the
 * assignment's size, and the whole file must have the assignment's sha256 (its id).
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
  /** bytes in the partial file, after each chunk */
  onProgress: (bytes: number) => void;
  /** first wait after a failed attempt, doubling up to retryMaxMs */
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
class Retry extends Error {}

const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;
const MAX_ERROR_BODY = 300;

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

/** the sha256 state after the first `bytes` of `file` */
async function hashPrefix(file: string, bytes: number): Promise<Hash> {
  const hash = createHash('sha256');
  if (bytes === 0) return hash;
  for await (const chunk of createReadStream(file, { start: 0, end: bytes - 1 }))
    hash.update(chunk as Buffer);
  return hash;
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

/** one attempt; resolves true when the file is complete and matches */
async function attempt(r: DownloadRequest, state: { etag: string | undefined }): Promise<void> {
  await mkdir(dirname(r.file), { recursive: true });
  let have = await sizeOf(r.file);
  if (have > r.bytes) {
    await truncate(r.file, 0);
    have = 0;
  }
  const headers: Record<string, string> = {
    authorization: `Bearer ${r.credential()}`,
    'accept-encoding': 'identity',
  };
  if (have > 0 && have < r.bytes) {
    headers.range = `bytes=${have}-`;
    if (state.etag) headers['if-range'] = state.etag;
  }
  let res: IncomingMessage | undefined;
  if (have < r.bytes) {
    try {
      res = await get(r, headers, r.signal);
    } catch (err) {
      if (r.signal.aborted) throw r.signal.reason;
      throw new Retry(`cannot reach ${r.url}: ${errorMessage(err)}`);
    }
  }
  let start = have;
  if (res) {
    const status = res.statusCode ?? 0;
    if (status === 404) {
      throw new DownloadFailed(
        'not-assigned',
        `the control plane has no artifact ${r.sha256} for this box (404: ${await errorBody(res)})`,
        'the assignment was withdrawn or the artifact deleted; the rollout decides what comes next',
      );
    }
    if (status === 416) {
      res.resume();
      await truncate(r.file, 0);
      throw new Retry('the server refused the range of the partial download (416); starting over');
    }
    if (status === 401 || status === 403 || status === 429 || status === 408 || status >= 500) {
      throw new Retry(`${r.url} answered ${status}: ${await errorBody(res)}`);
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
      start = 0;
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
        res.resume();
        await truncate(r.file, 0);
        throw new Retry(
          `the resumed answer does not continue the partial file (Content-Range ${res.headers['content-range'] ?? 'missing'}, ETag ${etag ?? 'none'} after ${state.etag ?? 'none'}); starting over`,
        );
      }
    }
    if (etag !== state.etag) {
      await r.saveEtag(etag);
      state.etag = etag;
    }
  }
  const hash = await hashPrefix(r.file, start);
  const fd = await open(r.file, start === 0 ? 'w' : 'r+');
  let at = start;
  try {
    if (res) {
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
          await fd.write(chunk, 0, chunk.length, at);
          hash.update(chunk);
          at += chunk.length;
          r.onProgress(at);
        }
      } catch (err) {
        if (err instanceof DownloadFailed || r.signal.aborted) throw r.signal.aborted ? r.signal.reason : err;
        throw new Retry(`the download was cut after ${at} of ${r.bytes} bytes: ${errorMessage(err)}`);
      }
      if (!res.complete || at < r.bytes)
        throw new Retry(`the download was cut after ${at} of ${r.bytes} bytes`);
    }
    await fd.sync();
  } finally {
    await fd.close();
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

/**
 * Downloads until the partial file holds the whole artifact with its sha256, retrying cuts and
 * unreachable or busy servers with a doubling wait; throws a DownloadFailed for what another
 * attempt cannot fix, or the signal's reason when it aborts (cancel, deadline, shutdown).
 */
export async function downloadArtifact(r: DownloadRequest): Promise<void> {
  const state = { etag: r.etag };
  const startMs = r.retryStartMs ?? 500;
  let wait = startMs;
  for (;;) {
    if (r.signal.aborted) throw r.signal.reason;
    const before = await sizeOf(r.file);
    try {
      await attempt(r, state);
      return;
    } catch (err) {
      if (!(err instanceof Retry)) throw err;
      // an attempt that brought bytes starts the backoff again
      if ((await sizeOf(r.file)) > before) wait = startMs;
      r.onRetry?.(err.message, wait);
      await sleep(wait, r.signal);
      wait = Math.min(wait * 2, r.retryMaxMs ?? 30_000);
    }
  }
}
