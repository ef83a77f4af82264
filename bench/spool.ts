/**
 * npm run bench:spool — the box's spool at its limits.
 *
 * Spools events with a JPEG snapshot each (as the agent does, `sync: normal`) into a fresh spool:
 * measures the per-insert CPU, wall time and bytes read while it fills, fills it to its limits, and
 * measures again at the limits, where every insert drops the oldest event and snapshot. The store
 * sizes come from the environment (defaults in brackets): ARGUS_BENCH_SPOOL_MESSAGES [200000]
 * events, ARGUS_BENCH_SPOOL_SNAPSHOT_MIB [256] MiB of snapshots of ARGUS_BENCH_SPOOL_JPEG_KIB [40]
 * KiB, ARGUS_BENCH_SPOOL_INSERTS [2000] inserts measured per phase.
 *
 * The last line is one JSON object with every figure.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { measureSpoolLoad } from '../test/helpers/spool-load.ts';
import { machine } from './stats.ts';

const KiB = 1024;
const MESSAGES = Number(process.env.ARGUS_BENCH_SPOOL_MESSAGES ?? 200_000);
const SNAPSHOT_MIB = Number(process.env.ARGUS_BENCH_SPOOL_SNAPSHOT_MIB ?? 256);
const JPEG_KIB = Number(process.env.ARGUS_BENCH_SPOOL_JPEG_KIB ?? 40);
const INSERTS = Number(process.env.ARGUS_BENCH_SPOOL_INSERTS ?? 2000);

const dir = await mkdtemp(join(tmpdir(), 'argus-bench-spool-'));
try {
  const r = measureSpoolLoad({
    dir,
    maxMessages: MESSAGES,
    maxSnapshotBytes: SNAPSHOT_MIB * 1024 * KiB,
    jpegBytes: JPEG_KIB * KiB,
    inserts: INSERTS,
  });
  console.log(
    `spool at its limits (${r.stats.pending} events, ${r.stats.snapshots.pending} snapshots, ${(r.stats.snapshots.bytes / 1024 / KiB).toFixed(0)} MiB):` +
      ` ${r.atLimit.cpuUs} µs CPU per insert (${r.below.cpuUs} below the limits, ratio ${r.cpuRatio}),` +
      ` ${r.atLimit.readBytes} bytes read per insert (${r.below.readBytes} below)`,
  );
  console.log(
    JSON.stringify({
      machine: machine(),
      limits: r.limits,
      jpegBytes: JPEG_KIB * KiB,
      inserts: r.inserts,
      below: r.below,
      atLimit: r.atLimit,
      cpuRatio: r.cpuRatio,
      wallRatio: r.wallRatio,
      stored: r.stats,
    }),
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
