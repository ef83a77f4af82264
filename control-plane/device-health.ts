import { timeOrderedId } from '../common/ids.ts';
import type { HealthTelemetry } from '../contract/index.ts';
import type { HealthSettings } from './config.ts';
import {
  type AvailabilityTransition,
  availabilityInsertSql,
  availabilityParams,
  type StatusChange,
} from './storage/device-history.ts';
import type { CameraState, DeviceRecord } from './storage/repository.ts';
import type { SqlAccess } from './storage/sql-access.ts';

export interface CameraAssessment extends Omit<CameraState, 'state'> {
  /** `unknown` while the device is not online: its last word about the camera may be old */
  state: CameraState['state'] | 'unknown';
}

/** what the control plane makes of a device's stored rows at one moment */
export interface DeviceAssessment {
  /** `offline` also when its availability says online but it sent nothing for `staleAfterS` */
  status: DeviceRecord['status'];
  /** when the latest telemetry was received (ms), if any is in the history */
  telemetryReceivedAt: number | null;
  /** the latest telemetry's figures are old: not received within `staleAfterS`, or the device is not online */
  telemetryStale: boolean;
  cameras: CameraAssessment[];
  health: {
    status: 'ok' | 'degraded' | 'offline' | 'unknown';
    /** the device's own reasons and the control plane's (a camera offline, telemetry stale, silence) */
    reasons: string[];
    /** the device's own verdict, from its latest telemetry */
    reported: HealthTelemetry | null;
  };
}

/** devices whose availability is online, with their latest availability transition */
interface SweepRow {
  id: string;
  last_seen: number | string;
  last_state: string | null;
  last_source: string | null;
}

/** telemetry receipt times are read for this many devices per query at most */
const IDS_PER_READ = 500;

/**
 * Honest health from the stored times only (every replica answers the same, whatever it has in
 * memory): a device that sent nothing for `staleAfterS` is offline whatever its last
 * availability message said, its cameras unknown and its figures stale; an online device is
 * degraded, with the reasons, when it says so itself or when the control plane sees a camera
 * offline or its telemetry stale. The sweep (on the replica holding the `device-health` lease)
 * records a device falling silent, and reporting again, in the availability history.
 */
export class DeviceHealth {
  constructor(
    private readonly sql: SqlAccess,
    private readonly settings: HealthSettings,
    private readonly clock: () => number = Date.now,
  ) {}

  private get staleMs(): number {
    return this.settings.staleAfterS * 1000;
  }

  /** messages received at this time or later count as the device reporting */
  reportingSince(now = this.clock()): number {
    return now - this.staleMs;
  }

  /** the assessment of each device, in the order given */
  async assess(devices: readonly DeviceRecord[]): Promise<DeviceAssessment[]> {
    const now = this.clock();
    const received = await this.telemetryReceived(devices.map((d) => d.id));
    return devices.map((d) => this.assessOne(d, received.get(d.id) ?? null, now));
  }

  /** devices whose availability says online but that fell silent */
  async countSilent(): Promise<number> {
    const { p } = this.sql;
    const [row] = await this.sql.read<{ n: number | string }>(
      `SELECT count(*) AS n FROM devices WHERE status = 'online' AND last_seen < ${p(1)}`,
      [this.reportingSince()],
    );
    return Number(row?.n ?? 0);
  }

