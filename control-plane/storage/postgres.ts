import { finished } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { ArgusError } from '../../common/errors.ts';
import { redactUrl } from '../../common/net.ts';
import type { PostgresSettings } from '../config.ts';
import { type BatchPlan, type EventRecord, planBatch } from './batch-plan.ts';
import { availabilityInsertSql, availabilityOf, availabilityParams } from './device-history.ts';
import { applyMigrations, POSTGRES } from './migrations.ts';
import {
  type BatchOutcome,
  type CommandRecord,
  type DeviceFilter,
  type DevicePage,
  type DeviceRecord,
  type EventFilter,
  type IngestRecord,
  type PutSnapshotOutcome,
  RefusedDataError,
  type Repository,
  type SnapshotRecord,
  type StoredEvent,
  type VacuumResult,
} from './repository.ts';
import {
  type CameraRow,
  type CommandRow,
  choosePage,
  commandResultSql,
  DEVICE_COLUMNS,
  type DeviceRow,
  type DeviceSizeRow,
  devicePage,
  deviceSizesQuery,
  devicesByIdSql,
  deviceUpsertSql,
  type EventRow,
  eventQuery,
  existingSnapshotOutcome,
  type JsonSql,
  latestCameraStatusSql,
  type SnapshotIdentity,
  type SnapshotRow,
  sameEvent,
  snapshotIdentitySql,
  toCommand,
  toDevice,
  toSnapshot,
  toStoredEvent,
} from './sql.ts';
import type { SqlAccess, SqlValue } from './sql-access.ts';

const d = (i: number) => `$${i}`;
const jsonSql: JsonSql = {
  field: (column, path) => `(${column}::json #>> '{${path.join(',')}}')`,
  anyCamera: (path, ph) =>
    `EXISTS (SELECT 1 FROM json_array_elements(telemetry::json -> 'cameras') c WHERE (c #>> '{${path.join(',')}}') = ${ph})`,
};
/** batches written side by side at most: more did not raise the ingest rate on 2 cores */
const MAX_CONCURRENT_WRITES = 3;

/**
 * SQLSTATE classes of errors caused by a value of the statement: 22 data exception (e.g. a NUL
 * character in text), 23 integrity constraint violation, 54 program limit exceeded
 */
const REFUSED_DATA = /^(22|23|54)/;

function isRefusedData(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && REFUSED_DATA.test(code);
}
/** a migration lock key shared by every control plane on the same database */
const MIGRATION_LOCK = 0x61726775;

