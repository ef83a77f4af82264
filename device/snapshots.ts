import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { retryAfterMs } from '../common/retry-after.ts';
import { httpPaths, SNAPSHOT_CONTENT_TYPE } from '../contract/index.ts';
import type { BlobQueue, SnapshotBlob, Spool } from './spool.ts';
import { type ClientTls, TlsErrorLog, tlsConnectOptions } from './tls.ts';

const REQUEST_TIMEOUT_MS = 15_000;
/** of an error answer, kept for the log */
const MAX_ERROR_BODY = 300;

/**
 * One PUT with node:http(s): fetch cannot be given a CA, a client certificate or a key. Resolves
 * the status and, for an error answer, the start of its body.
 */
function put(
  url: string,
  headers: Record<string, string>,
  body: Buffer,
  signal: AbortSignal,
  tls: ClientTls | undefined,
): Promise<{ status: number; body: string; retryAfter: unknown }> {
  const send = url.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      {
        method: 'PUT',
        headers: { ...headers, 'content-length': String(body.length) },
        signal,
        ...tlsConnectOptions(tls),
      },
      (res) => {
        const status = res.statusCode ?? 0;
        res.once('error', reject);
        res.once('close', () => {
          if (!res.complete) reject(new Error(`the answer of ${url} was cut off`));
        });
        if (status >= 200 && status < 300) {
          res.resume();
          res.once('end', () => resolve({ status, body: '', retryAfter: undefined }));
          return;
        }
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (text.length < MAX_ERROR_BODY) text += chunk;
        });
        res.once('end', () =>
          resolve({ status, body: text.slice(0, MAX_ERROR_BODY), retryAfter: res.headers['retry-after'] }),
        );
      },
    );
    req.once('error', reject);
    req.end(body);
  });
}
/** while uploads fail, one log line at the start, then at most one summary per this */
const OUTAGE_SUMMARY_MS = 60_000;

export interface UploaderTiming {
  backoffStartMs: number;
  /** longest wait while the control plane cannot be reached (it may come back any moment) */
  unreachableMaxMs: number;
  /** longest wait while it answers busy (5xx, 429) or refuses the credential, also when its Retry-After asks more */
  busyMaxMs: number;
}

const DEFAULT_TIMING: UploaderTiming = { backoffStartMs: 500, unreachableMaxMs: 5_000, busyMaxMs: 60_000 };

type Outcome = 'uploaded' | 'unreachable' | 'busy' | 'refused' | 'rejected';

/** why uploads fail right now, for health */
export interface UploadState {
  /** `refused`: the control plane answers 401/403 to the device credential */
  failing: 'unreachable' | 'busy' | 'refused' | undefined;
  /** since when (ms, epoch) */
  since: number | undefined;
  detail: string | undefined;
}

/**
 * Uploads the spool's snapshots to the control plane over HTTP, oldest first, one at a time, with
 * the device's credential. While the control plane is unreachable (or answers 5xx, 429, 401/403)
 * the snapshot stays queued in the spool and is retried with exponential backoff, or after what a
 * busy answer's Retry-After asks (bounded by `busyMaxMs`) — at most a few
 * seconds while it cannot be reached, so that uploads resume soon after it returns, and
 * `retryNow` (the MQTT uplink reconnected) ends any wait; a snapshot the control plane rejects for
 * good (another 4xx) is dropped with an error log. An outage is logged once when it starts, then
 * summarised at most once a minute, and once when it ends. Nothing is kept per attempt: each
 * request has its own abort controller and timer, both released when it settles.
 */
export class SnapshotUploader {
  private url: string;
  private readonly stop$ = new AbortController();
  /** ends the current wait: for new work (`kick`) only when idle, for anything else also a backoff */
  private wake: ((reason: 'work' | 'retry-now') => void) | undefined;
  private running: Promise<void> | undefined;
  private backoff: number;
  /** what the last busy answer's Retry-After asked (ms, at most busyMaxMs) */
  private retryAfter: number | undefined;
  private state: UploadState = { failing: undefined, since: undefined, detail: undefined };
  private attempts = 0;
  private lastSummary = 0;
  private readonly waiters = new Map<string, ((uploaded: boolean) => void)[]>();
  private tlsErrors: TlsErrorLog;

