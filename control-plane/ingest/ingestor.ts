import { errorMessage } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import type { IngestSettings } from '../config.ts';
import type { Metrics } from '../metrics.ts';
import {
  type IngestRecord,
  RefusedDataError,
  type Repository,
  type StoredEvent,
} from '../storage/repository.ts';
import { decodeMessage } from './decode.ts';
import { RateLimitedLog } from './rate-limited-log.ts';

/** confirms a message to whoever delivered it (the PUBACK); called once it is stored or rejected */
export type Ack = () => void;

interface Entry {
  record: IngestRecord | undefined;
  ack: Ack;
  receivedAt: number;
  /** the database refused the record on its own: acknowledged, not stored */
  refused?: boolean;
}

type Stored = Entry & { record: IngestRecord };

const RETRY_START_MS = 200;
const RETRY_MAX_MS = 10_000;

/**
 * Turns MQTT messages into stored rows. Each message is decoded and validated at once; valid ones
 * wait (at most `maxDelayMs`, at most `maxBatch` of them, or while the backend is busy) and are
 * written in one transaction. A message is acknowledged only after the transaction holding it
 * committed, and acknowledgements go out in arrival order (a rejected message is acknowledged in
 * its turn: it is counted and logged, never retried). A failing write is retried with backoff while
 * its messages stay unacknowledged, so the sender (or the broker) still holds them. A batch the
 * database refuses for a value in it is split in halves until the refused records are alone;
 * those are acknowledged, counted and logged, so one bad message never holds back the others.
 */
export class Ingestor {
  private pending: Entry[] = [];
  /** batches being written */
  private inFlight = 0;
  /** settles when every batch handed to the database so far has been acknowledged */
  private acknowledged: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private stopping = false;
  private readonly rejections: RateLimitedLog;

  constructor(
    private readonly repo: Repository,
    private readonly settings: IngestSettings,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    /** after a batch committed: its new events, and every record it stored (redelivered ones too) */
    private readonly onStored: (events: StoredEvent[], records: IngestRecord[]) => void,
  ) {
    this.rejections = new RateLimitedLog(log);
  }

  /** messages received and waiting for their batch to be handed to the database */
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
    if (!record && this.pending.length === 0 && this.inFlight === 0) {
      ack();
      return;
    }
    this.pending.push({ record, ack, receivedAt });
    this.schedule();
  }

  /** writes what is pending and waits for it; a write that keeps failing is abandoned (unacknowledged) */
  async stop(): Promise<void> {
    this.stopping = true;
    while (this.inFlight > 0 || this.pending.length > 0) {
      if (this.pending.length > 0 && this.inFlight < this.repo.concurrentWrites) this.flush();
      else await this.acknowledged;
    }
  }

  private schedule(): void {
    if (this.inFlight >= this.repo.concurrentWrites) return;
    if (this.pending.length >= this.settings.maxBatch) this.flush();
    else if (this.settings.maxDelayMs > 0)
      this.timer ??= setTimeout(() => this.flush(), this.settings.maxDelayMs);
    else this.immediate ??= setImmediate(() => this.flush());
  }

  /**
   * Hands pending messages to the database, as many batches at once as the backend takes. Each
   * batch is acknowledged after it and every batch before it are stored, so acknowledgements keep
   * the arrival order.
   */
  private flush(): void {
    clearTimeout(this.timer);
    clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    while (this.inFlight < this.repo.concurrentWrites && this.pending.length > 0) {
      const batch = this.pending.splice(0, this.settings.maxBatch);
      this.inFlight++;
      const stored = this.store(batch);
      this.acknowledged = Promise.all([this.acknowledged, stored]).then(([, inserted]) =>
        this.acknowledge(batch, inserted),
      );
      void stored.finally(() => {
        this.inFlight--;
        if (this.pending.length > 0) this.schedule();
      });
    }
  }

  /** the batch's new events once it is stored; undefined when it was abandoned at stop */
  private async store(batch: Entry[]): Promise<StoredEvent[] | undefined> {
    const entries = batch.filter((e): e is Stored => e.record !== undefined);
    return entries.length === 0 ? [] : this.storeEntries(entries);
  }

  /**
   * Writes the entries' records; the halves of a batch the database refused are written one after
   * the other, so their events still get cursors in arrival order.
   */
  private async storeEntries(entries: Stored[]): Promise<StoredEvent[] | undefined> {
    try {
      return await this.write(entries.map((e) => e.record));
    } catch (err) {
      if (!(err instanceof RefusedDataError)) throw err;
      if (entries.length === 1) {
        this.refuse(entries[0]!, err);
        return [];
      }
      const half = Math.ceil(entries.length / 2);
      const first = await this.storeEntries(entries.slice(0, half));
      const second = first && (await this.storeEntries(entries.slice(half)));
      return second && [...first, ...second];
    }
  }

  /** stores the records, retrying while the database fails for its own reasons */
  private async write(records: IngestRecord[]): Promise<StoredEvent[] | undefined> {
    let retryMs = RETRY_START_MS;
    for (;;) {
      try {
        const outcome = await this.repo.writeBatch(records);
        this.metrics.duplicates += outcome.duplicates;
        this.metrics.batches++;
        return outcome.inserted;
      } catch (err) {
        this.metrics.writeFailures++;
        if (err instanceof RefusedDataError) throw err;
        this.log.error(
          { err: errorMessage(err), messages: records.length, retryInMs: retryMs },
          'cannot store a batch; its messages stay unacknowledged and the write is retried',
        );
        if (this.stopping) {
          this.pending = [];
          return undefined;
        }
        await new Promise((r) => setTimeout(r, retryMs));
        retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
      }
    }
  }

  private refuse(entry: Stored, err: RefusedDataError): void {
    entry.refused = true;
    this.metrics.countRejected('refused_by_database');
    const { kind, device } = entry.record;
    this.rejections.warn(
      `refused_by_database/${device}`,
      { kind, device, err: err.message, payload: entry.record.payload.slice(0, 200) },
      'message dropped: the database refuses a value in it, although it follows the wire contract',
    );
  }

  private acknowledge(batch: Entry[], inserted: StoredEvent[] | undefined): void {
    if (!inserted) return;
    const now = Date.now();
    const records: IngestRecord[] = [];
    for (const e of batch) {
      if (e.record && !e.refused) {
        records.push(e.record);
        this.metrics.countIngested(e.record.kind);
        this.metrics.observeLatency((now - e.receivedAt) / 1000);
      }
      try {
        e.ack();
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, 'cannot acknowledge a stored message');
      }
    }
    if (records.length === 0) return;
    try {
      this.onStored(inserted, records);
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'a live-event listener failed');
    }
  }
}
