import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../common/logger.ts';
import { Detector, type FrameDetector } from '../../inference/detector.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { DetectionScheduler } from '../../pipelines/runtime/scheduler.ts';
import { readModelFrames } from '../helpers/frames.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const log = createLogger('test-scheduler-batching');
const MAX_WAIT_MS = 200;

/** `inner` whose inference calls start only when the test opens the gate, recording each call's inputs and start */
function gated(inner: FrameDetector) {
  const calls: { inputs: number; at: number }[] = [];
  let open!: () => void;
  let gate = new Promise<void>((r) => {
    open = r;
  });
  const detector: FrameDetector = Object.create(inner, {
    detect: {
      value: async (frames: readonly ModelFrame[]) => {
        calls.push({ inputs: frames.length, at: performance.now() });
        await gate;
        return inner.detect(frames);
      },
    },
  });
  return {
    detector,
    calls,
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
    const scheduler = new DetectionScheduler(g.detector, { maxBatch: 4, maxWaitMs: MAX_WAIT_MS }, log);
    scheduler.register('cam', 'ordered');
    try {
      // the only session runs a whole batch, held at the gate
      const first = frames.slice(0, 4).map((f) => scheduler.submit('cam', f));
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(
        g.calls.map((c) => c.inputs),
        [4],
      );
      // one frame waits behind it, longer than maxWaitMs before the session is free
      const old = scheduler.submit('cam', frames[4]!);
      await new Promise((r) => setTimeout(r, MAX_WAIT_MS + 50));
      assert.equal(g.calls.length, 1, 'nothing runs while the session is busy');
      g.release();
      await Promise.all(first);
      // three more frames arrive just after the session is free: they join the old one
      const more = frames.slice(0, 3).map((f) => scheduler.submit('cam', f));
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(
        g.calls.map((c) => c.inputs),
        [4, 4],
        'the old frame did not run alone the moment the session was free',
      );
      g.release();
      await Promise.all([old, ...more]);
      // with nothing more coming, a lone frame runs once the free session has waited maxWaitMs
      await new Promise((r) => setTimeout(r, 10));
      const lone = scheduler.submit('cam', frames[0]!);
      const submittedAt = performance.now();
      await new Promise((r) => setTimeout(r, MAX_WAIT_MS + 100));
      g.release();
      const detections = await lone;
      assert.ok(detections, 'the lone frame was detected');
      const third = g.calls[2]!;
      assert.equal(third.inputs, 1);
      assert.ok(
        third.at - submittedAt >= MAX_WAIT_MS - 2,
        `the lone frame waited ${(third.at - submittedAt).toFixed(0)} ms for others`,
      );
    } finally {
      scheduler.close();
    }
  });
});
