import { errorMessage } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import type { IngestSettings } from '../config.ts';
import type { Metrics, QuarantineReason } from '../metrics.ts';
import { QuarantineStore } from '../storage/quarantine.ts';
import {
  type BatchOutcome,
  type IngestRecord,
  RefusedDataError,
  type Repository,
  type StoredEvent,
} from '../storage/repository.ts';
import type { RolloutStore, StatusOutcome, UpdateStatusRecord } from '../storage/rollouts.ts';
import { decodeMessage } from './decode.ts';
import { DeviceRate } from './device-rate.ts';
import { RateLimitedLog } from './rate-limited-log.ts';

/** what became of a message: stored, or not (rejected by the contract, quarantined) */
export type Verdict = 'stored' | 'rejected';

/**
 * confirms a message to whoever delivered it (the PUBACK); called once it is stored or rejected,
 * with the verdict (a broker keeps a retained message only when it was stored)
 */
export type Ack = (verdict: Verdict) => void;

interface Entry {
  record: IngestRecord | undefined;
  topic: string;
  ack: Ack;
  receivedAt: number;
  /** not stored although it followed the contract: quarantined, or rejected by the database's state */
  notStored?: boolean;
}

type Stored = Entry & { record: IngestRecord };

const RETRY_START_MS = 200;
const RETRY_MAX_MS = 10_000;

