import { setTimeout as sleep } from 'node:timers/promises';
import type { RetentionLimitSettings, RetentionSettings } from '../config.ts';
import type { StillHeld } from '../leased-job.ts';
import type { RetentionLimitKind, RetentionMetrics } from '../metrics.ts';
import type { Repository } from '../storage/repository.ts';
import type { SqlValue } from '../storage/sql-access.ts';
import { RETENTION_KINDS, type RetentionKind, type RetentionKindName } from './kinds.ts';

const DAY_MS = 24 * 3600 * 1000;
const MIB = 1024 * 1024;
/** rows summed by one read when estimating a kind's size (a short read: SQLite reads on the event loop) */
const SIZE_SCAN_ROWS = 1000;
/** free pages one incremental-vacuum step moves (4 MiB at SQLite's default page size) */
const VACUUM_PAGES = 1024;

export interface KindReport {
  deletedByAge: number;
  deletedBySize: number;
  bytesDeleted: number;
  /** estimated bytes left */
  storedBytes: number;
}

export interface RetentionReport {
  kinds: Record<string, KindReport>;
  /** bytes the database file shrank by */
  reclaimedBytes: number;
  /** false when the run stopped early because the lease was lost */
  complete: boolean;
}

class LeaseLost extends Error {}

/**
 * A kind retention enforces with its own code instead of a table's rows: the artifacts, whose
 * bytes are outside the database and which stay while a rollout references them
 * (retention/artifacts.ts). `check` throws when the lease is lost; `count` records deletions.
 */
export interface RetentionStep {
  name: RetentionKindName;
  run(
    limit: RetentionLimitSettings,
    check: () => void,
    count: (limit: RetentionLimitKind, rows: number, bytes: number) => void,
  ): Promise<KindReport>;
}

/**
 * Deletes what is past its limits, kind by kind: first rows older than `maxAgeDays`, then the
 * oldest rows until the kind's estimated size is within `maxMiB`. Deletes go in transactions of
 * `batchRows` rows with `pauseMs` between them, so ingest (whose batches queue beside them) waits
 * for one such transaction at most; on SQLite the freed pages are then given back to the file
 * system by incremental vacuum, a few MiB per step. Before every step it checks that this
 * replica still holds the lease, and stops when not.
 */
export class Retention {
  constructor(
    private readonly repo: Repository,
    private readonly settings: RetentionSettings,
    private readonly metrics: RetentionMetrics,
    private readonly kinds: readonly RetentionKind[] = RETENTION_KINDS,
    private readonly clock: () => number = Date.now,
    private readonly steps: readonly RetentionStep[] = [],
  ) {}

  async run(stillHeld: StillHeld = () => true): Promise<RetentionReport> {
    const started = this.clock();
    const report: RetentionReport = { kinds: {}, reclaimedBytes: 0, complete: true };
    const check = () => {
      if (!stillHeld()) throw new LeaseLost();
    };
    try {
      for (const kind of this.kinds) {
        const k: KindReport = { deletedByAge: 0, deletedBySize: 0, bytesDeleted: 0, storedBytes: 0 };
        report.kinds[kind.name] = k;
        await this.retain(kind, this.settings[kind.name], k, started, check);
      }
      for (const step of this.steps) {
        const k = await step.run(this.settings[step.name], check, (limit, rows, bytes) =>
          this.metrics.countDeleted(step.name, limit, rows, bytes),
        );
        report.kinds[step.name] = k;
        this.metrics.storedBytes.set(step.name, k.storedBytes);
      }
      let more = true;
      while (more) {
        check();
        const vacuum = await this.repo.reclaimSpace(VACUUM_PAGES);
        report.reclaimedBytes += vacuum.bytes;
        this.metrics.reclaimedBytes += vacuum.bytes;
        more = vacuum.more && vacuum.bytes > 0;
        if (more) await sleep(this.settings.pauseMs);
      }
    } catch (err) {
      if (!(err instanceof LeaseLost)) {
        this.metrics.failures++;
        throw err;
      }
      report.complete = false;
    } finally {
      this.metrics.runs++;
      this.metrics.lastRunAt = this.clock();
      this.metrics.lastRunSeconds = (this.metrics.lastRunAt - started) / 1000;
    }
    return report;
  }

