import type { RetentionSettings } from '../config.ts';

/** the kinds of rows retention deletes: each a key of the config's `retention` section */
export type RetentionKindName = {
  [K in keyof RetentionSettings]: RetentionSettings[K] extends { maxAgeDays: number } ? K : never;
}[keyof RetentionSettings];

/**
 * One kind of rows retention deletes by age and by total size. Every SQL fragment is the same on
 * both backends. A new kind is a descriptor here and a limit of the same name in the config's
 * `retention` section; its table needs an index on `timeColumn`.
 */
export interface RetentionKind {
  /** its limit in config (`retention.<name>`) and its `kind` label in /metrics */
  name: RetentionKindName;
  table: string;
  /** ms since the epoch; age counts from it and the oldest rows go first */
  timeColumn: string;
  /** columns unique together: with `timeColumn`, the order rows go in */
  keyColumns: readonly string[];
  /** the estimated bytes one row takes (its variable columns plus a fixed share for the rest and the indexes) */
  rowBytes: string;
  /** rows that may go (e.g. not a camera's latest status): a condition on the table's columns */
  deletable?: string;
}

/**
 * The kinds of the control plane. Snapshots are retained by their own limits, not kept for the
 * events referring to them: pictures are the bulk of the database, and a retained event pinning
 * its picture would let the pictures outgrow their limit. An event whose snapshot is gone keeps
 * its `snapshot` field and the snapshot's URL answers 404. Each camera's latest status and each
 * device's latest availability change are kept whatever their age: they are the current state,
 * not history.
 */
export const RETENTION_KINDS: readonly RetentionKind[] = [
  {
    name: 'events',
    table: 'events',
    timeColumn: 'received_at',
    keyColumns: ['cursor'],
    rowBytes: 'length(payload) + 200',
  },
  {
    name: 'snapshots',
    table: 'snapshots',
    timeColumn: 'created_at',
    keyColumns: ['device', 'id'],
    rowBytes: 'length(bytes) + 200',
  },
  {
    name: 'cameraStatuses',
    table: 'camera_statuses',
    timeColumn: 'received_at',
    keyColumns: ['device', 'id'],
    rowBytes: "length(id) + length(camera) + length(at) + length(COALESCE(reason, '')) + 150",
    deletable: `camera_seq < (SELECT max(l.camera_seq) FROM camera_statuses l
      WHERE l.device = camera_statuses.device AND l.camera = camera_statuses.camera)`,
  },
  {
    name: 'telemetry',
    table: 'telemetry_history',
    timeColumn: 'received_at',
    keyColumns: ['id'],
    rowBytes: 'length(payload) + 100',
  },
  {
    name: 'availability',
    table: 'device_availability',
    timeColumn: 'received_at',
    keyColumns: ['id'],
    rowBytes: "length(id) + length(device) + length(COALESCE(reason, '')) + 150",
    deletable: `id <> (SELECT l.id FROM device_availability l WHERE l.device = device_availability.device
      ORDER BY l.received_at DESC, l.at DESC, l.id DESC LIMIT 1)`,
  },
  {
    name: 'audit',
    table: 'audit',
    timeColumn: 'at',
    keyColumns: ['id'],
    rowBytes: 'length(params) + length(action) + length(actor) + 150',
  },
  {
    name: 'quarantine',
    table: 'quarantine',
    timeColumn: 'received_at',
    keyColumns: ['id'],
    rowBytes: 'length(payload) + length(detail) + 150',
  },
  {
    name: 'commands',
    table: 'commands',
    timeColumn: 'issued_at',
    keyColumns: ['id'],
    rowBytes: "length(id) + length(device) + length(args) + length(COALESCE(result, '')) + 100",
  },
];
