import { isDeepStrictEqual } from 'node:util';
import { jsonDepth } from '../../common/bounded-json.ts';
import type { CommandName, CommandResult, EventMessage } from '../../contract/index.ts';
import type {
  CameraState,
  CommandRecord,
  DeviceFilter,
  DevicePage,
  DeviceRecord,
  EventFilter,
  PutSnapshotOutcome,
  SnapshotRecord,
  StoredEvent,
} from './repository.ts';

/** the same SQL for both backends; only the placeholder differs (`?` or `$n`) */
export type Placeholder = (index: number) => string;

export const EVENT_COLUMNS = 'cursor, received_at, payload';

/** a WHERE clause and its parameters for an event query, newest-ingested first */
export function eventQuery(filter: EventFilter, p: Placeholder): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (clause: (ph: string) => string, value: unknown) => {
    params.push(value);
    where.push(clause(p(params.length)));
  };
  if (filter.device !== undefined) add((ph) => `device = ${ph}`, filter.device);
  if (filter.camera !== undefined) add((ph) => `camera = ${ph}`, filter.camera);
  if (filter.rule !== undefined) add((ph) => `rule = ${ph}`, filter.rule);
  if (filter.label !== undefined) add((ph) => `label = ${ph}`, filter.label);
  if (filter.from !== undefined) add((ph) => `at >= ${ph}`, filter.from);
  if (filter.to !== undefined) add((ph) => `at < ${ph}`, filter.to);
  if (filter.before !== undefined) add((ph) => `cursor < ${ph}`, filter.before);
  params.push(filter.limit);
  const clause = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
  return {
    sql: `SELECT ${EVENT_COLUMNS} FROM events ${clause} ORDER BY cursor DESC LIMIT ${p(params.length)}`,
    params,
  };
}

export interface EventRow {
  cursor: number | string;
  received_at: number | string;
  payload: string;
}

/**
 * Events stored before payloads were bounded in depth (migration 1) may nest deeper than JSON
 * serialisation can take; such an event is served with its free-form state replaced by a note, so
 * that it cannot break a page of events or a live stream
 */
const MAX_STORED_DEPTH = 128;

export function toStoredEvent(row: EventRow): StoredEvent {
  const event = JSON.parse(row.payload) as EventMessage;
  if (jsonDepth(row.payload, MAX_STORED_DEPTH) > MAX_STORED_DEPTH) {
    const note = {
      dropped: `nested deeper than ${MAX_STORED_DEPTH} levels (stored before ingest bounded depth)`,
    };
    event.before = note;
    event.after = note;
  }
  return { cursor: Number(row.cursor), receivedAt: Number(row.received_at), event };
}

export interface DeviceRow {
  id: string;
  status: string | null;
  status_at: number | string | null;
  first_seen: number | string;
  last_seen: number | string;
  identity: string | null;
  telemetry: string | null;
  telemetry_at: number | string | null;
}

export interface CameraRow {
  device: string;
  camera: string;
  state: string;
  at: string;
  reason: string | null;
}

const num = (v: number | string | null): number | null => (v === null ? null : Number(v));

export function toDevice(row: DeviceRow, cameras: CameraRow[]): DeviceRecord {
  return {
    id: row.id,
    status: row.status === 'online' || row.status === 'offline' ? row.status : 'unknown',
    statusAt: num(row.status_at),
    firstSeen: Number(row.first_seen),
    lastSeen: Number(row.last_seen),
    identity: row.identity ? JSON.parse(row.identity) : null,
    telemetry: row.telemetry ? JSON.parse(row.telemetry) : null,
    telemetryAt: num(row.telemetry_at),
    cameras: cameras
      .filter((c) => c.device === row.id)
      .map(
        (c): CameraState => ({
          camera: c.camera,
          state: c.state === 'online' ? 'online' : 'offline',
          at: c.at,
          reason: c.reason,
        }),
      ),
  };
}