  private async retain(
    kind: RetentionKind,
    limit: RetentionLimitSettings,
    report: KindReport,
    now: number,
    check: () => void,
  ): Promise<void> {
    const { p } = this.repo.sql;
    const { batchRows } = this.settings;
    const order = orderOf(kind);
    const deletable = kind.deletable ? ` AND ${kind.deletable}` : '';
    const select = (where: string, limit: string) =>
      `SELECT ${columnsOf(kind)} FROM ${kind.table}
        WHERE ${where}${deletable} ORDER BY ${order.join(', ')} LIMIT ${limit}`;
    const byAge = select(`${kind.timeColumn} < ${p(1)}`, p(2));
    const cutoff = now - limit.maxAgeDays * DAY_MS;
    for (;;) {
      check();
      const rows = await this.repo.sql.read<Row>(byAge, [cutoff, batchRows]);
      if (rows.length === 0) break;
      const bytes = await this.delete(kind, rows, 'age');
      report.deletedByAge += rows.length;
      report.bytesDeleted += bytes;
      if (rows.length < batchRows) break;
      await sleep(this.settings.pauseMs);
    }
    const maxBytes = limit.maxMiB * MIB;
    let stored = await this.storedBytes(kind, check);
    const oldest = select('1 = 1', p(1));
    while (stored > maxBytes) {
      check();
      const rows = await this.repo.sql.read<Row>(oldest, [batchRows]);
      // only as many of the oldest as bring the kind within its limit
      let excess = stored - maxBytes;
      const victims: Row[] = [];
      for (const row of rows) {
        if (excess <= 0) break;
        victims.push(row);
        excess -= Number(row.b ?? 0);
      }
      if (victims.length === 0) break;
      const bytes = await this.delete(kind, victims, 'size');
      report.deletedBySize += victims.length;
      report.bytesDeleted += bytes;
      stored -= bytes;
      if (stored > maxBytes) await sleep(this.settings.pauseMs);
    }
    report.storedBytes = Math.max(0, stored);
    this.metrics.storedBytes.set(kind.name, report.storedBytes);
  }

  /**
   * Deletes, in one transaction, the rows read: the deletable rows up to the last of them in the
   * kind's order (the same rows, as new rows come later in that order); answers their estimated bytes
   */
  private async delete(kind: RetentionKind, rows: Row[], limit: RetentionLimitKind): Promise<number> {
    const { p } = this.repo.sql;
    const order = orderOf(kind);
    const last = positionOf(rows.at(-1)!, order.length);
    const deletable = kind.deletable ? ` AND ${kind.deletable}` : '';
    await this.repo.sql.write([
      {
        // the time bound alone lets the backend use the time column's index
        sql: `DELETE FROM ${kind.table} WHERE ${kind.timeColumn} <= ${p(1)}
          AND (${order.join(', ')}) <= (${order.map((_, i) => p(i + 2)).join(', ')})${deletable}`,
        params: [last[0]!, ...last],
      },
    ]);
    const bytes = rows.reduce((sum, r) => sum + Number(r.b ?? 0), 0);
    this.metrics.countDeleted(kind.name, limit, rows.length, bytes);
    return bytes;
  }

  /**
   * The kind's estimated bytes, summed in short reads along its order (so that no read holds the
   * event loop or a connection for long, however large the table)
   */
  private async storedBytes(kind: RetentionKind, check: () => void): Promise<number> {
    const { p } = this.repo.sql;
    const order = orderOf(kind);
    const first = `SELECT ${columnsOf(kind)} FROM ${kind.table} ORDER BY ${order.join(', ')} LIMIT ${p(1)}`;
    const next = `SELECT ${columnsOf(kind)} FROM ${kind.table}
      WHERE ${kind.timeColumn} >= ${p(1)} AND (${order.join(', ')}) > (${order.map((_, i) => p(i + 2)).join(', ')})
      ORDER BY ${order.join(', ')} LIMIT ${p(order.length + 2)}`;
    let total = 0;
    let last: SqlValue[] | undefined;
    for (;;) {
      check();
      const rows = await this.repo.sql.read<Row>(
        last === undefined ? first : next,
        last === undefined ? [SIZE_SCAN_ROWS] : [last[0]!, ...last, SIZE_SCAN_ROWS],
      );
      for (const r of rows) total += Number(r.b ?? 0);
      if (rows.length < SIZE_SCAN_ROWS) return total;
      last = positionOf(rows.at(-1)!, order.length);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

/** the order retention walks a kind in: oldest first, ties by the key */
const orderOf = (kind: RetentionKind): string[] => [kind.timeColumn, ...kind.keyColumns];

/** what a read returns of each row: its position in the kind's order (c0, c1 …) and its bytes (b) */
const columnsOf = (kind: RetentionKind): string =>
  [...orderOf(kind).map((c, i) => `${c} AS c${i}`), `${kind.rowBytes} AS b`].join(', ');

type Row = Record<string, SqlValue> & { b: number | string | null };

const positionOf = (row: Row, n: number): SqlValue[] => Array.from({ length: n }, (_, i) => row[`c${i}`]!);
