import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../common/logger.ts';
import { Detector } from '../../inference/detector.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { DetectionScheduler } from '../../pipelines/runtime/scheduler.ts';
import { loadScene } from '../../pipelines/scene/load.ts';
import type { Scene } from '../../pipelines/scene/schema.ts';
import { RtspServer } from '../../video/rtsp-test-server.ts';
import { liveCamera } from '../helpers/live-camera.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

/**
 * A live camera on a real GStreamer RTSP server (scripts/rtsp-server.py, looping vtest.avi as
 * H.264, once as H.265) with the real detector: the server crashes (SIGKILL) and comes back on the
 * same port, or freezes (SIGSTOP, the connection stays open but no frame arrives) and thaws. The
 * camera reports offline, reconnects with its bounded backoff and is online again within 5 s of
 * the server listening again; nothing hangs.
 */

const SCENE = resolve(import.meta.dirname, '../../scenes/vtest-campus.yaml');
const RECONNECT_LIMIT_MS = 5000;

let detector: Detector;
let scheduler: DetectionScheduler;
let scene: Scene;
const log = createLogger('rtsp-resilience');

function rtspCamera(server: RtspServer, id: string, stallTimeoutS: number) {
  return liveCamera({
    id,
    url: server.url('cam-1'),
    scene,
    scenePath: SCENE,
    scheduler,
    log,
    detectFps: 2,
    stallTimeoutS,
  });
}

describe('RTSP camera resilience', () => {
  before(async () => {
    await ensureCatalogModels();
    detector = await Detector.load({ ...DEFAULT_DETECTOR_SETTINGS, intraOpThreads: 1 }, log);
    scene = await loadScene(SCENE, detector.descriptor.labels);
    scheduler = new DetectionScheduler(detector, { maxBatch: 4, maxWaitMs: 5 }, log);
  });

  after(async () => {
    scheduler?.close();
    await detector?.close();
  });

  it('goes offline when the server dies and is back online within 5 s of it listening again', async () => {
    const server = await RtspServer.create({ paths: ['cam-1'] });
    const { runtime, statuses, waitFor } = rtspCamera(server, 'cam-kill', 3);
    try {
      const online = waitFor('online', 15_000);
      runtime.start();
      await online;
      // frames are detected, not only received
      const t0 = performance.now();
      while (runtime.stats().fpsDetect === 0 && performance.now() - t0 < 10_000)
        await new Promise((r) => setTimeout(r, 100));
      assert.ok(runtime.frames > 0, 'frames arrived');
      assert.ok(runtime.stats().fpsDetect > 0, 'frames were detected');

      const offline = waitFor('offline', 10_000);
      await server.kill('SIGKILL');
      const down = await offline;
      assert.equal(down.change.state, 'offline');
      assert.ok(down.change.reason, 'offline carries a reason');
      assert.equal(runtime.stats().state, 'offline');

      // down for a while: the backoff grows to its cap, the camera keeps retrying
      await new Promise((r) => setTimeout(r, 3000));
      const back = waitFor('online', 15_000);
      await server.start();
      const up = await back;
      const reconnectMs = up.at - server.listeningAt;
      log.warn({ reconnectMs: Math.round(reconnectMs) }, 'reconnected after the server restarted');
      assert.ok(
        reconnectMs <= RECONNECT_LIMIT_MS,
        `back online ${reconnectMs.toFixed(0)} ms after the server listened`,
      );
      const framesBefore = runtime.frames;
      await new Promise((r) => setTimeout(r, 1000));
      assert.ok(runtime.frames > framesBefore, 'frames flow again after the reconnect');
      assert.deepEqual(
        statuses.map((s) => s.state),
        ['online', 'offline', 'online'],
      );
    } finally {
      await runtime.stop();
      await server.stop();
    }
  });

  it('watches an H.265 stream: frames decoded, people detected, scene events with snapshots', async () => {
    const server = await RtspServer.create({ paths: ['cam-1'], codec: 'h265' });
    const { runtime, events, waitFor } = rtspCamera(server, 'cam-h265', 3);
    try {
      const online = waitFor('online', 15_000);
      runtime.start();
      await online;
      const t0 = performance.now();
      while (!events.some((e) => e.message.label === 'person') && performance.now() - t0 < 20_000)
        await new Promise((r) => setTimeout(r, 100));
      const person = events.find((e) => e.message.label === 'person');
      assert.ok(person, `a person event within 20 s; ${runtime.frames} frames, ${events.length} events`);
      assert.ok(runtime.stats().fpsDetect > 0, 'frames were detected');
      const withSnapshot = events.find((e) => e.snapshot);
      assert.ok(withSnapshot, 'an event carries a snapshot');
      assert.deepEqual([withSnapshot.snapshot!.width, withSnapshot.snapshot!.height], [768, 576]);
    } finally {
      await runtime.stop();
      await server.stop();
    }
  });

  it('detects a stalled stream (server frozen) with the watchdog, then recovers when it resumes', async () => {
    const server = await RtspServer.create({ paths: ['cam-1'] });
    const stallTimeoutS = 2;
    const { runtime, waitFor } = rtspCamera(server, 'cam-stall', stallTimeoutS);
    try {
      const online = waitFor('online', 15_000);
      runtime.start();
      await online;

      const offline = waitFor('offline', 10_000);
      const frozenAt = performance.now();
      server.signal('SIGSTOP');
      const down = await offline;
      assert.match(down.change.reason ?? '', /stalled/);
      const detectMs = down.at - frozenAt;
      assert.ok(
        detectMs >= stallTimeoutS * 1000 - 200 && detectMs <= stallTimeoutS * 1000 + 2000,
        `stall reported after ${detectMs.toFixed(0)} ms`,
      );

      await new Promise((r) => setTimeout(r, 1500));
      const back = waitFor('online', 15_000);
      const resumedAt = performance.now();
      server.signal('SIGCONT');
      const up = await back;
      const recoverMs = up.at - resumedAt;
      log.warn({ recoverMs: Math.round(recoverMs) }, 'recovered after the server resumed');
      assert.ok(
        recoverMs <= RECONNECT_LIMIT_MS,
        `back online ${recoverMs.toFixed(0)} ms after the server resumed`,
      );
    } finally {
      await runtime.stop();
      await server.stop();
    }
  });
});