/** `n` placeholders from the first, comma-separated */
const placeholders = (p: Placeholder, n: number) => Array.from({ length: n }, (_, i) => p(i + 1)).join(', ');

/** the latest status of every camera of `devices` devices (their ids the parameters) */
export function latestCameraStatusSql(p: Placeholder, devices: number): string {
  return `SELECT s.device, s.camera, s.state, s.at, s.reason FROM camera_statuses s
    WHERE s.device IN (${placeholders(p, devices)}) AND s.camera_seq = (
      SELECT max(t.camera_seq) FROM camera_statuses t WHERE t.device = s.device AND t.camera = s.camera)
    ORDER BY s.device, s.camera`;
}

/** how a backend reads JSON columns (the backends differ) */
export interface JsonSql {
  /** a text field of a JSON column by its path, e.g. `identity`'s `software.version` */
  field(column: string, path: readonly string[]): string;
  /** true when some camera of the stored telemetry has the text `path` equal to placeholder `ph` */
  anyCamera(path: readonly string[], ph: string): string;
}

/**
 * The ids of the devices `filter` selects, by id, one more than its limit (to know whether more
 * follow), each with the characters of its stored identity and telemetry: the page is chosen from
 * these before any large column is read.
 */
export function deviceSizesQuery(
  filter: DeviceFilter,
  p: Placeholder,
  json: JsonSql,
): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (clause: (ph: string) => string, value: unknown) => {
    params.push(value);
    where.push(clause(p(params.length)));
  };
  if (filter.status === 'unknown') where.push("(status IS NULL OR status NOT IN ('online', 'offline'))");
  else if (filter.status !== undefined) add((ph) => `status = ${ph}`, filter.status);
  if (filter.hardwareClass !== undefined)
    add((ph) => `${json.field('identity', ['hardwareClass'])} = ${ph}`, filter.hardwareClass);
  if (filter.softwareVersion !== undefined)
    add((ph) => `${json.field('identity', ['software', 'version'])} = ${ph}`, filter.softwareVersion);
  if (filter.modelVersion !== undefined)
    add((ph) => json.anyCamera(['model', 'version'], ph), String(filter.modelVersion));
  if (filter.sceneVersion !== undefined)
    add((ph) => json.anyCamera(['scene', 'version'], ph), String(filter.sceneVersion));
  if (filter.idPrefix !== undefined)
    add((ph) => `substr(id, 1, ${filter.idPrefix!.length}) = ${ph}`, filter.idPrefix);
  if (filter.after !== undefined) add((ph) => `id > ${ph}`, filter.after);
  params.push(filter.limit + 1);
  const clause = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
  return {
    sql: `SELECT id, COALESCE(length(identity), 0) + COALESCE(length(telemetry), 0) AS size
      FROM devices ${clause} ORDER BY id LIMIT ${p(params.length)}`,
    params,
  };
}

export interface DeviceSizeRow {
  id: string;
  size: number | string;
}

/** which of the selected devices make the page: up to the limit and `maxChars` (one at least) */
export function choosePage(
  rows: DeviceSizeRow[],
  filter: DeviceFilter,
): { ids: string[]; next: string | null; cut: boolean } {
  const ids: string[] = [];
  let chars = 0;
  for (const row of rows.slice(0, filter.limit)) {
    chars += Number(row.size);
    if (ids.length > 0 && chars > filter.maxChars) return { ids, next: ids.at(-1)!, cut: true };
    ids.push(row.id);
  }
  return { ids, next: rows.length > filter.limit ? ids.at(-1)! : null, cut: false };
}

/** the devices of `n` ids (the parameters), by id */
export function devicesByIdSql(p: Placeholder, n: number): string {
  return `SELECT * FROM devices WHERE id IN (${placeholders(p, n)}) ORDER BY id`;
}

/** a page of devices from its rows and their cameras */
export function devicePage(
  chosen: { next: string | null; cut: boolean },
  rows: DeviceRow[],
  cameras: CameraRow[],
): DevicePage {
  return { devices: rows.map((row) => toDevice(row, cameras)), next: chosen.next, cut: chosen.cut };
}

