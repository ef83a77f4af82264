import { errorMessage } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import type { IngestSettings } from '../config.ts';
import type { Metrics } from '../metrics.ts';
import type { IngestRecord, Repository, StoredEvent } from '../storage/repository.ts';
import { decodeMessage } from './decode.ts';
import { RateLimitedLog } from './rate-limited-log.ts';

/** confirms a message to whoever delivered it (the PUBACK); called once it is stored or rejected */
export type Ack = () => void;

interface Entry {
  record: IngestRecord | undefined;
  ack: Ack;
  receivedAt: number;
}

const RETRY_START_MS = 200;
const RETRY_MAX_MS = 10_000;

/**
 * Turns MQTT messages into stored rows. Each message is decoded and validated at once; valid ones
 * wait (at most `maxDelayMs`, at most `maxBatch` of them) and are written in one transaction. A
 * message is acknowledged only after the transaction holding it committed, and acknowledgements go
 * out in arrival order (a rejected message is acknowledged in its turn: it is counted and logged,
 * never retried). A failing write is retried with backoff while its messages stay unacknowledged,
 * so the sender (or the broker) still holds them.
 */
export class Ingestor {
  private pending: Entry[] = [];
  private writing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  private readonly rejections: RateLimitedLog;

  constructor(
    private readonly repo: Repository,
    private readonly settings: IngestSettings,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly onStored: (events: StoredEvent[]) => void,
  ) {
    this.rejections = new RateLimitedLog(log);
  }

  /** messages received and not yet acknowledged */
  get pendingCount(): number {
    return this.pending.length;
  }

  /** after `stop`, messages are left unacknowledged: their sender keeps them and sends them again */
  accept(topic: string, payload: Buffer, ack: Ack): void {
    if (this.stopping) return;
    const receivedAt = Date.now();
    const decoded = decodeMessage(topic, payload, receivedAt);
    let record: IngestRecord | undefined;
    if (decoded.ok === true) {
      record = decoded.record;
    } else if (decoded.ok === false) {
      this.metrics.countRejected(decoded.reason);
      this.rejections.warn(
        `${decoded.reason}/${decoded.device ?? topic}`,
        { topic, reason: decoded.reason, detail: decoded.detail },
        'message rejected: it does not follow the wire contract (see contract/)',
      );
    }
    if (!record && this.pending.length === 0 && !this.writing) {
      ack();
      return;
    }
    this.pending.push({ record, ack, receivedAt });
    this.schedule();
  }

  /** writes what is pending and waits for it; a write that keeps failing is abandoned (unacknowledged) */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    while (this.writing || this.pending.length > 0) {
      if (this.writing) await this.writing;
      else this.flush();
    }
  }

  private schedule(): void {
    if (this.writing) return;
    if (this.pending.length >= this.settings.maxBatch) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.settings.maxDelayMs);
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.writing || this.pending.length === 0) return;
    const batch = this.pending.splice(0, this.settings.maxBatch);
    this.writing = this.write(batch).finally(() => {
      this.writing = undefined;
      if (this.pending.length > 0) this.flush();
    });
  }

  private async write(batch: Entry[]): Promise<void> {
    const records = batch.flatMap((e) => (e.record ? [e.record] : []));
    let inserted: StoredEvent[] = [];
    let retryMs = RETRY_START_MS;
    for (;;) {
      try {
        if (records.length > 0) {
          const outcome = await this.repo.writeBatch(records);
          inserted = outcome.inserted;
          this.metrics.duplicates += outcome.duplicates;
          this.metrics.batches++;
        }
        break;
      } catch (err) {
        this.metrics.writeFailures++;
        this.log.error(
          { err: errorMessage(err), messages: records.length, retryInMs: retryMs },
          'cannot store a batch; its messages stay unacknowledged and the write is retried',
        );
        if (this.stopping) {
          this.pending = [];
          return;
        }
        await new Promise((r) => setTimeout(r, retryMs));
        retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
      }
    }
    const now = Date.now();
    for (const e of batch) {
      if (e.record) {
        this.metrics.countIngested(e.record.kind);
        this.metrics.observeLatency((now - e.receivedAt) / 1000);
      }
      e.ack();
    }
    if (inserted.length > 0) this.onStored(inserted);
  }
}