  /**
   * Records, for each device whose availability says online, its falling silent (`offline`, from
   * the control plane) or its reporting again after that (`online`); answers the changes recorded
   */
  async sweep(): Promise<StatusChange[]> {
    const { p } = this.sql;
    const now = this.clock();
    const latest = (column: string) => `(SELECT a.${column} FROM device_availability a WHERE a.device = d.id
      ORDER BY a.received_at DESC, a.at DESC, a.id DESC LIMIT 1)`;
    const rows = await this.sql.read<SweepRow>(
      `SELECT d.id, d.last_seen, ${latest('state')} AS last_state, ${latest('source')} AS last_source
        FROM devices d WHERE d.status = ${p(1)} ORDER BY d.id`,
      ['online'],
    );
    const transitions: AvailabilityTransition[] = [];
    for (const r of rows) {
      const lastSeen = Number(r.last_seen);
      const silent = now - lastSeen > this.staleMs;
      const base = {
        id: timeOrderedId(now),
        device: r.id,
        receivedAt: now,
        source: 'control-plane' as const,
      };
      if (silent && r.last_state !== 'offline')
        transitions.push({
          ...base,
          state: 'offline',
          at: lastSeen + this.staleMs,
          reason: `no message for ${this.settings.staleAfterS} s (health.staleAfterS)`,
        });
      else if (!silent && r.last_state === 'offline' && r.last_source === 'control-plane')
        transitions.push({ ...base, state: 'online', at: lastSeen, reason: 'reporting again' });
    }
    if (transitions.length === 0) return [];
    const outcomes = await this.sql.write(
      transitions.map((t) => ({ sql: availabilityInsertSql(p), params: availabilityParams(t) })),
    );
    return transitions
      .filter((_, i) => outcomes[i]!.changes === 1)
      .map((t) => ({
        kind: 'device',
        device: t.device,
        camera: null,
        state: t.state,
        at: new Date(t.at).toISOString(),
        reason: t.reason,
        source: t.source,
        receivedAt: t.receivedAt,
        id: t.id,
      }));
  }

  private assessOne(d: DeviceRecord, telemetryReceivedAt: number | null, now: number): DeviceAssessment {
    const silentS = Math.round((now - d.lastSeen) / 1000);
    const silent = now - d.lastSeen > this.staleMs;
    const status = d.status === 'online' && silent ? 'offline' : d.status;
    const online = status === 'online';
    const telemetryStale =
      d.telemetry !== null &&
      (!online || telemetryReceivedAt === null || now - telemetryReceivedAt > this.staleMs);
    const cameras = d.cameras.map((c): CameraAssessment => (online ? c : { ...c, state: 'unknown' }));
    const reported = d.telemetry?.health ?? null;
    const reasons = new Set<string>();
    let verdict: DeviceAssessment['health']['status'];
    if (status === 'offline') {
      verdict = 'offline';
      reasons.add(silent ? `no message for ${silentS} s` : 'the device reported offline');
    } else if (status === 'unknown') {
      verdict = 'unknown';
      reasons.add('no availability message received yet');
    } else {
      if (reported?.status === 'degraded') for (const r of reported.reasons) reasons.add(r);
      for (const c of d.cameras)
        if (c.state === 'offline')
          reasons.add(`camera ${c.camera} offline${c.reason ? `: ${c.reason}` : ''}`);
      if (telemetryStale)
        reasons.add(
          telemetryReceivedAt === null
            ? 'no telemetry in the history'
            : `telemetry stale: last received ${Math.round((now - telemetryReceivedAt) / 1000)} s ago`,
        );
      verdict = reasons.size > 0 ? 'degraded' : 'ok';
    }
    return {
      status,
      telemetryReceivedAt,
      telemetryStale,
      cameras,
      health: { status: verdict, reasons: [...reasons], reported },
    };
  }

  /** when each device's latest telemetry was received */
  private async telemetryReceived(ids: readonly string[]): Promise<Map<string, number>> {
    const received = new Map<string, number>();
    const { p } = this.sql;
    for (let i = 0; i < ids.length; i += IDS_PER_READ) {
      const chunk = ids.slice(i, i + IDS_PER_READ);
      const rows = await this.sql.read<{ device: string; at: number | string }>(
        `SELECT device, max(received_at) AS at FROM telemetry_history
          WHERE device IN (${chunk.map((_, n) => p(n + 1)).join(', ')}) GROUP BY device`,
        chunk,
      );
      for (const r of rows) received.set(r.device, Number(r.at));
    }
    return received;
  }
}
