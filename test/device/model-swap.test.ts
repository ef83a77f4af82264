import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../common/logger.ts';
import { resolveModelDir } from '../../inference/model-dir.ts';
import { type Candidates, makeCandidates } from '../helpers/candidates.ts';
import { type LiveCameraHost, startLiveCameraHost } from '../helpers/live-camera.ts';

/**
 * The model swap in the live pipeline host, on two live RTSP cameras (scripts/rtsp-server.py
 * looping vtest.avi) with the real detector: the detector both cameras share is swapped for the
 * factory's int8 model with the cameras running — the longest wait between two detected frames of
 * a camera is measured over the swap and must stay under a second — and a model that does not
 * fit the cameras is refused, the running one kept.
 */

const log = createLogger('pipeline-host-swap');

let candidates: Candidates;
let live: LiveCameraHost;

describe('pipeline host: model swap on live cameras', () => {
  before(async () => {
    candidates = await makeCandidates();
    live = await startLiveCameraHost({ cameras: ['cam-a', 'cam-b'], shadowCpuShare: 1 });
  });

  after(async () => {
    await live?.close();
  });

  it('swaps the detector of both cameras with no gap of a second between detected frames at the switch', async () => {
    const ids = ['cam-a', 'cam-b'];
    const detected = new Map(ids.map((id) => [id, [] as number[]]));
    const received = new Map(ids.map((id) => [id, [] as number[]]));
    const counts = new Map(ids.map((id) => [id, live.host.frameCounts(id)]));
    let switchedAt: number | undefined;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const now = performance.now();
        for (const id of ids) {
          const n = live.host.frameCounts(id);
          const was = counts.get(id)!;
          if (n.detected !== was.detected) detected.get(id)!.push(now);
          if (n.received !== was.received) received.get(id)!.push(now);
          counts.set(id, n);
        }
        if (switchedAt === undefined && live.host.stats()[0]?.model?.name === candidates.int8.descriptor.name)
          switchedAt = now;
        await sleep(10);
      }
    })();
    await sleep(1000);
    const swapStarted = performance.now();
    await live.host.swapModel(candidates.int8.dir);
    const swapMs = performance.now() - swapStarted;
    await sleep(2000);
    sampling = false;
    await sampler;
    assert.ok(switchedAt !== undefined, 'the cameras report the new model');
    const longest = (times: number[]) => Math.max(...times.slice(1).map((t, i) => t - times[i]!));
    for (const id of ids) {
      const times = detected.get(id)!;
      assert.ok(times.length > 10, `${id}: ${times.length} detections over the swap`);
      // the wait for a detected frame across the moment the detector was switched
      const after = times.findIndex((t) => t >= (switchedAt ?? Number.POSITIVE_INFINITY));
      assert.ok(after > 0, `${id} detects after the switch`);
      const atSwitch = times[after]! - times[after - 1]!;
      log.warn(
        {
          camera: id,
          swapMs: Math.round(swapMs),
          gapAtSwitchMs: Math.round(atSwitch),
          longestDetectedGapMs: Math.round(longest(times)),
          longestReceivedGapMs: Math.round(longest(received.get(id)!)),
        },
        'model swap',
      );
      assert.ok(atSwitch < 1000, `${id}: ${Math.round(atSwitch)} ms without a detected frame at the switch`);
    }
    const d = candidates.int8.descriptor;
    assert.deepEqual(
      live.host.stats().map((c) => c.model),
      [
        { name: d.name, version: d.version },
        { name: d.name, version: d.version },
      ],
    );
    assert.equal(live.host.detectorStats()?.restarts, 0);
    assert.ok(!live.statuses.some((s) => s.state === 'offline'), JSON.stringify(live.statuses));
  });

  it('refuses a model that takes other frames than the cameras deliver, and keeps the running one', async () => {
    const running = live.host.stats()[0]!.model;
    await assert.rejects(
      live.host.swapModel(resolveModelDir('centernet')),
      /takes 512×512 RGB frames, the cameras deliver 416×416 BGR/,
    );
    await assert.rejects(
      live.host.swapModel(join(live.dir, 'no-such-model')),
      /cannot read model descriptor/,
    );
    assert.deepEqual(live.host.stats()[0]!.model, running);
  });
});