/**
 * Turns MQTT messages into stored rows. Each message is decoded and validated at once; valid ones
 * wait (at most `maxDelayMs`, at most `maxBatch` of them, or while the backend is busy) and are
 * written in one transaction. A message is acknowledged only after the transaction holding it
 * committed, and acknowledgements go out in arrival order (a rejected message is acknowledged in
 * its turn: it is counted and logged, never retried).
 *
 * One message never holds back the others: a batch that fails for any reason is split in halves
 * until the failing message is alone, and a message that fails alone is quarantined (kept raw
 * with the error, acknowledged, counted) while the rest is stored. Only when the database itself
 * does not answer (a probe after the failure fails too) is the write retried with backoff, its
 * messages unacknowledged so that the sender (or the broker) still holds them; meanwhile `health`
 * reports the control plane degraded.
 *
 * A device sending more than `deviceRate` has its acknowledgements paced: it slows down, other
 * devices do not.
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
  private readonly quarantine: QuarantineStore;
  private readonly rate: DeviceRate;
  /** why writes fail while the database does not answer; undefined while they succeed */
  private unreachable: string | undefined;

  constructor(
    private readonly repo: Repository,
    private readonly settings: IngestSettings,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    /** after a batch committed: its new events, and every record it stored (redelivered ones too) */
    private readonly onStored: (events: StoredEvent[], records: IngestRecord[]) => void,
    /** where update statuses go (the rollouts' assignments); without it they are rejected as unknown */
    private readonly updates?: Pick<RolloutStore, 'applyStatuses'>,
  ) {
    this.rejections = new RateLimitedLog(log);
    this.quarantine = new QuarantineStore(repo.sql);
    this.rate = new DeviceRate(settings.deviceRate.messagesPerSecond, settings.deviceRate.burst);
  }

  /** messages received and waiting for their batch to be handed to the database */
  get pendingCount(): number {
    return this.pending.length;
  }

  /** why ingest is degraded (empty when it is not): writes fail because the database does not answer */
  get degradedReasons(): string[] {
    return this.unreachable === undefined
      ? []
      : [`the database does not answer, messages wait unacknowledged: ${this.unreachable}`];
  }

  /** after `stop`, messages are left unacknowledged: their sender keeps them and sends them again */
  accept(topic: string, payload: Buffer, ack: Ack): void {
    if (this.stopping) return;
    const receivedAt = Date.now();
    const decoded = decodeMessage(topic, payload, receivedAt, this.settings.maxJsonDepth);
    let record: IngestRecord | undefined;
    let device: string | undefined;
    if (decoded.ok === true) {
      record = decoded.record;
      device = record.device;
    } else if (decoded.ok === false) {
      device = decoded.device;
      this.metrics.countRejected(decoded.reason);
      this.rejections.warn(
        `${decoded.reason}/${device ?? topic.slice(0, 200)}`,
        { topic: topic.slice(0, 200), reason: decoded.reason, detail: decoded.detail },
        'message rejected: it does not follow the wire contract (see contract/)',
      );
    }
    const paced = device === undefined ? ack : this.pace(device, ack);
    if (!record && this.pending.length === 0 && this.inFlight === 0) {
      paced('rejected');
      return;
    }
    this.pending.push({ record, topic, ack: paced, receivedAt });
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

  /** the acknowledgement of a device's message, delayed while the device is over its rate */
  private pace(device: string, ack: Ack): Ack {
    const wait = this.rate.delayMs(device);
    if (wait === 0) return ack;
    this.metrics.paced++;
    const due = performance.now() + wait;
    return (verdict) => {
      // a timer left when the control plane stops only acknowledges late: the sender resends
      setTimeout(() => ack(verdict), Math.max(0, due - performance.now())).unref();
    };
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
   * Writes the entries' records, retrying while the database does not answer. A write that fails
   * while it answers is split (the halves written one after the other, so that their events still
   * get cursors in arrival order) until the failing message is alone; that one is written once
   * more (a transient error, such as a deadlock, does not fail twice) and then quarantined. When
   * the quarantine cannot be written either, the database cannot write after all: the message is
   * retried like a batch while the database is down.
   */
  private async storeEntries(entries: Stored[]): Promise<StoredEvent[] | undefined> {
    let retryMs = RETRY_START_MS;
    let failedAlone = 0;
    for (;;) {
      let failure: unknown;
      try {
        const outcome = await this.write(entries.map((e) => e.record));
        this.unreachable = undefined;
        this.metrics.batches++;
        return (await this.settle(entries, outcome)) ? outcome.inserted : undefined;
      } catch (err) {
        failure = err;
      }
      this.metrics.writeFailures++;
      if (failure instanceof RefusedDataError || (await this.databaseWrites())) {
        if (entries.length > 1) return this.split(entries);
        if (!(failure instanceof RefusedDataError) && ++failedAlone < 2) continue;
        const reason: QuarantineReason =
          failure instanceof RefusedDataError ? 'refused_by_database' : 'write_failed';
        const kept = await this.toQuarantine([{ entry: entries[0]!, reason, detail: errorMessage(failure) }]);
        if (kept === true) return [];
        failure = kept;
      }
      if (!(await this.waitForDatabase(failure, entries.length, retryMs))) return undefined;
      retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
    }
  }

  /**
   * Writes a batch: update statuses to the rollouts' assignments (their own transaction, after the
   * rest: both are idempotent, so a batch written again after a failure changes nothing twice),
   * everything else through the repository. An update status for no assignment of its device
   * comes back among `unknownResults`, rejected like a result for no command.
   */
  private async write(records: IngestRecord[]): Promise<BatchOutcome> {
    const updates: UpdateStatusRecord[] = [];
    const byUpdate = new Map<UpdateStatusRecord, IngestRecord>();
    const rest: IngestRecord[] = [];
    for (const r of records) {
      if (r.kind !== 'update') {
        rest.push(r);
        continue;
      }
      const u = { device: r.device, message: r.message, payload: r.payload, receivedAt: r.receivedAt };
      updates.push(u);
      byUpdate.set(u, r);
    }
    const outcome: BatchOutcome =
      rest.length > 0
        ? await this.repo.writeBatch(rest)
        : { inserted: [], duplicates: 0, conflicts: [], unknownResults: [] };
    if (updates.length === 0) return outcome;
    const applied: StatusOutcome = this.updates
      ? await this.updates.applyStatuses(updates)
      : { duplicates: 0, unknown: updates, changed: 0 };
    return {
      ...outcome,
      duplicates: outcome.duplicates + applied.duplicates,
      unknownResults: [...outcome.unknownResults, ...applied.unknown.map((u) => byUpdate.get(u)!)],
    };
  }

  /** writes the halves of a batch that failed, one after the other */
  private async split(entries: Stored[]): Promise<StoredEvent[] | undefined> {
    const half = Math.ceil(entries.length / 2);
    const first = await this.storeEntries(entries.slice(0, half));
    const second = first && (await this.storeEntries(entries.slice(half)));
    return second && [...first, ...second];
  }

  /**
   * What a committed batch did not store: events that conflict with the stored ones go to
   * quarantine (retried while the database does not answer), results for no command of their
   * device are rejected. False when stopped before the quarantine was written (the batch then
   * stays unacknowledged and comes again).
   */
  private async settle(entries: Stored[], outcome: BatchOutcome): Promise<boolean> {
    this.metrics.duplicates += outcome.duplicates;
    if (outcome.conflicts.length === 0 && outcome.unknownResults.length === 0) return true;
    const byRecord = new Map(entries.map((e) => [e.record, e]));
    for (const record of outcome.unknownResults) {
      const e = byRecord.get(record)!;
      e.notStored = true;
      const update = record.kind === 'update';
      const reason = update ? 'unknown_assignment' : 'unknown_command';
      this.metrics.countRejected(reason);
      this.rejections.warn(
        `${reason}/${record.device}`,
        { device: record.device, topic: e.topic, payload: record.payload.slice(0, 200) },
        update
          ? 'update status rejected: no assignment with its id (of its rollout and artifact) was sent to this device'
          : 'command result rejected: no command with its id was sent to this device',
      );
    }
    const conflicts = outcome.conflicts.map((record) => ({
      entry: byRecord.get(record)!,
      reason: 'conflicting_duplicate' as const,
      detail: 'another event is stored under the same (device, id, seq)',
    }));
    let retryMs = RETRY_START_MS;
    for (;;) {
      const kept = await this.toQuarantine(conflicts);
      if (kept === true) return true;
      if (!(await this.waitForDatabase(kept, conflicts.length, retryMs))) return false;
      retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
    }
  }

  /** keeps the messages in the quarantine: true, or the error that prevented it */
  private async toQuarantine(
    items: { entry: Stored; reason: QuarantineReason; detail: string }[],
  ): Promise<true | unknown> {
    if (items.length === 0) return true;
    try {
      await this.quarantine.add(
        items.map(({ entry: e, reason, detail }) => ({
          device: e.record.device,
          topic: e.topic,
          reason,
          detail,
          payload: e.record.payload,
          receivedAt: e.receivedAt,
        })),
      );
    } catch (err) {
      return err;
    }
    this.unreachable = undefined;
    for (const { entry: e, reason, detail } of items) {
      e.notStored = true;
      this.metrics.countQuarantined(reason);
      this.rejections.warn(
        `quarantined/${reason}/${e.record.device}`,
        { device: e.record.device, topic: e.topic, reason, detail: detail.slice(0, 500) },
        'message quarantined: it follows the wire contract but cannot be stored (GET /api/v1/quarantine)',
      );
    }
    return true;
  }

  /**
   * Whether the database takes a trivial write (one that changes nothing but needs the write
   * path: a transaction, the write lock): a failure it also refuses is not the message's fault
   */
  private async databaseWrites(): Promise<boolean> {
    try {
      await this.repo.sql.write([{ sql: 'DELETE FROM quarantine WHERE id < 0' }]);
      return true;
    } catch {
      return false;
    }
  }

  /** reports the database unreachable and waits `ms`; false when stopping (give up, unacknowledged) */
  private async waitForDatabase(err: unknown, messages: number, ms: number): Promise<boolean> {
    this.unreachable = errorMessage(err);
    this.log.error(
      { err: this.unreachable, messages, retryInMs: ms },
      'cannot write to the database; the messages stay unacknowledged and the write is retried',
    );
    if (this.stopping) {
      this.pending = [];
      return false;
    }
    await new Promise((r) => setTimeout(r, ms));
    return true;
  }

  private acknowledge(batch: Entry[], inserted: StoredEvent[] | undefined): void {
    if (!inserted) return;
    const now = Date.now();
    const records: IngestRecord[] = [];
    for (const e of batch) {
      const stored = e.record !== undefined && !e.notStored;
      if (stored) {
        records.push(e.record!);
        this.metrics.countIngested(e.record!.kind);
        this.metrics.observeLatency((now - e.receivedAt) / 1000);
      }
      try {
        e.ack(stored ? 'stored' : 'rejected');
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
