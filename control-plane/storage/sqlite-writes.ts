import type { BatchPlan } from './batch-plan.ts';
import {
  availabilityInsertSql,
  availabilityOf,
  availabilityParams,
  telemetryInsertSql,
} from './device-history.ts';
import type { PutSnapshotOutcome, SnapshotRecord, VacuumResult } from './repository.ts';
import { commandResultSql, deviceUpsertSql, snapshotIdentitySql, storedEventSql } from './sql.ts';
import type { SqlOutcome, SqlStatement } from './sql-access.ts';

/**
 * What the SQLite writer thread is asked to do, and its statements. Rows cross the thread boundary
 * as flat parameter lists (copying those is much cheaper than copying the parsed messages).
 */
export type Params = (string | number | null)[];

export interface BatchRows {
  events: Params[];
  statuses: Params[];
  devices: Params[];
  results: Params[];
  telemetry: Params[];
  availability: Params[];
}

/** one write the thread is asked for */
export type WriteOp =
  | { op: 'batch'; rows: BatchRows }
  | { op: 'snapshot'; snapshot: SnapshotRecord }
  | { op: 'command'; params: Params }
  /** statements of a store beside ingest (SqlAccess.write), in one transaction */
  | { op: 'sql'; statements: readonly SqlStatement[] }
  /** moves up to `pages` free pages to the file's end and truncates it (incremental vacuum) */
  | { op: 'vacuum'; pages: number };

export type WriteRequest = WriteOp & { id: number };

/**
 * per event of the batch, in order: its cursor, 0 when it was stored before (the same content),
 * or -1 when another content is stored under its (device, id, seq); and the positions of the
 * command results that answer no command sent to their device
 */
export interface BatchResult {
  cursors: number[];
  statusDuplicates: number;
  unknownResults: number[];
}

/** the cursor of an event in BatchResult that conflicts with the one stored */
export const CONFLICTING = -1;

export type WriteResult = BatchResult | PutSnapshotOutcome | SqlOutcome[] | VacuumResult | null;

export type WriteReply =
  | { id: number; result: WriteResult }
  /** `refusedData`: SQLite refused a value of the request, so the same request fails again */
  | { id: number; error: string; refusedData: boolean };

/** SQLite result codes that come from a value of the statement, not from the database's state */
const REFUSED_DATA = /^SQLITE_(CONSTRAINT|MISMATCH|TOOBIG|RANGE)/;

export function isRefusedData(err: unknown): boolean {
  return REFUSED_DATA.test(String((err as { code?: unknown }).code ?? ''));
}

export type WriterReady = { ready: true } | { ready: false; error: string };

const q = () => '?';

export const WRITE_SQL = {
  insertEvent: `INSERT INTO events (id, seq, phase, device, camera, camera_seq, rule, rule_type, label, at, received_at, payload)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, id, seq) DO NOTHING`,
  storedEvent: storedEventSql(q),
  insertStatus: `INSERT INTO camera_statuses (id, device, camera, camera_seq, state, at, reason, received_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, id) DO NOTHING`,
  upsertDevice: deviceUpsertSql('VALUES (?, ?, ?, ?, ?, ?, ?, ?)', 'max'),
  storeResult: commandResultSql(q),
  insertSnapshot: `INSERT INTO snapshots (id, device, content_type, sha256, bytes, created_at)
    VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device, id) DO NOTHING`,
  snapshotIdentity: snapshotIdentitySql(q),
  insertTelemetry: telemetryInsertSql(q),
  insertAvailability: availabilityInsertSql(q),
  insertCommand:
    'INSERT INTO commands (id, device, name, args, issued_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING',
} as const;

/** the parameters of each statement of a batch, in the order of WRITE_SQL's columns */
export function batchRows(plan: BatchPlan): BatchRows {
  return {
    events: plan.events.map(({ device, message: m, receivedAt, payload }) => [
      m.id,
      m.seq,
      m.phase,
      device,
      m.camera,
      m.cameraSeq,
      m.rule,
      m.ruleType,
      m.label,
      Date.parse(m.at),
      receivedAt,
      payload,
    ]),
    statuses: plan.statuses.map(({ device, message: m, receivedAt }) => [
      m.id,
      device,
      m.camera,
      m.cameraSeq,
      m.state,
      m.at,
      m.reason ?? null,
      receivedAt,
    ]),
    devices: plan.devices.map((d) => [
      d.id,
      d.status,
      d.statusAt,
      d.firstSeen,
      d.lastSeen,
      d.identity,
      d.telemetry,
      d.telemetryAt,
    ]),
    results: plan.results.map(({ device, message: m, receivedAt, payload }) => [
      payload,
      receivedAt,
      m.id,
      device,
    ]),
    telemetry: plan.telemetry.map(({ device, message: m, receivedAt, payload }) => [
      device,
      Date.parse(m.at),
      receivedAt,
      payload,
    ]),
    availability: plan.availability.map((r) => availabilityParams(availabilityOf(r))),
  };
}
