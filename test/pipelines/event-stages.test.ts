/**
 * Every event of a detected frame says where its frame → event latency went: the stages the camera
 * runtime stamps on the frame (motion gate, detector slot, inference, order, rules, earlier events)
 * are never negative and add up to the latency. Events that end at the close of the recording come
 * from no frame and carry none. No event waits for a snapshot: its JPEG is rendered after it is
 * emitted, and every one of them is rendered by the end of the replay.
 */
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../common/logger.ts';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import { Detector } from '../../inference/detector.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import type { CameraEvent } from '../../pipelines/runtime/camera.ts';
import { replayRecording } from '../../pipelines/runtime/replay.ts';
import { loadScene } from '../../pipelines/scene/load.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const SCENE = resolve(import.meta.dirname, '../../scenes/vtest-campus.yaml');
const log = createLogger('event-stages-test');

describe('frame → event stages', () => {
  let detector: Detector;
  before(async () => {
    await ensureCatalogModels();
    detector = await Detector.load({ ...DEFAULT_DETECTOR_SETTINGS, intraOpThreads: 1 }, log);
  });
  after(async () => {
    await detector?.close();
  });

  it('add up to each event latency of a detected frame', async () => {
    const events: CameraEvent[] = [];
    await replayRecording({
      video: SAMPLE_VIDEO,
      scene: await loadScene(SCENE, detector.descriptor.labels),
      scenePath: SCENE,
      detector,
      maxBatch: 4,
      detectFps: 5,
      maxSeconds: 8,
      log,
      onEvent: (e) => {
        events.push(e);
      },
    });
    const snapshots = events.flatMap((e) => (e.snapshot ? [e.snapshot] : []));
    assert.ok(snapshots.length >= 3, `only ${snapshots.length} events with a snapshot`);
    for (const s of snapshots) {
      const jpeg = await s.jpeg;
      assert.deepEqual([...jpeg.subarray(0, 2)], [0xff, 0xd8], 'a snapshot that is not a JPEG');
      assert.deepEqual([s.width, s.height], [768, 576]);
    }
    const staged = events.filter((e) => e.stages);
    assert.ok(staged.length >= 3, `only ${staged.length} events of detected frames in 8 s of vtest.avi`);
    for (const e of staged) {
      const parts = Object.entries(e.stages!);
      for (const [stage, ms] of parts) assert.ok(ms >= 0, `${stage} ${ms} ms`);
      const sum = parts.reduce((s, [, ms]) => s + ms, 0);
      assert.ok(Math.abs(sum - e.latencyMs) < 1e-6, `stages ${sum} ms, latency ${e.latencyMs} ms`);
      assert.ok(e.stages!.inference > 0, 'a detected frame spent no time in inference');
      assert.deepEqual(Object.keys(e.stages!), [
        'motion',
        'slot',
        'inference',
        'order',
        'rules',
        'earlierEvents',
      ]);
    }
    const ended = events.filter((e) => !e.stages);
    assert.ok(
      ended.every((e) => e.message.phase === 'end'),
      'an event without stages that is not an end',
    );
  });
});
