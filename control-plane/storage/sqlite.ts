import type Database from 'better-sqlite3';
import type { SqliteSettings } from '../config.ts';
import { planBatch } from './batch-plan.ts';
import { applyMigrations, SQLITE } from './migrations.ts';
import type {
  BatchOutcome,
  CommandRecord,
  DeviceFilter,
  DevicePage,
  DeviceRecord,
  EventFilter,
  IngestRecord,
  PutSnapshotOutcome,
  Repository,
  SnapshotRecord,
  StoredEvent,
  VacuumResult,
} from './repository.ts';
import {
  type CameraRow,
  type CommandRow,
  choosePage,
  type DeviceRow,
  type DeviceSizeRow,
  devicePage,
  deviceSizesQuery,
  devicesByIdSql,
  type EventRow,
  eventQuery,
  type JsonSql,
  latestCameraStatusSql,
  type SnapshotRow,
  toCommand,
  toDevice,
  toSnapshot,
  toStoredEvent,
} from './sql.ts';
import type { SqlAccess, SqlOutcome, SqlValue } from './sql-access.ts';
import { openSqlite } from './sqlite-connection.ts';
import { SqliteWriter } from './sqlite-writer.ts';
import { type BatchResult, batchRows, CONFLICTING } from './sqlite-writes.ts';

const q = () => '?';
const jsonSql: JsonSql = {
  field: (column, path) => `json_extract(${column}, '$.${path.join('.')}')`,
  anyCamera: (path, ph) =>
    `EXISTS (SELECT 1 FROM json_each(telemetry, '$.cameras') c WHERE CAST(json_extract(c.value, '$.${path.join('.')}') AS TEXT) = ${ph})`,
};

/** SQLite's `auto_vacuum` value for INCREMENTAL */
const INCREMENTAL_VACUUM = 2;

/**
 * A file made before incremental auto-vacuum was the default is rewritten once (VACUUM: it takes
 * as long as copying the file and needs its size free on disk), before ingest starts
 */
function enableIncrementalVacuum(db: Database.Database): void {
  if (db.pragma('auto_vacuum', { simple: true }) === INCREMENTAL_VACUUM) return;
  db.pragma('auto_vacuum = INCREMENTAL');
  db.exec('VACUUM');
}

/** every migration not applied yet, in one transaction */
async function migrate(db: Database.Database): Promise<void> {
  db.exec('BEGIN IMMEDIATE');
  try {
    await applyMigrations(SQLITE, q, async (sql, params = []) => {
      const statement = db.prepare(sql);
      if (statement.reader) return statement.all(...params) as Record<string, unknown>[];
      statement.run(...params);
      return [];
    });
    db.exec('COMMIT');
  } catch (err) {
    db.exec('ROLLBACK');
    throw err;
  }
}

/**
 * The SQLite backend (better-sqlite3, WAL). Writes go to a writer thread with its own connection
 * (a batch is one transaction, committed before `writeBatch` resolves), so the event loop keeps
 * serving MQTT and HTTP while SQLite writes; reads run here on a second connection and see every
 * committed transaction.
 */
export class SqliteRepository implements Repository {
  readonly backend = 'sqlite';
  /** the writer thread commits one batch while the next one waits in its queue */
  readonly concurrentWrites = 2;
  readonly sql: SqlAccess;
  private readonly stmts;

  private constructor(
    private readonly db: Database.Database,
    private readonly writer: SqliteWriter,
  ) {
    this.sql = {
      backend: 'sqlite',
      dialect: SQLITE,
      p: q,
      read: async <Row>(sql: string, params: readonly SqlValue[] = []) =>
        db.prepare(sql).all(...params) as Row[],
      write: async (statements) => (await writer.request({ op: 'sql', statements })) as SqlOutcome[],
    };
    this.stmts = {
      device: db.prepare('SELECT * FROM devices WHERE id = ?'),
      online: db.prepare("SELECT count(*) AS n FROM devices WHERE status = 'online' AND last_seen >= ?"),
      camerasOf: db.prepare(latestCameraStatusSql(q, 1)),
      countEvents: db.prepare('SELECT count(*) AS n FROM events'),
      snapshot: db.prepare('SELECT * FROM snapshots WHERE device = ? AND id = ?'),
      command: db.prepare('SELECT * FROM commands WHERE id = ?'),
    };
  }

