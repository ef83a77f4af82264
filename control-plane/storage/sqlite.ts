import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { ArgusError } from '../../common/errors.ts';
import type { SqliteSettings } from '../config.ts';
import { planBatch } from './batch-plan.ts';
import { CREATE_MIGRATIONS_TABLE, MIGRATIONS, SQLITE } from './migrations.ts';
import type {
  BatchOutcome,
  CommandRecord,
  DeviceRecord,
  EventFilter,
  IngestRecord,
  PutSnapshotOutcome,
  Repository,
  SnapshotRecord,
  StoredEvent,
} from './repository.ts';
import {
  type CameraRow,
  type CommandRow,
  commandResultUpsertSql,
  type DeviceRow,
  deviceUpsertSql,
  type EventRow,
  eventQuery,
  latestCameraStatusSql,
  toCommand,
  toDevice,
  toStoredEvent,
} from './sql.ts';

const q = () => '?';

function migrate(db: Database.Database): void {
  db.exec(CREATE_MIGRATIONS_TABLE);
  const applied = new Set(
    (db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map(
      (r) => r.version,
    ),
  );
  for (const m of MIGRATIONS) {
    if (applied.has(m.version)) continue;
    db.transaction(() => {
      for (const statement of m.statements(SQLITE)) db.exec(statement);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        m.version,
        m.name,
        new Date().toISOString(),
      );
    })();
  }
}

/**
 * The SQLite backend (better-sqlite3, WAL). Writes are synchronous and run on the event loop;
 * a batch is one transaction, committed before `writeBatch` resolves.
 */
export class SqliteRepository implements Repository {
  readonly backend = 'sqlite';
  /** writes are synchronous: one at a time */
  readonly concurrentWrites = 1;
  private readonly db: Database.Database;
  private readonly stmts;

  private constructor(db: Database.Database) {
    this.db = db;
    this.stmts = {
      insertEvent: db.prepare(
        `INSERT INTO events (id, seq, phase, device, camera, camera_seq, rule, rule_type, label, at, received_at, payload)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id, seq) DO NOTHING`,
      ),
      insertStatus: db.prepare(
        `INSERT INTO camera_statuses (id, device, camera, camera_seq, state, at, reason, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
      ),
      upsertDevice: db.prepare(deviceUpsertSql('VALUES (?, ?, ?, ?, ?, ?, ?, ?)', 'max')),
      upsertResult: db.prepare(commandResultUpsertSql(q)),
      devices: db.prepare('SELECT * FROM devices ORDER BY id'),
      device: db.prepare('SELECT * FROM devices WHERE id = ?'),
      online: db.prepare("SELECT count(*) AS n FROM devices WHERE status = 'online'"),
      cameras: db.prepare(latestCameraStatusSql(q, false)),
      camerasOf: db.prepare(latestCameraStatusSql(q, true)),
      countEvents: db.prepare('SELECT count(*) AS n FROM events'),
      insertSnapshot: db.prepare(
        `INSERT INTO snapshots (id, device, content_type, sha256, bytes, created_at)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
      ),
      snapshot: db.prepare('SELECT * FROM snapshots WHERE id = ?'),
      insertCommand: db.prepare(
        'INSERT INTO commands (id, device, name, args, issued_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING',
      ),
      command: db.prepare('SELECT * FROM commands WHERE id = ?'),
    };
  }

  static open(settings: SqliteSettings): SqliteRepository {
    let db: Database.Database;
    try {
      mkdirSync(dirname(settings.path), { recursive: true });
      db = new Database(settings.path);
    } catch (err) {
      throw new ArgusError(
        `cannot open the SQLite database ${settings.path}: ${(err as Error).message}`,
        'check storage.sqlite.path and that its directory is writable',
      );
    }
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${settings.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    db.pragma('busy_timeout = 5000');
    migrate(db);
    return new SqliteRepository(db);
  }

  async writeBatch(records: readonly IngestRecord[]): Promise<BatchOutcome> {
    const plan = planBatch(records);
    const s = this.stmts;
    return this.db.transaction((): BatchOutcome => {
      const inserted: StoredEvent[] = [];
      let duplicates = 0;
      for (const r of plan.events) {
        const m = r.message;
        const info = s.insertEvent.run(
          m.id,
          m.seq,
          m.phase,
          r.device,
          m.camera,
          m.cameraSeq,
          m.rule,
          m.ruleType,
          m.label,
          Date.parse(m.at),
          r.receivedAt,
          r.payload,
        );
        if (info.changes === 0) duplicates++;
        else inserted.push({ cursor: Number(info.lastInsertRowid), receivedAt: r.receivedAt, event: m });
      }
      for (const r of plan.statuses) {
        const m = r.message;
        const info = s.insertStatus.run(
          m.id,
          r.device,
          m.camera,
          m.cameraSeq,
          m.state,
          m.at,
          m.reason ?? null,
          r.receivedAt,
        );
        if (info.changes === 0) duplicates++;
      }
      for (const d of plan.devices)
        s.upsertDevice.run(
          d.id,
          d.status,
          d.statusAt,
          d.firstSeen,
          d.lastSeen,
          d.identity,
          d.telemetry,
          d.telemetryAt,
        );
      for (const r of plan.results)
        s.upsertResult.run(r.message.id, r.device, r.message.name, JSON.stringify(r.message), r.receivedAt);
      return { inserted, duplicates };
    })();
  }

  async listDevices(): Promise<DeviceRecord[]> {
    const cameras = this.stmts.cameras.all() as CameraRow[];
    return (this.stmts.devices.all() as DeviceRow[]).map((row) => toDevice(row, cameras));
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    const row = this.stmts.device.get(id) as DeviceRow | undefined;
    return row ? toDevice(row, this.stmts.camerasOf.all(id) as CameraRow[]) : undefined;
  }

  async countDevicesOnline(): Promise<number> {
    return (this.stmts.online.get() as { n: number }).n;
  }

  async queryEvents(filter: EventFilter): Promise<StoredEvent[]> {
    const { sql, params } = eventQuery(filter, q);
    return (this.db.prepare(sql).all(...params) as EventRow[]).map(toStoredEvent);
  }

  async countEvents(): Promise<number> {
    return (this.stmts.countEvents.get() as { n: number }).n;
  }

  async putSnapshot(s: SnapshotRecord): Promise<PutSnapshotOutcome> {
    const info = this.stmts.insertSnapshot.run(s.id, s.device, s.contentType, s.sha256, s.bytes, s.createdAt);
    if (info.changes === 1) return 'created';
    const existing = this.stmts.snapshot.get(s.id) as { sha256: string; device: string };
    return existing.sha256 === s.sha256 && existing.device === s.device ? 'unchanged' : 'conflict';
  }

  async getSnapshot(id: string): Promise<SnapshotRecord | undefined> {
    const row = this.stmts.snapshot.get(id) as
      | {
          id: string;
          device: string;
          content_type: string;
          sha256: string;
          bytes: Buffer;
          created_at: number;
        }
      | undefined;
    return row
      ? {
          id: row.id,
          device: row.device,
          contentType: row.content_type,
          sha256: row.sha256,
          bytes: row.bytes,
          createdAt: row.created_at,
        }
      : undefined;
  }

  async createCommand(c: CommandRecord): Promise<void> {
    this.stmts.insertCommand.run(c.id, c.device, c.name, JSON.stringify(c.args), c.issuedAt);
  }

  async getCommand(id: string): Promise<CommandRecord | undefined> {
    const row = this.stmts.command.get(id) as CommandRow | undefined;
    return row ? toCommand(row) : undefined;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
