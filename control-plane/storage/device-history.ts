import { timeOrderedId } from '../../common/ids.ts';
import type { Telemetry } from '../../contract/index.ts';
import type { AvailabilityRecord } from './batch-plan.ts';
import type { CommandRecord, IngestRecord } from './repository.ts';
import { type CommandRow, type Placeholder, toCommand } from './sql.ts';
import type { SqlAccess, SqlValue } from './sql-access.ts';

/**
 * What a device reported over time, beside its current row: every telemetry message
 * (`telemetry_history`, written by ingest's batch, unique by device and time so a redelivered
 * message is stored once) and its availability transitions (`device_availability`: from its
 * availability messages and Last Will, and from the control plane's health sweep when it falls
 * silent or reports again). Camera status messages are already stored one row each
 * (`camera_statuses`); the status history reads both. Commands are stored one row each when
 * sent, with their result once the device answers (`commands`); the command history reads them.
 */

/** a telemetry message into the history; one already stored (same device and `at`) is skipped */
export function telemetryInsertSql(p: Placeholder): string {
  return `INSERT INTO telemetry_history (device, at, received_at, payload)
    VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}) ON CONFLICT (device, at) DO NOTHING`;
}

export type AvailabilitySource = 'device' | 'control-plane';

export interface AvailabilityTransition {
  id: string;
  device: string;
  state: 'online' | 'offline';
  /** when it happened (the message's `at`, or when it was received), ms since the epoch */
  at: number;
  receivedAt: number;
  source: AvailabilitySource;
  reason: string | null;
}

/**
 * An availability row, written only when it changes the device's latest recorded state, so the
 * table holds transitions (a retained `online` sent again on every reconnect adds nothing)
 */
export function availabilityInsertSql(p: Placeholder): string {
  return `INSERT INTO device_availability (id, device, state, at, received_at, source, reason)
    SELECT CAST(${p(1)} AS TEXT), CAST(${p(2)} AS TEXT), CAST(${p(3)} AS TEXT), CAST(${p(4)} AS BIGINT),
      CAST(${p(5)} AS BIGINT), CAST(${p(6)} AS TEXT), CAST(${p(7)} AS TEXT)
    WHERE COALESCE((SELECT a.state FROM device_availability a WHERE a.device = ${p(8)}
      ORDER BY a.received_at DESC, a.at DESC, a.id DESC LIMIT 1), '') <> ${p(9)}`;
}

/** the transition an availability message reports */
export function availabilityOf(r: AvailabilityRecord): AvailabilityTransition {
  return {
    id: timeOrderedId(r.receivedAt),
    device: r.device,
    state: r.message.state,
    at: r.message.at ? Date.parse(r.message.at) : r.receivedAt,
    receivedAt: r.receivedAt,
    source: 'device',
    reason: null,
  };
}

/** the parameters of availabilityInsertSql */
export function availabilityParams(t: AvailabilityTransition): (string | number | null)[] {
  return [t.id, t.device, t.state, t.at, t.receivedAt, t.source, t.reason, t.device, t.state];
}

export interface TelemetryPoint {
  at: number;
  receivedAt: number;
  telemetry: Telemetry;
}

export interface TelemetryQuery {
  device: string;
  /** the message's `at`, inclusive */
  from?: number | undefined;
  /** exclusive */
  to?: number | undefined;
  /** only points after this `at` (the previous page's last) */
  after?: number | undefined;
  limit: number;
}

/** one entry of a device's status history: a camera's status message or a device availability change */
export interface StatusChange {
  kind: 'camera' | 'device';
  device: string;
  /** the camera, for `kind: 'camera'` */
  camera: string | null;
  state: 'online' | 'offline';
  /** when it happened, as reported (RFC 3339) */
  at: string;
  reason: string | null;
  /** who said so: the device, or the control plane (a device that fell silent) */
  source: AvailabilitySource;
  receivedAt: number;
  /** orders the history with `receivedAt` */
  id: string;
}

/** the status changes among ingested records: camera statuses and availability messages */
export function statusChangesOf(records: readonly IngestRecord[]): StatusChange[] {
  const changes: StatusChange[] = [];
  for (const r of records) {
    if (r.kind === 'status')
      changes.push({
        kind: 'camera',
        device: r.device,
        camera: r.message.camera,
        state: r.message.state,
        at: r.message.at,
        reason: r.message.reason ?? null,
        source: 'device',
        receivedAt: r.receivedAt,
        id: r.message.id,
      });
    else if (r.kind === 'available') {
      const t = availabilityOf(r);
      changes.push({
        kind: 'device',
        device: r.device,
        camera: null,
        state: t.state,
        at: new Date(t.at).toISOString(),
        reason: null,
        source: 'device',
        receivedAt: r.receivedAt,
        id: t.id,
      });
    }
  }
  return changes;
}

