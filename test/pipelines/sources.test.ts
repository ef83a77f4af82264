import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createLogger } from '../../common/logger.ts';
import { Detector } from '../../inference/detector.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { DetectionScheduler } from '../../pipelines/runtime/scheduler.ts';
import { loadScene } from '../../pipelines/scene/load.ts';
import type { Scene } from '../../pipelines/scene/schema.ts';
import { eventually } from '../helpers/eventually.ts';
import { liveCamera } from '../helpers/live-camera.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

/**
 * The live sources other than RTSP, each through a real GStreamer pipeline into a live camera with
 * the real detector: GStreamer's test pattern, a recording played at its own pace and looped, and a
 * V4L2 device that is not there (this machine has no camera).
 */

const SCENE = resolve(import.meta.dirname, '../../scenes/vtest-campus.yaml');
const log = createLogger('test-sources');
const run = promisify(execFile);
let detector: Detector;
let scheduler: DetectionScheduler;
let scene: Scene;
let dir: string;

function camera(id: string, url: string, loop = false) {
  return liveCamera({ id, url, scene, scenePath: SCENE, scheduler, log, loop });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('camera sources', () => {
  before(async () => {
    await ensureCatalogModels();
    detector = await Detector.load({ ...DEFAULT_DETECTOR_SETTINGS, intraOpThreads: 1 }, log);
    scene = await loadScene(SCENE, detector.descriptor.labels);
    scheduler = new DetectionScheduler(detector, { maxBatch: 4, maxWaitMs: 5 }, log);
    dir = await mkdtemp(join(tmpdir(), 'argus-sources-'));
  });

  after(async () => {
    scheduler?.close();
    await detector?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('watches a test pattern at its detect rate', async () => {
    const { runtime, statuses } = camera('pattern', 'test://ball');
    try {
      runtime.start();
      await eventually(async () => runtime.stats().state === 'online' || undefined, 10_000, 'online');
      const before = runtime.frames;
      await sleep(2000);
      const frames = runtime.frames - before;
      // videotestsrc runs at 10 fps here; the camera takes 5 of them a second
      assert.ok(frames >= 5 && frames <= 12, `${frames} frames in 2 s at 5 detect-fps`);
      const snapshot = await runtime.snapshotNow();
      assert.deepEqual([snapshot.width, snapshot.height], [640, 480]);
      assert.deepEqual(
        statuses.map((s) => s.state),
        ['online'],
      );
    } finally {
      await runtime.stop();
    }
  });

  it('loops a recording without going offline, or goes offline at its end when not looping', async () => {
    const file = join(dir, 'one-second.mkv');
    await run('gst-launch-1.0', [
      ...['-q', 'videotestsrc', 'num-buffers=10', 'pattern=ball', '!'],
      ...['video/x-raw,width=320,height=240,framerate=10/1', '!', 'x264enc', '!', 'h264parse', '!'],
      ...['matroskamux', '!', 'filesink', `location=${file}`],
    ]);
    const looped = camera('looped', file, true);
    try {
      looped.runtime.start();
      await eventually(async () => looped.runtime.stats().state === 'online' || undefined, 10_000, 'online');
      // played at its own pace: 5 frames a second of a 1-second file, over three of its ends
      await eventually(async () => looped.runtime.frames >= 15 || undefined, 10_000, '15 frames');
      assert.deepEqual(
        looped.statuses.map((s) => s.state),
        ['online'],
      );
    } finally {
      await looped.runtime.stop();
    }
    const once = camera('once', file, false);
    try {
      once.runtime.start();
      await eventually(
        async () => once.statuses.some((s) => s.state === 'offline') || undefined,
        10_000,
        'offline at the end',
      );
      assert.equal(once.statuses.find((s) => s.state === 'offline')?.reason, 'end of stream');
      assert.ok(once.runtime.frames >= 3 && once.runtime.frames <= 7, `${once.runtime.frames} frames`);
    } finally {
      await once.runtime.stop();
    }
  });

  it('reports a V4L2 device that is not there, or is no camera, as offline, saying what to check', async () => {
    const { runtime, statuses } = camera('usb', 'v4l2:///dev/video9');
    try {
      runtime.start();
      await eventually(async () => statuses.length >= 1 || undefined, 10_000, 'offline');
      assert.equal(statuses[0]!.state, 'offline');
      assert.match(
        statuses[0]!.reason ?? '',
        /no device \/dev\/video9: is the camera plugged in\? \(video devices here: /,
      );
      assert.equal(runtime.frames, 0);
    } finally {
      await runtime.stop();
    }
    // a device that is there but is no camera fails inside GStreamer as the pipeline starts
    const notCamera = camera('not-a-camera', 'v4l2:///dev/null');
    try {
      notCamera.runtime.start();
      await eventually(async () => notCamera.statuses.length >= 1 || undefined, 10_000, 'offline');
      assert.equal(notCamera.statuses[0]!.state, 'offline');
      assert.match(
        notCamera.statuses[0]!.reason ?? '',
        /v4l2:\/\/\/dev\/null: .*run it by hand to see: gst-launch-1\.0 v4l2src device="\/dev\/null"/,
      );
    } finally {
      await notCamera.runtime.stop();
    }
  });
});