  static async open(settings: SqliteSettings): Promise<SqliteRepository> {
    const db = openSqlite(settings);
    const writer = new SqliteWriter(settings);
    try {
      await migrate(db);
      enableIncrementalVacuum(db);
      await writer.start();
    } catch (err) {
      db.close();
      await writer.close();
      throw err;
    }
    return new SqliteRepository(db, writer);
  }

  async writeBatch(records: readonly IngestRecord[]): Promise<BatchOutcome> {
    const plan = planBatch(records);
    const { cursors, statusDuplicates, unknownResults } = (await this.writer.request({
      op: 'batch',
      rows: batchRows(plan),
    })) as BatchResult;
    const inserted: StoredEvent[] = [];
    const conflicts: IngestRecord[] = [];
    let duplicates = statusDuplicates;
    plan.events.forEach((r, i) => {
      const cursor = cursors[i]!;
      if (cursor === 0) duplicates++;
      else if (cursor === CONFLICTING) conflicts.push(r);
      else inserted.push({ cursor, receivedAt: r.receivedAt, event: r.message });
    });
    return { inserted, duplicates, conflicts, unknownResults: unknownResults.map((i) => plan.results[i]!) };
  }

  async listDevices(filter: DeviceFilter): Promise<DevicePage> {
    const { sql, params } = deviceSizesQuery(filter, q, jsonSql);
    const chosen = choosePage(this.db.prepare(sql).all(...params) as DeviceSizeRow[], filter);
    if (chosen.ids.length === 0) return devicePage(chosen, [], []);
    const rows = this.db.prepare(devicesByIdSql(q, chosen.ids.length)).all(...chosen.ids) as DeviceRow[];
    const cameras = this.db
      .prepare(latestCameraStatusSql(q, chosen.ids.length))
      .all(...chosen.ids) as CameraRow[];
    return devicePage(chosen, rows, cameras);
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    const row = this.stmts.device.get(id) as DeviceRow | undefined;
    return row ? toDevice(row, this.stmts.camerasOf.all(id) as CameraRow[]) : undefined;
  }

  async countDevicesOnline(seenSince: number): Promise<number> {
    return (this.stmts.online.get(seenSince) as { n: number }).n;
  }

  async queryEvents(filter: EventFilter): Promise<StoredEvent[]> {
    const { sql, params } = eventQuery(filter, q);
    return (this.db.prepare(sql).all(...params) as EventRow[]).map(toStoredEvent);
  }

  async countEvents(): Promise<number> {
    return (this.stmts.countEvents.get() as { n: number }).n;
  }

  async putSnapshot(snapshot: SnapshotRecord): Promise<PutSnapshotOutcome> {
    return (await this.writer.request({ op: 'snapshot', snapshot })) as PutSnapshotOutcome;
  }

  async getSnapshot(device: string, id: string): Promise<SnapshotRecord | undefined> {
    const row = this.stmts.snapshot.get(device, id) as SnapshotRow | undefined;
    return row ? toSnapshot(row) : undefined;
  }

  async createCommand(c: CommandRecord): Promise<void> {
    await this.writer.request({
      op: 'command',
      params: [c.id, c.device, c.name, JSON.stringify(c.args), c.issuedAt],
    });
  }

  async getCommand(id: string): Promise<CommandRecord | undefined> {
    const row = this.stmts.command.get(id) as CommandRow | undefined;
    return row ? toCommand(row) : undefined;
  }

  async reclaimSpace(maxPages: number): Promise<VacuumResult> {
    return (await this.writer.request({ op: 'vacuum', pages: maxPages })) as VacuumResult;
  }

  async close(): Promise<void> {
    await this.writer.close();
    if (this.db.open) this.db.close();
  }
}
