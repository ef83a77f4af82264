/**
 * The box's stores at their limits: the spool (events) and the snapshot store keep their limits
 * with upkeep that does not grow with what they hold. In process, on the real spool: the cost of
 * an insert at the limits (each one dropping the oldest event and snapshot) against the cost below
 * them. On a real agent process (recorded events, the broker unreachable, the control plane
 * refusing snapshots with 503, so both queues fill): its CPU per spooled message and its /healthz
 * latency at the limits against below them.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AgentProcess, SnapshotReceiver, writeAgentConfig } from '../helpers/device-setup.ts';
import { eventually } from '../helpers/eventually.ts';
import { measureSpoolLoad } from '../helpers/spool-load.ts';

const KiB = 1024;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** user + system CPU of a process so far, ms (Linux /proc) */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // utime and stime are fields 14 and 15 of the line, in clock ticks (100 per second)
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

describe('stores at their limits', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-spool-limits-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('inserts cost the same at the limits as below them, and read no stored snapshot', (t) => {
    const jpegBytes = 16 * KiB;
    const r = measureSpoolLoad({
      dir,
      maxMessages: 2000,
      maxSnapshotBytes: 8 * 1024 * KiB,
      jpegBytes,
      inserts: 300,
    });
    t.diagnostic(JSON.stringify(r));
    assert.equal(r.stats.pending, 2000, 'the event spool is at its count limit');
    assert.ok(r.stats.snapshots.bytes <= 8 * 1024 * KiB && r.stats.snapshots.bytes > 7 * 1024 * KiB);
    assert.ok(r.stats.dropped > 300 && r.stats.snapshots.dropped > 300, 'the oldest are dropped and counted');
    // 512 snapshots are stored: reading them to choose a victim would read 8 MiB per insert
    assert.ok(
      r.atLimit.readBytes <= 2 * r.below.readBytes + 4 * jpegBytes,
      `bytes read per insert: ${r.atLimit.readBytes} at the limits, ${r.below.readBytes} below`,
    );
    assert.ok(r.cpuRatio < 3, `CPU per insert at the limits / below: ${r.cpuRatio}`);
  });

  it('an agent with both queues full spends the same CPU per event and answers /healthz as fast', async (t) => {
    const receiver = await SnapshotReceiver.start({ 'box-full': 'token-box-full' });
    receiver.failWith = 503;
    const config = await writeAgentConfig(dir, {
      device: 'box-full',
      brokerUrl: 'mqtt://127.0.0.1:1',
      controlPlaneUrl: receiver.url,
      eventsPerSecond: 100,
      spool: { maxMessages: 2500, maxSnapshots: 1200, sync: 'normal' },
    });
    const agent = await AgentProcess.start(config);
    const pid = agent.child.pid!;
    try {
      const phase = async (seconds: number) => {
        const h0 = await agent.health();
        const cpu0 = cpuMs(pid);
        const latencies: number[] = [];
        const end = performance.now() + seconds * 1000;
        while (performance.now() < end) {
          const t0 = performance.now();
          await agent.health();
          latencies.push(performance.now() - t0);
          await sleep(40);
        }
        const h1 = await agent.health();
        const spooled = h1.spool.pending + h1.spool.dropped - (h0.spool.pending + h0.spool.dropped);
        return {
          cpuMsPerMessage: (cpuMs(pid) - cpu0) / spooled,
          healthzP50Ms: median(latencies),
          spooled,
          fill: h1.spool.fill,
        };
      };
      const below = await phase(3);
      assert.ok(below.fill < 0.9, `still below the limits: fill ${below.fill}`);
      await eventually(
        async () => {
          const h = await agent.health();
          return h.spool.dropped > 0 && h.spool.snapshots.dropped > 0 ? h : undefined;
        },
        60_000,
        'both queues full',
      );
      const atLimit = await phase(3);
      const health = await agent.health();
      t.diagnostic(JSON.stringify({ below, atLimit, spool: health.spool }));
      assert.equal(health.spool.pending, 2500);
      assert.equal(health.spool.snapshots.pending, 1200);
      assert.ok(atLimit.spooled > 500, `${atLimit.spooled} messages spooled at the limits in 3 s`);
      const cpuRatio = atLimit.cpuMsPerMessage / below.cpuMsPerMessage;
      assert.ok(cpuRatio < 3, `CPU per spooled message at the limits / below: ${cpuRatio.toFixed(2)}`);
      assert.ok(
        atLimit.healthzP50Ms < 3 * below.healthzP50Ms + 5,
        `/healthz p50: ${atLimit.healthzP50Ms.toFixed(1)} ms at the limits, ${below.healthzP50Ms.toFixed(1)} ms below`,
      );
    } finally {
      await agent.terminate('SIGTERM');
      await receiver.close();
    }
  });
});
