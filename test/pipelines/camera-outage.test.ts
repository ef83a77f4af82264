/**
 * A live camera on a real GStreamer RTSP server (looping vtest.avi) with the real detector and the
 * campus scene: when the server dies, the camera's open events end at once with the reason
 * (`after.reason` "camera offline: …"), not when it comes back; its reconnection attempts keep no
 * listener, and the outage is logged once.
 */
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { resolve } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Detector } from '../../inference/detector.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { DetectionScheduler } from '../../pipelines/runtime/scheduler.ts';
import { loadScene } from '../../pipelines/scene/load.ts';
import { RtspServer } from '../../video/rtsp-test-server.ts';
import { eventually } from '../helpers/eventually.ts';
import { liveCamera } from '../helpers/live-camera.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const SCENE = resolve(import.meta.dirname, '../../scenes/vtest-campus.yaml');

const lines: { level: number; msg: string }[] = [];
const log = pino(
  { level: 'debug' },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      done();
    },
  }),
);

describe('a camera going offline', () => {
  let detector: Detector;
  let scheduler: DetectionScheduler;
  before(async () => {
    await ensureCatalogModels();
    detector = await Detector.load({ ...DEFAULT_DETECTOR_SETTINGS, intraOpThreads: 1 }, log);
    scheduler = new DetectionScheduler(detector, { maxBatch: 4, maxWaitMs: 5 }, log);
  });
  after(async () => {
    scheduler?.close();
    await detector?.close();
  });

  it('ends its open events with the reason, retries without leaking, logs the outage once', async () => {
    const scene = await loadScene(SCENE, detector.descriptor.labels);
    const server = await RtspServer.create({ paths: ['cam-1'] });
    const cam = liveCamera({
      id: 'cam-outage',
      url: server.url('cam-1'),
      scene,
      scenePath: SCENE,
      scheduler,
      log,
      detectFps: 5,
      stallTimeoutS: 3,
      reconnect: { startMs: 5, maxMs: 20 },
    });
    const open = () => {
      const ended = new Set(cam.events.filter((e) => e.message.phase === 'end').map((e) => e.message.id));
      return cam.events.filter((e) => e.message.phase === 'new' && !ended.has(e.message.id));
    };
    try {
      const online = cam.waitFor('online', 15_000);
      cam.runtime.start();
      await online;
      // people walk on the left stretch of road from the first frames: zone events open
      await eventually(async () => (open().length > 0 ? true : undefined), 30_000, 'an open event');
      const openAtKill = open().map((e) => e.message.id);
      const offline = cam.waitFor('offline', 10_000);
      await server.kill('SIGKILL');
      const down = await offline;
      await eventually(async () => (open().length === 0 ? true : undefined), 5_000, 'every open event ended');
      for (const id of openAtKill) {
        const end = cam.events.find((e) => e.message.id === id && e.message.phase === 'end')!;
        assert.equal(end.message.after.reason, `camera offline: ${down.change.reason}`);
        assert.ok(
          Date.parse(end.message.at) >= down.change.at.getTime() - 1000,
          'ended when it went offline',
        );
      }
      const warnsAtOffline = lines.filter((l) => l.level >= 40).length;
      const attempts = () => lines.filter((l) => l.msg === 'pipeline error').length;
      const signal = cam.runtime['stop$'].signal;
      const before = attempts();
      await eventually(
        async () => (attempts() >= before + 100 ? true : undefined),
        60_000,
        '100 reconnection attempts',
      );
      assert.ok(
        getEventListeners(signal, 'abort').length <= 1,
        `${getEventListeners(signal, 'abort').length} abort listeners`,
      );
      assert.equal(lines.filter((l) => l.level >= 40).length, warnsAtOffline, 'no warning per attempt');
      assert.equal(cam.runtime.stats().state, 'offline');
    } finally {
      await cam.runtime.stop();
      await server.stop();
    }
  });
});
