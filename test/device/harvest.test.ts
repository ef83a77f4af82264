import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { createLogger } from '../../common/logger.ts';
import { freeTcpPort } from '../../common/net.ts';
import { compileSchema } from '../../common/schema.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import { Harvester } from '../../device/harvest.ts';
import { SnapshotUploader } from '../../device/snapshots.ts';
import { Spool, type SpoolLimits } from '../../device/spool.ts';
import type { Detection } from '../../inference/detector.ts';
import { type DetectorSettings, DetectorSettingsSchema } from '../../inference/settings.ts';
import { readModelDescriptor } from '../../models/store.ts';
import { DEFAULT_HARVEST_CONFIG } from '../../pipelines/harvest/config.ts';
import type { DetectedFrame } from '../../pipelines/runtime/camera.ts';
import { startTestControlPlane, tokenOf } from '../control-plane/setup.ts';
import { eventually } from '../helpers/eventually.ts';
import { readFrames } from '../helpers/frames.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const log = createLogger('test-harvest');
const LIMITS: SpoolLimits = {
  maxMessages: 1000,
  maxBytes: 1024 * 1024,
  maxSnapshots: 100,
  maxSnapshotBytes: 1024 * 1024,
  maxHarvestFrames: 100,
  maxHarvestBytes: 8 * 1024 * 1024,
  sync: 'normal',
};
const W = 320;
const H = 240;

/** a detected frame of `shade` (a flat picture with a darker square at `x`), with `detections` */
function detectedFrame(t: number, x: number, detections: Detection[]): DetectedFrame {
  const full = new Uint8Array(W * H * 1.5).fill(128);
  const model = new Uint8Array(160 * 120 * 3);
  for (let y = 0; y < 120; y++)
    for (let i = 0; i < 160; i++)
      model.fill(
        i >= x && i < x + 40 && y >= 30 && y < 90 ? 20 : 40 + i,
        (y * 160 + i) * 3,
        (y * 160 + i) * 3 + 3,
      );
  for (let y = 60; y < 180; y++) full.fill(30, y * W + x * 2, y * W + x * 2 + 80);
  return {
    camera: 'cam-1',
    t,
    frame: {
      index: t * 5,
      model,
      full: { data: full, width: W, height: H, format: 'I420' },
      receivedAt: Date.now(),
      fps: 5,
    },
    modelSize: { width: 160, height: 120 },
    detections,
    tracks: [],
    searched: undefined,
  };
}

const unsure: Detection[] = [{ label: 'person', classId: 0, score: 0.4, box: [100, 60, 130, 140] }];