export interface StatusHistoryQuery {
  device: string;
  /** only this camera's statuses (the device's availability changes are always included) */
  camera?: string | undefined;
  /** time received, inclusive */
  from?: number | undefined;
  /** exclusive */
  to?: number | undefined;
  /** only entries before this one (the previous page's last), newest first */
  before?: { receivedAt: number; id: string } | undefined;
  limit: number;
}

interface HistoryRow {
  kind: string;
  camera: string | null;
  state: string;
  at: string | number;
  reason: string | null;
  source: string;
  received_at: number | string;
  id: string;
}

export interface CommandHistoryQuery {
  device: string;
  /** only commands before this id (the previous page's last); ids are time-ordered */
  before?: string | undefined;
  limit: number;
}

/** reads the histories (writes go through ingest's batch, the health sweep and the command sender) */
export class DeviceHistory {
  constructor(private readonly sql: SqlAccess) {}

  /** a device's telemetry, oldest first */
  async telemetry(q: TelemetryQuery): Promise<TelemetryPoint[]> {
    const params: SqlValue[] = [q.device];
    const where = [`device = ${this.sql.p(1)}`];
    const add = (clause: string, value: number | undefined) => {
      if (value === undefined) return;
      params.push(value);
      where.push(`${clause} ${this.sql.p(params.length)}`);
    };
    add('at >=', q.from);
    add('at <', q.to);
    add('at >', q.after);
    params.push(q.limit);
    const rows = await this.sql.read<{ at: number | string; received_at: number | string; payload: string }>(
      `SELECT at, received_at, payload FROM telemetry_history WHERE ${where.join(' AND ')}
        ORDER BY at LIMIT ${this.sql.p(params.length)}`,
      params,
    );
    return rows.map((r) => ({
      at: Number(r.at),
      receivedAt: Number(r.received_at),
      telemetry: JSON.parse(r.payload) as Telemetry,
    }));
  }

  /** a device's camera statuses and availability changes, newest received first */
  async statuses(q: StatusHistoryQuery): Promise<StatusChange[]> {
    const { p } = this.sql;
    const params: SqlValue[] = [];
    const param = (v: SqlValue) => {
      params.push(v);
      return p(params.length);
    };
    // each branch filters on its own indexes (device, received_at)
    const branch = (camera: boolean): string => {
      const where = [`device = ${param(q.device)}`];
      if (camera && q.camera !== undefined) where.push(`camera = ${param(q.camera)}`);
      if (q.from !== undefined) where.push(`received_at >= ${param(q.from)}`);
      if (q.to !== undefined) where.push(`received_at < ${param(q.to)}`);
      if (q.before)
        where.push(
          `(received_at < ${param(q.before.receivedAt)} OR (received_at = ${param(q.before.receivedAt)} AND id < ${param(q.before.id)}))`,
        );
      return where.join(' AND ');
    };
    const cameras = `SELECT 'camera' AS kind, camera, state, at, reason, 'device' AS source, received_at, id
      FROM camera_statuses WHERE ${branch(true)}`;
    const devices = `SELECT 'device' AS kind, NULL AS camera, state, CAST(at AS TEXT) AS at, reason, source, received_at, id
      FROM device_availability WHERE ${branch(false)}`;
    const limit = param(q.limit);
    const rows = await this.sql.read<HistoryRow>(
      `SELECT * FROM (${cameras} UNION ALL ${devices}) h ORDER BY received_at DESC, id DESC LIMIT ${limit}`,
      params,
    );
    return rows.map((r) => ({
      kind: r.kind === 'camera' ? 'camera' : 'device',
      device: q.device,
      camera: r.camera,
      state: r.state === 'online' ? 'online' : 'offline',
      at: r.kind === 'camera' ? String(r.at) : new Date(Number(r.at)).toISOString(),
      reason: r.reason,
      source: r.source === 'control-plane' ? 'control-plane' : 'device',
      receivedAt: Number(r.received_at),
      id: r.id,
    }));
  }

  /** the commands sent to a device, with their results, newest first */
  async commands(q: CommandHistoryQuery): Promise<CommandRecord[]> {
    const { p } = this.sql;
    const params: SqlValue[] = [q.device];
    let before = '';
    if (q.before !== undefined) {
      params.push(q.before);
      before = ` AND id < ${p(params.length)}`;
    }
    params.push(q.limit);
    const rows = await this.sql.read<CommandRow>(
      `SELECT * FROM commands WHERE device = ${p(1)}${before} ORDER BY id DESC LIMIT ${p(params.length)}`,
      params,
    );
    return rows.map(toCommand);
  }
}
