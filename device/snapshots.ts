import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { httpPaths, SNAPSHOT_CONTENT_TYPE } from '../contract/index.ts';
import type { DeviceConfig } from './config.ts';
import type { SnapshotBlob, Spool } from './spool.ts';
import { type ClientTls, TlsErrorLog, tlsConnectOptions } from './tls.ts';

const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 60_000;
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
): Promise<{ status: number; body: string }> {
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
          res.once('end', () => resolve({ status, body: '' }));
          return;
        }
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (text.length < MAX_ERROR_BODY) text += chunk;
        });
        res.once('end', () => resolve({ status, body: text.slice(0, MAX_ERROR_BODY) }));
      },
    );
    req.once('error', reject);
    req.end(body);
  });
}

type Outcome = 'uploaded' | 'retry' | 'rejected';

/**
 * Uploads the spool's snapshots to the control plane over HTTP(S), oldest first, one at a time, with
 * the device's credential. While the control plane is unreachable (or answers 5xx, 429, 401/403)
 * the snapshot stays queued in the spool and is retried with exponential backoff; a snapshot the
 * control plane rejects for good (another 4xx) is dropped with an error log.
 */
export class SnapshotUploader {
  private controlPlane: DeviceConfig['controlPlane'];
  private tlsErrors: TlsErrorLog;
  private readonly stop$ = new AbortController();
  /** ends the current wait: for new work (`kick`) only when idle, for anything else also a backoff */
  private wake: ((reason: 'work' | 'retry-now') => void) | undefined;
  private running: Promise<void> | undefined;
  private backoff = BACKOFF_START_MS;
  private failing = false;
  private readonly waiters = new Map<string, ((uploaded: boolean) => void)[]>();

  constructor(
    private readonly device: string,
    controlPlane: DeviceConfig['controlPlane'],
    private readonly spool: Spool,
    private readonly log: Logger,
    /** the CA (and client certificate) to verify an https:// control plane with */
    private readonly tls?: ClientTls,
  ) {
    this.controlPlane = controlPlane;
    this.tlsErrors = this.tlsErrorLog();
  }

  private tlsErrorLog(): TlsErrorLog {
    return new TlsErrorLog(this.log, this.tls, {
      name: 'control plane',
      urlKey: 'controlPlane.url',
      url: this.controlPlane.url,
    });
  }

  start(): void {
    this.running ??= this.run();
  }

  /** a new snapshot is in the spool */
  kick(): void {
    this.wake?.('work');
  }

  /** new URL or credential (config reload): retry now */
  setControlPlane(controlPlane: DeviceConfig['controlPlane']): void {
    this.controlPlane = controlPlane;
    this.tlsErrors = this.tlsErrorLog();
    this.backoff = BACKOFF_START_MS;
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
      const next = this.spool.oldestSnapshot();
      if (!next) {
        await this.idle(Number.POSITIVE_INFINITY);
        continue;
      }
      const outcome = await this.upload(next);
      if (signal.aborted) break;
      if (outcome === 'retry') {
        await this.idle(this.backoff * (0.8 + Math.random() * 0.4));
        this.backoff = Math.min(BACKOFF_MAX_MS, this.backoff * 2);
        continue;
      }
      this.backoff = BACKOFF_START_MS;
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
    const url = `${this.controlPlane.url.replace(/\/+$/, '')}${httpPaths.uploadSnapshot(this.device, s.id)}`;
    let status: number;
    let body: string;
    try {
      ({ status, body } = await put(
        url,
        { 'content-type': SNAPSHOT_CONTENT_TYPE, authorization: `Bearer ${this.controlPlane.token}` },
        s.jpeg,
        AbortSignal.any([this.stop$.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]),
        this.tls,
      ));
    } catch (err) {
      if (this.stop$.signal.aborted) return 'retry';
      if (this.tlsErrors.report(err)) {
        this.failing = true;
        return 'retry';
      }
      if (!this.failing)
        this.log.warn({ url, err: errorMessage(err) }, 'control plane unreachable; snapshots stay queued');
      this.failing = true;
      return 'retry';
    }
    this.tlsErrors.reset();
    if (status >= 200 && status < 300) {
      if (this.failing)
        this.log.info({ pending: this.spool.stats().snapshots.pending }, 'snapshot uploads resumed');
      this.failing = false;
      return 'uploaded';
    }
    if (status === 401 || status === 403) {
      this.log.error(
        { url, status, body },
        'control plane refuses the device credential: check controlPlane.token',
      );
      return 'retry';
    }
    if (status === 408 || status === 429 || status >= 500) {
      if (!this.failing)
        this.log.warn({ url, status, body }, 'control plane busy or failing; snapshots stay queued');
      this.failing = true;
      return 'retry';
    }
    this.log.error({ url, status, body, snapshot: s.id }, 'control plane rejected a snapshot; dropping it');
    return 'rejected';
  }
}