/**
 * The upsert of a batch's devices from `rows` (a VALUES list or a SELECT with the columns in
 * DEVICE_COLUMNS order): later values win, `first_seen` stays.
 */
export function deviceUpsertSql(rows: string, greatest: 'max' | 'greatest'): string {
  return `INSERT INTO devices (${DEVICE_COLUMNS.join(', ')}) ${rows}
    ON CONFLICT (id) DO UPDATE SET
      status = COALESCE(excluded.status, devices.status),
      status_at = COALESCE(excluded.status_at, devices.status_at),
      last_seen = ${greatest}(devices.last_seen, excluded.last_seen),
      identity = COALESCE(excluded.identity, devices.identity),
      telemetry = COALESCE(excluded.telemetry, devices.telemetry),
      telemetry_at = COALESCE(excluded.telemetry_at, devices.telemetry_at)`;
}

export const DEVICE_COLUMNS = [
  'id',
  'status',
  'status_at',
  'first_seen',
  'last_seen',
  'identity',
  'telemetry',
  'telemetry_at',
] as const;

/**
 * Stores a command's result (`result`, `result_at`) on the command's row, only when the command
 * (`id`) was sent to the device that answers (`device`): a device cannot answer for another
 */
export function commandResultSql(p: Placeholder): string {
  return `UPDATE commands SET result = ${p(1)}, result_at = ${p(2)} WHERE id = ${p(3)} AND device = ${p(4)}`;
}

/** the text of the event stored under (device, id, seq) */
export function storedEventSql(p: Placeholder): string {
  return `SELECT payload FROM events WHERE device = ${p(1)} AND id = ${p(2)} AND seq = ${p(3)}`;
}

/**
 * Whether an event message stored before (`stored`, its text) is the same as one received again
 * (`received`): the same text, or the same value in another spelling. A redelivery is the same; a
 * device that reuses an (id, seq) for another event is not.
 */
export function sameEvent(stored: string, received: string): boolean {
  if (stored === received) return true;
  try {
    return isDeepStrictEqual(JSON.parse(stored), JSON.parse(received));
  } catch {
    return false;
  }
}

export interface CommandRow {
  id: string;
  device: string;
  name: string;
  args: string;
  issued_at: number | string | null;
  result: string | null;
  result_at: number | string | null;
}

export function toCommand(row: CommandRow): CommandRecord {
  return {
    id: row.id,
    device: row.device,
    name: row.name as CommandName,
    args: JSON.parse(row.args) as Record<string, unknown>,
    issuedAt: num(row.issued_at),
    result: row.result ? (JSON.parse(row.result) as CommandResult) : null,
    resultAt: num(row.result_at),
  };
}

/** what identifies a stored snapshot's content */
export interface SnapshotIdentity {
  sha256: string;
  device: string;
}

/** the identity of the snapshot a device stored under an id */
export function snapshotIdentitySql(p: Placeholder): string {
  return `SELECT sha256, device FROM snapshots WHERE device = ${p(1)} AND id = ${p(2)}`;
}

/** a snapshot whose id was stored before: the same upload again, or another one under its id */
export function existingSnapshotOutcome(
  existing: SnapshotIdentity | undefined,
  s: SnapshotRecord,
): PutSnapshotOutcome {
  return existing?.sha256 === s.sha256 && existing.device === s.device ? 'unchanged' : 'conflict';
}

export interface SnapshotRow {
  id: string;
  device: string;
  content_type: string;
  sha256: string;
  bytes: Buffer;
  created_at: number | string;
}

export function toSnapshot(row: SnapshotRow): SnapshotRecord {
  return {
    id: row.id,
    device: row.device,
    contentType: row.content_type,
    sha256: row.sha256,
    bytes: row.bytes,
    createdAt: Number(row.created_at),
  };
}
