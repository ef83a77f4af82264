import type {
  Availability,
  CameraStatus,
  CommandName,
  CommandResult,
  EventMessage,
  Identity,
  Telemetry,
  UpdateStatus,
} from '../../contract/index.ts';
import type { SqlAccess } from './sql-access.ts';

/** the parsed body of each kind of stored message */
interface MessageOf {
  event: EventMessage;
  status: CameraStatus;
  telemetry: Telemetry;
  identity: Identity;
  available: Availability;
  cmd_result: CommandResult;
  /** not written by writeBatch: ingest hands update statuses to the rollouts (storage/rollouts.ts) */
  update: UpdateStatus;
}

export type IngestKind = keyof MessageOf;

/** one validated MQTT message, ready to be stored: its body, its text, and `receivedAt` (ms since the epoch) */
export type IngestRecord = {
  [K in IngestKind]: { kind: K; device: string; message: MessageOf[K]; payload: string; receivedAt: number };
}[IngestKind];

/** an event message as stored: `cursor` orders events by ingestion (newest has the largest) */
export interface StoredEvent {
  cursor: number;
  receivedAt: number;
  event: EventMessage;
}

export interface CameraState {
  camera: string;
  state: 'online' | 'offline';
  at: string;
  reason: string | null;
}

export interface DeviceRecord {
  id: string;
  status: 'online' | 'offline' | 'unknown';
  statusAt: number | null;
  firstSeen: number;
  lastSeen: number;
  identity: Identity | null;
  telemetry: Telemetry | null;
  telemetryAt: number | null;
  cameras: CameraState[];
}

export interface DeviceFilter {
  status?: DeviceRecord['status'];
  /** `hardwareClass` of the device's identity */
  hardwareClass?: string;
  /** ids that start with this */
  idPrefix?: string;
  /** `software.version` of the device's identity */
  softwareVersion?: string;
  /** some camera of the latest telemetry runs this model version */
  modelVersion?: number;
  /** some camera of the latest telemetry runs this scene version */
  sceneVersion?: number;
  /** only devices whose id sorts after this one (the previous page's last) */
  after?: string;
  limit: number;
  /**
   * the page ends early after the device that brings the stored identities and telemetry of the
   * page past this many characters (one device at least)
   */
  maxChars: number;
}

export interface DevicePage {
  /** by id */
  devices: DeviceRecord[];
  /** the last device's id when more devices may follow (pass as `after`), else null */
  next: string | null;
  /** the page ended early at `maxChars` */
  cut: boolean;
}

export interface EventFilter {
  device?: string;
  camera?: string;
  rule?: string;
  label?: string;
  /** `at` of the message, ms since the epoch, inclusive */
  from?: number;
  /** exclusive */
  to?: number;
  /** only events ingested before this cursor (the previous page's last) */
  before?: number;
  limit: number;
}

export interface SnapshotRecord {
  id: string;
  device: string;
  contentType: string;
  sha256: string;
  bytes: Buffer;
  createdAt: number;
}

export interface CommandRecord {
  id: string;
  device: string;
  name: CommandName;
  args: Record<string, unknown>;
  issuedAt: number | null;
  result: CommandResult | null;
  resultAt: number | null;
}

export interface BatchOutcome {
  /** events stored by this batch (redelivered ones are not) */
  inserted: StoredEvent[];
  /** events and camera statuses already stored before with the same content (QoS 1 redelivery) */
  duplicates: number;
  /** records of the batch not stored: events whose (device, id, seq) holds other content */
  conflicts: IngestRecord[];
  /**
   * records of the batch not stored: command results for no command sent to their device, update
   * statuses for no assignment of their device
   */
  unknownResults: IngestRecord[];
}

/**
 * The database refused a batch for a value in it (a character or a size it cannot store), not for
 * its own state: writing the same records again fails again.
 */
export class RefusedDataError extends Error {
  override readonly name = 'RefusedDataError';
}

/** what reclaiming space gave back to the file system, and whether more remains */
export interface VacuumResult {
  bytes: number;
  more: boolean;
}

export type PutSnapshotOutcome = 'created' | 'unchanged' | 'conflict';

/**
 * Everything the control plane stores, behind one interface with two backends (SQLite, PostgreSQL).
 * `writeBatch` is one transaction: either every record of the batch is stored or none is.
 * Every id a device sends is scoped to that device: event messages are keyed by (device, id, seq),
 * camera statuses and snapshots by (device, id), so one device cannot take another's id; storing
 * one again changes nothing. A command result lands only on a command sent to its device.
 */
export interface Repository {
  readonly backend: 'sqlite' | 'postgres';
  /** batches `writeBatch` may be given at once; their events get cursors in the order given */
  readonly concurrentWrites: number;
  /** plain SQL for the stores beside ingest (each a module with its own tables and migration) */
  readonly sql: SqlAccess;
  writeBatch(records: readonly IngestRecord[]): Promise<BatchOutcome>;
  /** a page of the devices `filter` selects, by id */
  listDevices(filter: DeviceFilter): Promise<DevicePage>;
  getDevice(id: string): Promise<DeviceRecord | undefined>;
  /** devices whose availability is online and that sent a message at `seenSince` or later */
  countDevicesOnline(seenSince: number): Promise<number>;
  /** newest-ingested first */
  queryEvents(filter: EventFilter): Promise<StoredEvent[]>;
  countEvents(): Promise<number>;
  putSnapshot(snapshot: SnapshotRecord): Promise<PutSnapshotOutcome>;
  getSnapshot(device: string, id: string): Promise<SnapshotRecord | undefined>;
  createCommand(command: CommandRecord): Promise<void>;
  getCommand(id: string): Promise<CommandRecord | undefined>;
  /**
   * Gives the space of deleted rows back. SQLite: moves up to `maxPages` free pages to the file's
   * end and truncates it (incremental vacuum), answering the bytes the file shrank by and whether
   * free pages remain. PostgreSQL: nothing to do here (autovacuum makes the space reusable by
   * later rows; the files keep their size), answers 0.
   */
  reclaimSpace(maxPages: number): Promise<VacuumResult>;
  close(): Promise<void>;
}