async function migrate(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await applyMigrations(POSTGRES, d, async (sql, params) => (await client.query(sql, params)).rows);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

type EventInsert = ReturnType<typeof eventRow>;

/**
 * what a batch's transaction wrote: the cursors of the events inserted (undefined: all of them),
 * of those not inserted because another content is stored under their (device, id, seq), and the
 * positions of the command results that answer no command of their device
 */
interface Written {
  events: Set<number> | undefined;
  conflicting: Set<number>;
  statusDuplicates: number;
  unknownResults: number[];
}

/** SQLSTATE of a unique index refusing a row */
const UNIQUE_VIOLATION = '23505';

function eventRow(r: EventRecord, cursor: number) {
  const m = r.message;
  return {
    cursor,
    id: m.id,
    seq: m.seq,
    phase: m.phase,
    device: r.device,
    camera: m.camera,
    camera_seq: m.cameraSeq,
    rule: m.rule,
    rule_type: m.ruleType,
    label: m.label,
    at: Date.parse(m.at),
    received_at: r.receivedAt,
    payload: r.payload,
  };
}

const EVENT_COLUMNS = [
  'cursor',
  'id',
  'seq',
  'phase',
  'device',
  'camera',
  'camera_seq',
  'rule',
  'rule_type',
  'label',
  'at',
  'received_at',
  'payload',
] as const satisfies readonly (keyof EventInsert)[];

const COPY_EVENTS = `COPY events (${EVENT_COLUMNS.join(', ')}) FROM STDIN`;
const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIALS = /[\\\t\n\r]/g;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** a value in COPY's text format (no value of an event row is NULL) */
function copyValue(v: string | number): string {
  if (typeof v === 'number') return String(v);
  return COPY_SPECIAL.test(v) ? v.replace(COPY_SPECIALS, (c) => COPY_ESCAPES[c]!) : v;
}

/** the rows in one COPY: it fails with a unique violation when one of them is stored already */
async function copyEvents(client: pg.PoolClient, rows: readonly EventInsert[]): Promise<void> {
  let text = '';
  for (const row of rows) {
    for (let i = 0; i < EVENT_COLUMNS.length; i++)
      text += (i === 0 ? '' : '\t') + copyValue(row[EVENT_COLUMNS[i]!]);
    text += '\n';
  }
  const stream = client.query(copyFrom(COPY_EVENTS));
  stream.end(text);
  await finished(stream);
}

/** `$1` cursors for a batch's events, in order, from the events' own sequence (looked up once) */
const RESERVE_CURSORS = `SELECT nextval(q.seq) AS cursor
  FROM (SELECT pg_get_serial_sequence('events', 'cursor')::regclass AS seq) q, generate_series(1, $1)
  ORDER BY 1`;

/**
 * The batch's events with the cursors reserved for them; rows already stored are skipped, and the
 * cursors of those inserted are returned
 */
const INSERT_EVENTS = `INSERT INTO events (cursor, id, seq, phase, device, camera, camera_seq, rule, rule_type, label, at, received_at, payload)
  SELECT cursor, id, seq, phase, device, camera, camera_seq, rule, rule_type, label, at, received_at, payload
  FROM json_to_recordset($1::json) AS x(
    cursor bigint, id text, seq integer, phase text, device text, camera text, camera_seq bigint,
    rule text, rule_type text, label text, at bigint, received_at bigint, payload text)
  ORDER BY cursor
  ON CONFLICT (device, id, seq) DO NOTHING
  RETURNING cursor`;

/** the stored text of each (device, id, seq) of `$1` (a JSON list of rows with those and a cursor) */
const STORED_EVENTS = `SELECT x.cursor, e.payload
  FROM json_to_recordset($1::json) AS x(cursor bigint, device text, id text, seq integer)
  JOIN events e ON e.device = x.device AND e.id = x.id AND e.seq = x.seq`;

const INSERT_STATUSES = `INSERT INTO camera_statuses (id, device, camera, camera_seq, state, at, reason, received_at)
  SELECT id, device, camera, camera_seq, state, at, reason, received_at
  FROM json_to_recordset($1::json) AS x(
    id text, device text, camera text, camera_seq bigint, state text, at text, reason text, received_at bigint)
  ON CONFLICT (device, id) DO NOTHING`;

/** the batch's telemetry into the history; messages stored before (same device and time) are skipped */
const INSERT_TELEMETRY = `INSERT INTO telemetry_history (device, at, received_at, payload)
  SELECT device, at, received_at, payload
  FROM json_to_recordset($1::json) AS x(device text, at bigint, received_at bigint, payload text)
  ON CONFLICT (device, at) DO NOTHING`;

/** every device of the batch in one statement, in id order (the plan sorts them) */
const UPSERT_DEVICES = deviceUpsertSql(
  `SELECT ${DEVICE_COLUMNS.join(', ')} FROM json_to_recordset($1::json) AS x(
    id text, status text, status_at bigint, first_seen bigint, last_seen bigint, identity text,
    telemetry text, telemetry_at bigint) ORDER BY id`,
  'greatest',
);

/** the cursors of `rows` (events not inserted) whose (device, id, seq) holds another content */
async function conflictingEvents(client: pg.PoolClient, rows: readonly EventInsert[]): Promise<Set<number>> {
  if (rows.length === 0) return new Set();
  const keys = rows.map((r) => ({ cursor: r.cursor, device: r.device, id: r.id, seq: r.seq }));
  const { rows: stored } = await client.query<{ cursor: string; payload: string }>(STORED_EVENTS, [
    JSON.stringify(keys),
  ]);
  const conflicting = new Set<number>();
  const byCursor = new Map(rows.map((r) => [r.cursor, r]));
  for (const { cursor, payload } of stored)
    if (!sameEvent(payload, byCursor.get(Number(cursor))!.payload)) conflicting.add(Number(cursor));
  return conflicting;
}

/**
 * The PostgreSQL backend (`pg` pool). A batch is one transaction on one connection; its events go
 * in as one INSERT that skips rows already stored. Batches reserve their events' cursors in the
 * order they are handed in (one short query each, one after the other), then insert and commit
 * side by side on their own connections, so that the server works on several batches at once.
 */
export class PostgresRepository implements Repository {
  readonly backend = 'postgres';
  /** batches in flight: each holds one connection, and one connection stays for reads */
  readonly concurrentWrites: number;
  /** settles when the last batch handed in has its cursors: the next one reserves after it */
  private reserveTurn: Promise<unknown> = Promise.resolve();
  readonly sql: SqlAccess;

  private constructor(
    private readonly pool: pg.Pool,
    poolSize: number,
  ) {
    this.concurrentWrites = Math.max(1, Math.min(MAX_CONCURRENT_WRITES, poolSize - 1));
    this.sql = {
      backend: 'postgres',
      dialect: POSTGRES,
      p: d,
      read: async <Row>(sql: string, params: readonly SqlValue[] = []) =>
        (await pool.query(sql, [...params])).rows as Row[],
      write: async (statements) => {
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          const outcomes = [];
          for (const { sql, params = [] } of statements) {
            const result = await client.query(sql, [...params]);
            outcomes.push({ rows: result.rows, changes: result.rowCount ?? 0 });
          }
          await client.query('COMMIT');
          return outcomes;
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw isRefusedData(err) ? new RefusedDataError((err as Error).message) : err;
        } finally {
          client.release();
        }
      },
    };
  }

  static async open(settings: PostgresSettings): Promise<PostgresRepository> {
    const pool = new pg.Pool({ connectionString: settings.url, max: settings.poolSize });
    pool.on('error', () => undefined);
    try {
      await migrate(pool);
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw new ArgusError(
        `cannot prepare the PostgreSQL database ${redactUrl(settings.url)}: ${(err as Error).message}`,
        'check storage.postgres.url, that the server runs and that the user may create tables',
      );
    }
    return new PostgresRepository(pool, settings.poolSize);
  }

  async writeBatch(records: readonly IngestRecord[]): Promise<BatchOutcome> {
    const plan = planBatch(records);
    const connecting = this.pool.connect();
    const cursors = this.reserveCursors(connecting, plan.events.length);
    const client = await connecting;
    try {
      const reserved = await cursors;
      const rows = plan.events.map((r, n) => eventRow(r, reserved[n]!));
      let written: Written;
      try {
        written = await this.transaction(client, plan, rows, 'copy');
      } catch (err) {
        // the batch holds an event stored before (QoS 1 redelivery): it is written again with
        // the insert that skips stored rows
        if ((err as { code?: unknown }).code !== UNIQUE_VIOLATION) throw err;
        written = await this.transaction(client, plan, rows, 'skip');
      }
      const inserted: StoredEvent[] = [];
      const conflicts: IngestRecord[] = [];
      let duplicates = written.statusDuplicates;
      plan.events.forEach((r, n) => {
        const cursor = reserved[n]!;
        if (!written.events || written.events.has(cursor))
          inserted.push({ cursor, receivedAt: r.receivedAt, event: r.message });
        else if (written.conflicting.has(cursor)) conflicts.push(r);
        else duplicates++;
      });
      const unknownResults = written.unknownResults.map((i) => plan.results[i]!);
      return { inserted, duplicates, conflicts, unknownResults };
    } catch (err) {
      throw isRefusedData(err) ? new RefusedDataError((err as Error).message) : err;
    } finally {
      client.release();
    }
  }

  /**
   * Writes a batch in one transaction. Its events go in by COPY (`copy`: the fastest way into
   * PostgreSQL, which fails on an event stored before) or by an INSERT that skips stored rows
   * (`skip`).
   */
  private async transaction(
    client: pg.PoolClient,
    plan: BatchPlan,
    rows: EventInsert[],
    events: 'copy' | 'skip',
  ): Promise<Written> {
    await client.query('BEGIN');
    try {
      const written: Written = {
        events: undefined,
        conflicting: new Set(),
        statusDuplicates: 0,
        unknownResults: [],
      };
      if (rows.length > 0) {
        if (events === 'copy') await copyEvents(client, rows);
        else {
          // one JSON parameter for the whole batch: PostgreSQL unpacks it faster than pg binds
          // thirteen parameters per row
          const inserted = await client.query<{ cursor: string }>(INSERT_EVENTS, [JSON.stringify(rows)]);
          const stored = new Set(inserted.rows.map((r) => Number(r.cursor)));
          written.events = stored;
          written.conflicting = await conflictingEvents(
            client,
            rows.filter((r) => !stored.has(r.cursor)),
          );
        }
      }
      if (plan.statuses.length > 0) {
        const { rowCount } = await client.query(INSERT_STATUSES, [
          JSON.stringify(
            plan.statuses.map(({ device, message: m, receivedAt }) => ({
              id: m.id,
              device,
              camera: m.camera,
              camera_seq: m.cameraSeq,
              state: m.state,
              at: m.at,
              reason: m.reason ?? null,
              received_at: receivedAt,
            })),
          ),
        ]);
        written.statusDuplicates = plan.statuses.length - (rowCount ?? 0);
      }
      if (plan.devices.length > 0)
        await client.query(UPSERT_DEVICES, [
          JSON.stringify(
            plan.devices.map((u) => ({
              id: u.id,
              status: u.status,
              status_at: u.statusAt,
              first_seen: u.firstSeen,
              last_seen: u.lastSeen,
              identity: u.identity,
              telemetry: u.telemetry,
              telemetry_at: u.telemetryAt,
            })),
          ),
        ]);
      if (plan.telemetry.length > 0)
        await client.query(INSERT_TELEMETRY, [
          JSON.stringify(
            plan.telemetry.map(({ device, message: m, receivedAt, payload }) => ({
              device,
              at: Date.parse(m.at),
              received_at: receivedAt,
              payload,
            })),
          ),
        ]);
      // one at a time, in order: each is written only when it changes the device's latest state
      for (const r of plan.availability)
        await client.query(availabilityInsertSql(d), availabilityParams(availabilityOf(r)));
      for (const [i, r] of plan.results.entries()) {
        const { rowCount } = await client.query(commandResultSql(d), [
          r.payload,
          r.receivedAt,
          r.message.id,
          r.device,
        ]);
        if (rowCount === 0) written.unknownResults.push(i);
      }
      await client.query('COMMIT');
      return written;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  /**
   * `n` increasing cursors, larger than those of every batch handed in before, reserved on the
   * batch's own connection (a batch holds one connection at a time, so batches in flight never
   * wait on each other for the pool)
   */
  private reserveCursors(client: Promise<pg.PoolClient>, n: number): Promise<number[]> {
    const reserved = this.reserveTurn.then(async () => {
      if (n === 0) return [];
      const { rows } = await (await client).query<{ cursor: string }>(RESERVE_CURSORS, [n]);
      return rows.map((r) => Number(r.cursor));
    });
    this.reserveTurn = reserved.catch(() => undefined);
    return reserved;
  }

  async listDevices(filter: DeviceFilter): Promise<DevicePage> {
    const { sql, params } = deviceSizesQuery(filter, d, jsonSql);
    const chosen = choosePage((await this.pool.query<DeviceSizeRow>(sql, params)).rows, filter);
    if (chosen.ids.length === 0) return devicePage(chosen, [], []);
    const [devices, cameras] = await Promise.all([
      this.pool.query<DeviceRow>(devicesByIdSql(d, chosen.ids.length), chosen.ids),
      this.pool.query<CameraRow>(latestCameraStatusSql(d, chosen.ids.length), chosen.ids),
    ]);
    return devicePage(chosen, devices.rows, cameras.rows);
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    const [device, cameras] = await Promise.all([
      this.pool.query<DeviceRow>('SELECT * FROM devices WHERE id = $1', [id]),
      this.pool.query<CameraRow>(latestCameraStatusSql(d, 1), [id]),
    ]);
    const row = device.rows[0];
    return row ? toDevice(row, cameras.rows) : undefined;
  }

  async countDevicesOnline(seenSince: number): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM devices WHERE status = 'online' AND last_seen >= $1",
      [seenSince],
    );
    return Number(rows[0]?.n ?? 0);
  }

  async queryEvents(filter: EventFilter): Promise<StoredEvent[]> {
    const { sql, params } = eventQuery(filter, d);
    return (await this.pool.query<EventRow>(sql, params)).rows.map(toStoredEvent);
  }

  async countEvents(): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>('SELECT count(*) AS n FROM events');
    return Number(rows[0]?.n ?? 0);
  }

  async putSnapshot(s: SnapshotRecord): Promise<PutSnapshotOutcome> {
    const { rowCount } = await this.pool.query(
      `INSERT INTO snapshots (id, device, content_type, sha256, bytes, created_at)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device, id) DO NOTHING`,
      [s.id, s.device, s.contentType, s.sha256, s.bytes, s.createdAt],
    );
    if (rowCount === 1) return 'created';
    const { rows } = await this.pool.query<SnapshotIdentity>(snapshotIdentitySql(d), [s.device, s.id]);
    return existingSnapshotOutcome(rows[0], s);
  }

  async getSnapshot(device: string, id: string): Promise<SnapshotRecord | undefined> {
    const { rows } = await this.pool.query<SnapshotRow>(
      'SELECT * FROM snapshots WHERE device = $1 AND id = $2',
      [device, id],
    );
    return rows[0] ? toSnapshot(rows[0]) : undefined;
  }

  async createCommand(c: CommandRecord): Promise<void> {
    await this.pool.query(
      'INSERT INTO commands (id, device, name, args, issued_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING',
      [c.id, c.device, c.name, JSON.stringify(c.args), c.issuedAt],
    );
  }

  async getCommand(id: string): Promise<CommandRecord | undefined> {
    const { rows } = await this.pool.query<CommandRow>('SELECT * FROM commands WHERE id = $1', [id]);
    return rows[0] ? toCommand(rows[0]) : undefined;
  }

  async reclaimSpace(): Promise<VacuumResult> {
    return { bytes: 0, more: false };
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** the URL without its password, for messages */
