import { readdir, readFile, statfs } from 'node:fs/promises';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import {
  type CameraTelemetry,
  CONTRACT_VERSION,
  type DetectorTelemetry,
  type HealthTelemetry,
  type Telemetry,
  validators,
} from '../contract/index.ts';
import type { SpoolStats } from './spool.ts';

const MiB = 1024 * 1024;
const THERMAL = '/sys/class/thermal';

export type SystemSample = Pick<
  Telemetry,
  'uptimeS' | 'cpuPercent' | 'load1' | 'memoryRssMiB' | 'memoryUsedPercent' | 'diskFreeMiB' | 'temperatureC'
>;

function cpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const c of cpus()) {
    const t = c.times;
    const sum = t.user + t.nice + t.sys + t.idle + t.irq;
    total += sum;
    busy += sum - t.idle;
  }
  return { busy, total };
}

/** the hottest readable thermal zone in °C, or null where the board exposes none */
async function temperatureC(): Promise<number | null> {
  const zones = await readdir(THERMAL).catch(() => [] as string[]);
  const readings = await Promise.all(
    zones
      .filter((z) => z.startsWith('thermal_zone'))
      .map((z) =>
        readFile(join(THERMAL, z, 'temp'), 'utf8').then(
          (s) => Number.parseInt(s, 10) / 1000,
          () => Number.NaN,
        ),
      ),
  );
  const valid = readings.filter(Number.isFinite);
  return valid.length > 0 ? Math.max(...valid) : null;
}

const round = (x: number, digits = 1) => Number(x.toFixed(digits));

/** samples the box: CPU since the previous sample, load, memory, free disk where the spool lives, temperature */
export class SystemSampler {
  private last = cpuTimes();

  constructor(private readonly diskPath: string) {}

  async sample(): Promise<SystemSample> {
    const now = cpuTimes();
    const total = now.total - this.last.total;
    const cpuPercent = total > 0 ? (100 * (now.busy - this.last.busy)) / total : 0;
    this.last = now;
    const fs = await statfs(this.diskPath);
    return {
      uptimeS: round(process.uptime()),
      cpuPercent: round(Math.max(0, cpuPercent)),
      load1: round(loadavg()[0] ?? 0, 2),
      memoryRssMiB: round(process.memoryUsage.rss() / MiB),
      memoryUsedPercent: round(Math.min(100, 100 * (1 - freemem() / totalmem()))),
      diskFreeMiB: round((fs.bavail * fs.bsize) / MiB),
      temperatureC: await temperatureC(),
    };
  }
}

/** one telemetry message (the heartbeat), validated against the contract */
export function buildTelemetry(
  device: string,
  system: SystemSample,
  spool: SpoolStats,
  cameras: CameraTelemetry[],
  detector: DetectorTelemetry | undefined,
  health: HealthTelemetry,
  /** event snapshots never stored for upload since the agent started */
  snapshotsLost: number,
  /** what the box harvested for the loop, when it harvests */
  harvest?: NonNullable<Telemetry['harvest']>,
): Telemetry {
  const msg: Telemetry = {
    v: CONTRACT_VERSION,
    device,
    at: new Date().toISOString(),
    ...system,
    spool: {
      pending: spool.pending,
      bytes: spool.bytes,
      dropped: spool.dropped,
      snapshots: { ...spool.snapshots, lost: snapshotsLost },
      harvest: spool.harvest,
      fill: Number(spool.fill.toFixed(3)),
    },
    cameras,
    health,
    ...(detector ? { detector } : {}),
    ...(harvest ? { harvest } : {}),
  };
  return validators.telemetry.parse(msg, 'telemetry');
}
