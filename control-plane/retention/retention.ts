import { setTimeout as sleep } from 'node:timers/promises';
import type { RetentionLimitSettings, RetentionSettings } from '../config.ts';
import type { StillHeld } from '../leased-job.ts';
import type { RetentionLimitKind, RetentionMetrics } from '../metrics.ts';
import type { Repository } from '../storage/repository.ts';
import type { SqlValue } from '../storage/sql-access.ts';
import { RETENTION_KINDS, type RetentionKind } from './kinds.ts';

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

interface Candidate {
  k: SqlValue;
  b: number | string | null;
}

class LeaseLost extends Error {}

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
    const deletable = kind.deletable ? ` AND ${kind.deletable}` : '';
    const select = (where: string, limit: string) =>
      `SELECT ${kind.keyColumn} AS k, ${kind.rowBytes} AS b FROM ${kind.table}
        WHERE ${where}${deletable} ORDER BY ${kind.timeColumn}, ${kind.keyColumn} LIMIT ${limit}`;
    const byAge = select(`${kind.timeColumn} < ${p(1)}`, p(2));
    const cutoff = now - limit.maxAgeDays * DAY_MS;
    for (;;) {
      check();
      const rows = await this.repo.sql.read<Candidate>(byAge, [cutoff, batchRows]);
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
      const rows = await this.repo.sql.read<Candidate>(oldest, [batchRows]);
      // only as many of the oldest as bring the kind within its limit
      let excess = stored - maxBytes;
      const victims: Candidate[] = [];
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

  /** deletes the rows in one transaction; answers their estimated bytes */
  private async delete(kind: RetentionKind, rows: Candidate[], limit: RetentionLimitKind): Promise<number> {
    const { p } = this.repo.sql;
    const keys = rows.map((r) => r.k);
    const list = keys.map((_, i) => p(i + 1)).join(', ');
    await this.repo.sql.write([
      { sql: `DELETE FROM ${kind.table} WHERE ${kind.keyColumn} IN (${list})`, params: keys },
    ]);
    const bytes = rows.reduce((sum, r) => sum + Number(r.b ?? 0), 0);
    this.metrics.countDeleted(kind.name, limit, rows.length, bytes);
    return bytes;
  }

  /**
   * The kind's estimated bytes, summed in short reads along its key (so that no read holds the
   * event loop or a connection for long, however large the table)
   */
  private async storedBytes(kind: RetentionKind, check: () => void): Promise<number> {
    const { p } = this.repo.sql;
    const chunk = (after: boolean) =>
      `SELECT count(*) AS n, sum(b) AS s, max(k) AS last FROM (
        SELECT ${kind.keyColumn} AS k, ${kind.rowBytes} AS b FROM ${kind.table}
        ${after ? `WHERE ${kind.keyColumn} > ${p(1)}` : ''} ORDER BY ${kind.keyColumn} LIMIT ${p(after ? 2 : 1)}) x`;
    const first = chunk(false);
    const next = chunk(true);
    let total = 0;
    let last: SqlValue | undefined;
    for (;;) {
      check();
      const [row] = await this.repo.sql.read<{
        n: number | string;
        s: number | string | null;
        last: SqlValue;
      }>(last === undefined ? first : next, last === undefined ? [SIZE_SCAN_ROWS] : [last, SIZE_SCAN_ROWS]);
      const n = Number(row?.n ?? 0);
      total += Number(row?.s ?? 0);
      if (n < SIZE_SCAN_ROWS) return total;
      last = row!.last;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}
