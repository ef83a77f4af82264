import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../common/logger.ts';
import { Detector, type FrameDetector } from '../../inference/detector.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { DetectionScheduler, type DetectionStamps } from '../../pipelines/runtime/scheduler.ts';
import { readModelFrames } from '../helpers/frames.ts';
import { ensureCatalogModels } from '../helpers/models.ts';
import { recordingDetector } from '../helpers/recording-detector.ts';

const log = createLogger('test-scheduler-batching');
const MAX_WAIT_MS = 200;

/** `inner` whose inference calls start only when the test opens the gate */
function gated(inner: FrameDetector) {
  let open!: () => void;
  let gate = new Promise<void>((r) => {
    open = r;
  });
  const detector: FrameDetector = Object.create(inner, {
    detect: {
      value: async (frames: readonly ModelFrame[]) => {
        await gate;
        return inner.detect(frames);
      },
    },
  });
  return {
    detector,
    /** lets the calls waiting at the gate run, and closes it behind them */
    release() {
      const was = open;
      gate = new Promise<void>((r) => {
        open = r;
      });
      was();
    },
  };
}

describe('the scheduler fills a batch when a session frees', () => {
  let detector: Detector;
  let frames: ModelFrame[];
  before(async () => {
    await ensureCatalogModels();
    detector = await Detector.load({ ...DEFAULT_DETECTOR_SETTINGS, maxBatch: 4 }, log);
    frames = await readModelFrames([0, 100, 200, 300, 400], detector);
  });
  after(async () => {
    await detector?.close();
  });

  it('a frame that waited behind a busy session still waits for others to fill the batch, at most maxWaitMs', async () => {
    const g = gated(detector);
    // records each call's inputs as it starts, before the gate
    const { detector: recorded, calls } = recordingDetector(g.detector);
    const scheduler = new DetectionScheduler(recorded, { maxBatch: 4, maxWaitMs: MAX_WAIT_MS }, log);
    scheduler.register('cam', 'ordered');
    try {
      // the only session runs a whole batch, held at the gate
      const first = frames.slice(0, 4).map((f) => scheduler.submit('cam', f));
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(calls.inputs, [4]);
      // one frame waits behind it, longer than maxWaitMs before the session is free
      const old = scheduler.submit('cam', frames[4]!);
      await new Promise((r) => setTimeout(r, MAX_WAIT_MS + 50));
      assert.equal(calls.inputs.length, 1, 'nothing runs while the session is busy');
      g.release();
      await Promise.all(first);
      // three more frames arrive just after the session is free: they join the old one
      const more = frames.slice(0, 3).map((f) => scheduler.submit('cam', f));
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(
        calls.inputs,
        [4, 4],
        'the old frame did not run alone the moment the session was free',
      );
      g.release();
      await Promise.all([old, ...more]);
      // with nothing more coming, a lone frame runs once the free session has waited maxWaitMs
      await new Promise((r) => setTimeout(r, 10));
      const stamps: DetectionStamps = {};
      const lone = scheduler.submit('cam', frames[0]!, undefined, stamps);
      const submittedAt = performance.now();
      await new Promise((r) => setTimeout(r, MAX_WAIT_MS + 100));
      g.release();
      const detections = await lone;
      assert.ok(detections, 'the lone frame was detected');
      assert.equal(calls.inputs[2], 1);
      const waited = stamps.startedAt! - submittedAt;
      assert.ok(waited >= MAX_WAIT_MS - 2, `the lone frame waited ${waited.toFixed(0)} ms for others`);
    } finally {
      scheduler.close();
    }
  });
});
