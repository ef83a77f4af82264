import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ArgusError } from '../common/errors.ts';
import type { CameraTelemetry, DetectorTelemetry, HealthTelemetry } from '../contract/index.ts';
import type { UploadState } from './snapshots.ts';
import type { SpoolStats } from './spool.ts';

/** the spool counts as near its limit from this share of its fullest limit */
export const SPOOL_NEAR_FULL = 0.9;
/** a detector restart keeps the box degraded this long */
export const DETECTOR_RESTART_WINDOW_MS = 10 * 60_000;
/** snapshot uploads failing (unreachable, busy) this long degrade the box; refused ones at once */
export const UPLOAD_FAILING_GRACE_MS = 30_000;
const MAX_REASONS = 32;
const MAX_REASON_CHARS = 200;

export interface HealthInputs {
  now: number;
  /** undefined while connected */
  mqttDisconnectedSince: number | undefined;
  uploads: UploadState;
  spool: SpoolStats;
  cameras: readonly CameraTelemetry[];
  /** the reason each camera last went offline */
  offlineReasons: ReadonlyMap<string, string>;
  /** when the detector last restarted (ms, epoch), with how many restarts in all */
  detectorRestart: { at: number; restarts: number } | undefined;
}

const seconds = (ms: number) => `${Math.max(0, Math.round(ms / 1000))} s`;

/**
 * The box's verdict on itself: `degraded` with one reason per problem — the uplink disconnected,
 * snapshot uploads refused (wrong credential) or failing, the spool near its limit, a camera not
 * online, the detector restarted recently — else `ok`.
 */
export function healthVerdict(i: HealthInputs): HealthTelemetry {
  const reasons: string[] = [];
  if (i.mqttDisconnectedSince !== undefined)
    reasons.push(`mqtt disconnected for ${seconds(i.now - i.mqttDisconnectedSince)}; events are spooled`);
  const u = i.uploads;
  if (u.failing === 'refused') {
    reasons.push(`snapshot uploads refused (${u.detail}): check controlPlane.token`);
  } else if (u.failing && u.since !== undefined && i.now - u.since >= UPLOAD_FAILING_GRACE_MS) {
    const what = u.failing === 'unreachable' ? 'control plane unreachable' : 'control plane busy';
    reasons.push(`snapshot uploads failing for ${seconds(i.now - u.since)}: ${what} (${u.detail})`);
  }
  if (i.spool.fill >= SPOOL_NEAR_FULL) {
    const dropped = i.spool.dropped + i.spool.snapshots.dropped;
    reasons.push(
      `spool ${Math.round(100 * i.spool.fill)} % full${dropped > 0 ? `, ${dropped} dropped oldest-first` : ''}`,
    );
  }
  for (const c of i.cameras) {
    if (c.state === 'online') continue;
    const why = c.state === 'offline' ? i.offlineReasons.get(c.id) : undefined;
    reasons.push(`camera ${c.id} ${c.state}${why ? `: ${why}` : ''}`);
  }
  const r = i.detectorRestart;
  if (r && i.now - r.at < DETECTOR_RESTART_WINDOW_MS)
    reasons.push(`detector restarted ${seconds(i.now - r.at)} ago (${r.restarts} restarts since start)`);
  const bounded = reasons
    .slice(0, MAX_REASONS)
    .map((s) => (s.length > MAX_REASON_CHARS ? `${s.slice(0, MAX_REASON_CHARS - 1)}…` : s));
  return { status: bounded.length === 0 ? 'ok' : 'degraded', reasons: bounded };
}

export interface HealthReport {
  /** `ok` when nothing is wrong, else `degraded` with `reasons` (see healthVerdict) */
  status: 'ok' | 'degraded';
  /** why it is degraded; empty when ok */
  reasons: string[];
  device: string;
  uptimeS: number;
  mqtt: { connected: boolean };
  spool: SpoolStats;
  cameras: CameraTelemetry[];
  /** absent when the box runs no detector */
  detector?: DetectorTelemetry;
  /** frame → event stored in the control plane, of the recent events (absent before the first) */
  eventDelivery?: {
    count: number;
    latencyMs: { p50: number; p99: number };
    /** where the time went: the pipeline, the spool write, waiting for MQTT, the control plane's commit */
    p99Ms: { pipeline: number; spool: number; publish: number; commit: number };
  };
}

export interface HealthServer {
  /** where it listens (the real port when 0 was configured) */
  address: { host: string; port: number };
  close(): Promise<void>;
}

/**
 * The local health endpoint: `GET /healthz` answers 200 with a HealthReport as long as the agent
 * runs. A lost uplink, an offline camera or a full spool is reported as `degraded` with its reason
 * but is not a reason for a supervisor to restart the agent (the agent recovers by itself), hence
 * never an error status.
 */
export async function startHealthServer(
  host: string,
  port: number,
  report: () => HealthReport,
  configFile: string,
): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/healthz') {
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end('{"error":"not found; try GET /healthz"}');
      return;
    }
    res
      .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
      .end(JSON.stringify(report()));
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new ArgusError(
          `the health endpoint cannot listen on ${host}:${port}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message}`,
          `set health.port in ${configFile} to a free port (0 picks one)`,
        ),
      ),
    );
    server.listen(port, host, resolve);
  });
  const addr = server.address() as AddressInfo;
  return {
    address: { host, port: addr.port },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