  constructor(
    private readonly device: string,
    controlPlaneUrl: string,
    /** the device's credential, sent as `Authorization: Bearer` */
    private credential: string,
    private readonly spool: Spool,
    private readonly log: Logger,
    /** the CA (and client certificate) to verify an https:// control plane with */
    private readonly tls?: ClientTls,
    private readonly timing: UploaderTiming = DEFAULT_TIMING,
    /** the spool's queue it uploads: event snapshots, or harvested frames (to their own route, with their query) */
    private readonly queue: BlobQueue = 'snapshot',
  ) {
    this.url = controlPlaneUrl;
    this.backoff = timing.backoffStartMs;
    this.tlsErrors = this.tlsErrorLog();
  }

  private tlsErrorLog(): TlsErrorLog {
    return new TlsErrorLog(this.log, this.tls, {
      name: 'control plane',
      urlKey: 'controlPlane.url',
      url: this.url,
    });
  }

  private get noun(): string {
    return this.queue === 'snapshot' ? 'snapshot' : 'harvested frame';
  }

  /** why uploads fail now (all undefined while they succeed) */
  get uploadState(): UploadState {
    return { ...this.state };
  }

  start(): void {
    this.running ??= this.run();
  }

  /** a new snapshot is in the spool */
  kick(): void {
    this.wake?.('work');
  }

  /** a new control-plane URL (config reload) or credential (rotation): retry now */
  setControlPlane(url: string, credential = this.credential): void {
    this.url = url;
    this.credential = credential;
    this.tlsErrors = this.tlsErrorLog();
    this.retryNow();
  }

  /** the control plane is likely back (e.g. the MQTT uplink reconnected): ends a backoff now */
  retryNow(): void {
    this.backoff = this.timing.backoffStartMs;
    this.wake?.('retry-now');
  }

