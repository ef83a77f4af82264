import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '../../common/logger.ts';
import { Spool, type SpoolLimits } from '../../device/spool.ts';

export interface InsertCost {
  /** CPU time of the process per insert, µs */
  cpuUs: number;
  /** wall time per insert, µs */
  wallUs: number;
  /** bytes the process read (read syscalls, page cache included) per insert */
  readBytes: number;
}

export interface SpoolLoadResult {
  limits: SpoolLimits;
  /** inserts measured in each phase */
  inserts: number;
  /** a spool filling up, below its limits */
  below: InsertCost;
  /** a spool at its limits: every insert drops the oldest event and snapshot */
  atLimit: InsertCost;
  /** atLimit / below */
  cpuRatio: number;
  wallRatio: number;
  stats: ReturnType<Spool['stats']>;
}

/** bytes read by this process so far (Linux /proc/self/io) */
function readSoFar(): number {
  const m = /^rchar: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/**
 * Spools events with a snapshot each, as the agent does, into a fresh spool at `dir`: measures
 * `inserts` of them (after a quarter as many to warm up) while the spool fills, fills it to the limits, and measures
 * `inserts` more at the limits (each one evicting the oldest).
 */
export function measureSpoolLoad(o: {
  dir: string;
  maxMessages: number;
  /** snapshot store limit; the snapshots are `jpegBytes` each */
  maxSnapshotBytes: number;
  jpegBytes: number;
  inserts: number;
}): SpoolLoadResult {
  const limits: SpoolLimits = {
    maxMessages: o.maxMessages,
    maxBytes: 1024 * 1024 * 1024,
    maxSnapshots: 10_000_000,
    maxSnapshotBytes: o.maxSnapshotBytes,
    maxHarvestFrames: 100,
    maxHarvestBytes: 1024 * 1024,
    sync: 'normal',
  };
  const spool = Spool.open(join(o.dir, 'load.spool.db'), limits, createLogger('spool-load'));
  const payload = JSON.stringify({ filler: 'x'.repeat(650) });
  const jpeg = Buffer.alloc(o.jpegBytes, 0xab);
  let n = 0;
  const insert = () => {
    const id = `snapshot-${String(n++).padStart(10, '0')}`;
    spool.appendForCamera('event', 'argus/v1/box/events', 'cam-1', () => payload, {
      snapshot: { id, jpeg },
    });
  };
  const measure = (): InsertCost => {
    const cpu0 = process.cpuUsage();
    const read0 = readSoFar();
    const t0 = performance.now();
    for (let i = 0; i < o.inserts; i++) insert();
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    return {
      cpuUs: Number(((cpu.user + cpu.system) / o.inserts).toFixed(1)),
      wallUs: Number(((wall * 1000) / o.inserts).toFixed(1)),
      readBytes: Math.round((readSoFar() - read0) / o.inserts),
    };
  };
  try {
    for (let i = 0; i < o.inserts / 4; i++) insert();
    const below = measure();
    const full = () =>
      spool.stats().snapshots.dropped > 0 && spool.stats().dropped > 0 && spool.stats().fill >= 1;
    while (!full()) insert();
    const atLimit = measure();
    return {
      limits,
      inserts: o.inserts,
      below,
      atLimit,
      cpuRatio: Number((atLimit.cpuUs / below.cpuUs).toFixed(2)),
      wallRatio: Number((atLimit.wallUs / below.wallUs).toFixed(2)),
      stats: spool.stats(),
    };
  } finally {
    spool.close();
  }
}