describe('harvest on the box', () => {
  let dir: string;
  let cp: ControlPlane | undefined;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-device-harvest-'));
  });
  after(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('spools the frames it keeps while the control plane is away, uploads them when it is back, and keeps its budget over a restart', async () => {
    const port = await freeTcpPort();
    const path = join(dir, 'spool.db');
    let spool = Spool.open(path, LIMITS, log);
    const config = { ...DEFAULT_HARVEST_CONFIG, minIntervalS: 0, framesPerHour: 3 };
    const model = () => ({ name: 'nanodet', version: 3 });
    const uploader = new SnapshotUploader(
      'box-1',
      `http://127.0.0.1:${port}`,
      tokenOf('box-1'),
      spool,
      log,
      undefined,
      { backoffStartMs: 20, unreachableMaxMs: 200, busyMaxMs: 200 },
      'harvest',
    );
    let harvester = new Harvester(config, spool, model, () => uploader.kick(), log);
    uploader.start();
    try {
      harvester.observe(detectedFrame(0, 10, unsure));
      await eventually(async () => (spool.stats().harvest.pending === 1 ? true : undefined), 5000, 'spooled');
      // a near-duplicate is skipped; a frame with nothing uncertain is not a candidate
      harvester.observe(detectedFrame(0.2, 10, unsure));
      harvester.observe(detectedFrame(0.4, 100, []));
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(
        { ...harvester.stats(), bytesLastDay: 0 },
        {
          considered: 3,
          candidates: 2,
          duplicates: 1,
          overBudget: 0,
          kept: 1,
          keptBytes: spool.stats().harvest.bytes,
          spotChecks: 0,
          byReason: { uncertain: 1, flicker: 0, 'motion-miss': 0, disagreement: 0 },
          framesLastHour: 1,
          bytesLastDay: 0,
        },
      );
      assert.equal(uploader.uploadState.failing, 'unreachable', 'the control plane is not there yet');

      // the box is labelled with its site while it cannot reach the control plane (on another
      // port), so that the upload finds the label however soon it lands once the port answers
      const labelling = await startTestControlPlane({ dir: join(dir, 'cp') });
      try {
        await labelling.repository.sql.write([
          {
            sql: `INSERT INTO device_labels (device, name, value) VALUES (${labelling.repository.sql.p(1)}, 'site', 'north')`,
            params: ['box-1'],
          },
        ]);
      } finally {
        await labelling.close();
      }
      assert.equal(uploader.uploadState.failing, 'unreachable', 'still away');
      cp = await startTestControlPlane({ dir: join(dir, 'cp'), config: { http: { port } } });
      uploader.retryNow();
      await eventually(
        async () => (spool.stats().harvest.pending === 0 ? true : undefined),
        10_000,
        'uploaded',
      );
      const [frame] = (await cp.harvest.store.listSite('north', 10)).frames;
      assert.ok(frame, 'the control plane holds the frame');
      assert.deepEqual(
        { reasons: frame.reasons, camera: frame.camera, model: frame.model, version: frame.modelVersion },
        { reasons: ['uncertain'], camera: 'cam-1', model: 'nanodet', version: 3 },
      );
      const stored = await cp.harvest.open(frame);
      const chunks: Buffer[] = [];
      for await (const c of stored!) chunks.push(c as Buffer);
      assert.deepEqual(
        await sharp(Buffer.concat(chunks))
          .metadata()
          .then((m) => [m.format, m.width, m.height]),
        ['jpeg', W, H],
      );
    } finally {
      await uploader.stop();
      spool.close();
    }

    // a restart: the budget spent (1 of 3 frames this hour) is read back from the spool
    spool = Spool.open(path, LIMITS, log);
    try {
      harvester = new Harvester(config, spool, model, () => undefined, log);
      assert.equal(harvester.stats().framesLastHour, 1);
      const settled = () => new Promise((r) => setTimeout(r, 300));
      for (const [t, x] of [
        [1, 60],
        [1.2, 120],
        [1.4, 90],
      ] as const) {
        harvester.observe(detectedFrame(t, x, unsure));
        await settled();
      }
      const s = harvester.stats();
      assert.deepEqual(
        {
          kept: s.kept,
          overBudget: s.overBudget,
          framesLastHour: s.framesLastHour,
          pending: spool.stats().harvest.pending,
        },
        { kept: 2, overBudget: 1, framesLastHour: 3, pending: 2 },
      );
    } finally {
      spool.close();
    }
  });
  it('spot-checks a frame with the reference model and keeps it when the running model disagrees', async () => {
    await ensureCatalogModels();
    const descriptor = await readModelDescriptor('nanodet');
    const caps = {
      width: descriptor.input.width,
      height: descriptor.input.height,
      format: descriptor.input.colorOrder,
    };
    const frame = (await readFrames([300], caps)).get(300)!;
    const spool = Spool.open(join(dir, 'spot.db'), LIMITS, log);
    const harvester = new Harvester(
      { ...DEFAULT_HARVEST_CONFIG, minIntervalS: 0, referenceModel: 'nanodet', spotCheckEveryS: 60 },
      spool,
      () => ({ name: 'nanodet-int8', version: 2 }),
      () => undefined,
      log,
    );
    try {
      await harvester.start(compileSchema(DetectorSettingsSchema).withDefaults({}) as DetectorSettings);
      // the running model found nobody in frame 300 of vtest.avi, where the reference finds its pedestrians
      const d: DetectedFrame = {
        camera: 'cam-1',
        t: 60,
        frame,
        modelSize: { width: caps.width, height: caps.height },
        detections: [],
        tracks: [],
        searched: undefined,
      };
      harvester.observe(d);
      await eventually(async () => (spool.stats().harvest.pending === 1 ? true : undefined), 20_000, 'kept');
      const s = harvester.stats();
      assert.deepEqual(
        { spotChecks: s.spotChecks, disagreement: s.byReason.disagreement, considered: s.considered },
        { spotChecks: 1, disagreement: 1, considered: 1 },
      );
      // the next frame within spotCheckEveryS is judged without a spot check
      harvester.observe({ ...d, t: 60.2 });
      assert.equal(harvester.stats().spotChecks, 1);
      assert.equal(harvester.stats().considered, 2);
    } finally {
      await harvester.stop();
      spool.close();
    }
  });
});
