import type { IngestRecord } from './repository.ts';

export type EventRecord = Extract<IngestRecord, { kind: 'event' }>;
export type StatusRecord = Extract<IngestRecord, { kind: 'status' }>;
export type ResultRecord = Extract<IngestRecord, { kind: 'cmd_result' }>;
export type TelemetryRecord = Extract<IngestRecord, { kind: 'telemetry' }>;
export type AvailabilityRecord = Extract<IngestRecord, { kind: 'available' }>;

/** what a batch changes on one device row: the latest of each kind of message in the batch */
export interface DeviceUpdate {
  id: string;
  firstSeen: number;
  lastSeen: number;
  status: 'online' | 'offline' | null;
  statusAt: number | null;
  identity: string | null;
  telemetry: string | null;
  telemetryAt: number | null;
}

export interface BatchPlan {
  events: EventRecord[];
  statuses: StatusRecord[];
  results: ResultRecord[];
  /** every telemetry message, for the history (telemetry-history.ts) */
  telemetry: TelemetryRecord[];
  /** every availability message, in order, for the availability history (device-history.ts) */
  availability: AvailabilityRecord[];
  devices: DeviceUpdate[];
}

/**
 * Folds a batch into what the backends write: event and status rows as they came, and one update
 * per device holding the last availability, identity and telemetry of the batch (later wins).
 */
export function planBatch(records: readonly IngestRecord[]): BatchPlan {
  const plan: BatchPlan = {
    events: [],
    statuses: [],
    results: [],
    telemetry: [],
    availability: [],
    devices: [],
  };
  const devices = new Map<string, DeviceUpdate>();
  for (const r of records) {
    let d = devices.get(r.device);
    if (!d) {
      d = {
        id: r.device,
        firstSeen: r.receivedAt,
        lastSeen: r.receivedAt,
        status: null,
        statusAt: null,
        identity: null,
        telemetry: null,
        telemetryAt: null,
      };
      devices.set(r.device, d);
    }
    d.firstSeen = Math.min(d.firstSeen, r.receivedAt);
    d.lastSeen = Math.max(d.lastSeen, r.receivedAt);
    switch (r.kind) {
      case 'event':
        plan.events.push(r);
        break;
      case 'status':
        plan.statuses.push(r);
        break;
      case 'cmd_result':
        plan.results.push(r);
        break;
      case 'available':
        plan.availability.push(r);
        d.status = r.message.state;
        d.statusAt = r.message.at ? Date.parse(r.message.at) : r.receivedAt;
        break;
      case 'identity':
        d.identity = r.payload;
        break;
      case 'telemetry':
        plan.telemetry.push(r);
        d.telemetry = r.payload;
        d.telemetryAt = Date.parse(r.message.at);
        break;
    }
  }
  // the same lock order in every transaction: concurrent batches never deadlock on device rows
  plan.devices = [...devices.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return plan;
}
