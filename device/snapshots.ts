import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { httpPaths, SNAPSHOT_CONTENT_TYPE } from '../contract/index.ts';
import type { SnapshotBlob, Spool } from './spool.ts';

const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 60_000;
const REQUEST_TIMEOUT_MS = 15_000;

type Outcome = 'uploaded' | 'retry' | 'rejected';

/**
 * Uploads the spool's snapshots to the control plane over HTTP, oldest first, one at a time, with
 * the device's credential. While the control plane is unreachable (or answers 5xx, 429, 401/403)
 * the snapshot stays queued in the spool and is retried with exponential backoff; a snapshot the
 * control plane rejects for good (another 4xx) is dropped with an error log.
 */
export class SnapshotUploader {
  private url: string;
  private readonly stop$ = new AbortController();
  /** ends the current wait: for new work (`kick`) only when idle, for anything else also a backoff */
  private wake: ((reason: 'work' | 'retry-now') => void) | undefined;
  private running: Promise<void> | undefined;
  private backoff = BACKOFF_START_MS;
  private failing = false;
  private readonly waiters = new Map<string, ((uploaded: boolean) => void)[]>();

  constructor(
    private readonly device: string,
    controlPlaneUrl: string,
    /** the device's credential, sent as `Authorization: Bearer` */
    private credential: string,
    private readonly spool: Spool,
    private readonly log: Logger,
  ) {
    this.url = controlPlaneUrl;
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
    const url = `${this.url.replace(/\/+$/, '')}${httpPaths.uploadSnapshot(this.device, s.id)}`;
    let status: number;
    let body = '';
    try {
      const res = await fetch(url, {
        method: 'PUT',
        headers: {
          'content-type': SNAPSHOT_CONTENT_TYPE,
          authorization: `Bearer ${this.credential}`,
        },
        body: s.jpeg,
        signal: AbortSignal.any([this.stop$.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]),
      });
      status = res.status;
      if (!res.ok) body = (await res.text().catch(() => '')).slice(0, 300);
      else await res.body?.cancel();
    } catch (err) {
      if (this.stop$.signal.aborted) return 'retry';
      if (!this.failing)
        this.log.warn({ url, err: errorMessage(err) }, 'control plane unreachable; snapshots stay queued');
      this.failing = true;
      return 'retry';
    }
    if (status >= 200 && status < 300) {
      if (this.failing)
        this.log.info({ pending: this.spool.stats().snapshots.pending }, 'snapshot uploads resumed');
      this.failing = false;
      return 'uploaded';
    }
    if (status === 401 || status === 403) {
      this.log.error(
        { url, status, body },
        'control plane refuses the device credential: it was revoked or replaced; enroll the box again (controlPlane.claimToken)',
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