  /** resolves true when snapshot `id` has been uploaded, false when it was not within `timeoutMs` */
  waitFor(id: string, timeoutMs: number): Promise<boolean> {
    if (!this.spool.hasSnapshot(id)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const list = this.waiters.get(id) ?? [];
      const timer = setTimeout(() => settle(false), timeoutMs);
      const settle = (uploaded: boolean) => {
        clearTimeout(timer);
        const rest = (this.waiters.get(id) ?? []).filter((w) => w !== settle);
        if (rest.length > 0) this.waiters.set(id, rest);
        else this.waiters.delete(id);
        resolve(uploaded);
      };
      list.push(settle);
      this.waiters.set(id, list);
    });
  }

  /** stops after the current request (which is aborted); queued snapshots stay in the spool */
  async stop(): Promise<void> {
    this.stop$.abort();
    this.wake?.('retry-now');
    await this.running;
    for (const list of [...this.waiters.values()]) for (const w of list) w(false);
  }

  private async run(): Promise<void> {
    const { signal } = this.stop$;
    while (!signal.aborted) {
      const next = this.spool.oldestSnapshot(this.queue);
      if (!next) {
        await this.idle(Number.POSITIVE_INFINITY);
        continue;
      }
      const outcome = await this.upload(next);
      if (signal.aborted) break;
      if (outcome === 'unreachable' || outcome === 'busy' || outcome === 'refused') {
        const max = outcome === 'unreachable' ? this.timing.unreachableMaxMs : this.timing.busyMaxMs;
        const wait = Math.min(max, this.backoff) * (0.8 + Math.random() * 0.4);
        this.backoff = Math.min(max, this.backoff * 2);
        const asked = this.retryAfter ?? 0;
        this.retryAfter = undefined;
        await this.idle(Math.max(wait, asked));
        continue;
      }
      this.backoff = this.timing.backoffStartMs;
      this.spool.removeSnapshot(next.id);
      for (const w of this.waiters.get(next.id) ?? []) w(outcome === 'uploaded');
    }
  }

  /** waits for `ms` (a backoff) or, with no timeout, for new work; stop ends either */
  private idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const backoff = Number.isFinite(ms);
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      if (backoff) timer = setTimeout(done, ms);
      this.wake = (reason) => {
        if (reason === 'retry-now' || !backoff) done();
      };
      if (this.stop$.signal.aborted) done();
    });
  }

  private async upload(s: SnapshotBlob): Promise<Outcome> {
    const path =
      this.queue === 'snapshot'
        ? httpPaths.uploadSnapshot(this.device, s.id)
        : `${httpPaths.uploadHarvest(this.device, s.id)}?${s.upload ?? ''}`;
    const url = `${this.url.replace(/\/+$/, '')}${path}`;
    let status: number;
    let body = '';
    let retryAfter: unknown;
    const request = new AbortController();
    const abort = () => request.abort();
    const timer = setTimeout(abort, REQUEST_TIMEOUT_MS);
    this.stop$.signal.addEventListener('abort', abort);
    try {
      ({ status, body, retryAfter } = await put(
        url,
        { 'content-type': SNAPSHOT_CONTENT_TYPE, authorization: `Bearer ${this.credential}` },
        s.jpeg,
        request.signal,
        this.tls,
      ));
    } catch (err) {
      if (this.stop$.signal.aborted) return 'unreachable';
      // a TLS failure is logged once by its own sentence (which file to fix); it still counts
      const told = this.tlsErrors.report(err);
      return this.failed(
        'unreachable',
        { url, err: errorMessage(err) },
        `control plane unreachable; ${this.noun}s stay queued`,
        told,
      );
    } finally {
      clearTimeout(timer);
      this.stop$.signal.removeEventListener('abort', abort);
    }
    this.tlsErrors.reset();
    if (status >= 200 && status < 300) {
      if (this.state.failing) {
        this.log.info(
          {
            pending: this.pending(),
            outageS: Number(((Date.now() - (this.state.since ?? Date.now())) / 1000).toFixed(1)),
            attempts: this.attempts,
          },
          `${this.noun} uploads resumed`,
        );
      }
      this.state = { failing: undefined, since: undefined, detail: undefined };
      this.attempts = 0;
      return 'uploaded';
    }
    if (status === 401 || status === 403) {
      return this.failed(
        'refused',
        { url, status, body },
        'control plane refuses the device credential: it was revoked or replaced; enroll the box again (controlPlane.claimToken)',
      );
    }
    if (status === 408 || status === 429 || status >= 500) {
      this.retryAfter = retryAfterMs(retryAfter, Date.now(), this.timing.busyMaxMs);
      return this.failed(
        'busy',
        { url, status, body },
        `control plane busy or failing; ${this.noun}s stay queued`,
      );
    }
    this.log.error(
      { url, status, body, [this.queue]: s.id },
      `control plane rejected a ${this.noun}; dropping it`,
    );
    return 'rejected';
  }

  private pending(): number {
    const stats = this.spool.stats();
    return this.queue === 'snapshot' ? stats.snapshots.pending : stats.harvest.pending;
  }

  /** records a failed attempt; logs when the failure starts or changes, then a summary at most once a minute */
  private failed(
    failing: NonNullable<UploadState['failing']>,
    details: Record<string, unknown>,
    message: string,
    /** already logged in other words (a TLS failure) */
    logged = false,
  ): Outcome {
    const now = Date.now();
    this.attempts++;
    const detail = String(details.err ?? `HTTP ${details.status}`);
    if (this.state.failing !== failing) {
      this.state = { failing, since: this.state.since ?? now, detail };
      this.lastSummary = now;
      const log = failing === 'refused' ? this.log.error.bind(this.log) : this.log.warn.bind(this.log);
      if (!logged) log(details, message);
    } else if (now - this.lastSummary >= OUTAGE_SUMMARY_MS) {
      this.state.detail = detail;
      this.lastSummary = now;
      this.log.warn(
        {
          ...details,
          attempts: this.attempts,
          outageS: Math.round((now - (this.state.since ?? now)) / 1000),
          pending: this.pending(),
        },
        `still failing: ${message}`,
      );
    }
    return failing;
  }
}
