import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../common/logger.ts';
import { type Detection, Detector, type FrameDetector } from '../../inference/detector.ts';
import { DetectorPool, sessionThreads } from '../../inference/detector-pool.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { DetectionScheduler } from '../../pipelines/runtime/scheduler.ts';
import { readModelFrames } from '../helpers/frames.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const log = createLogger('test-detector-pool');
const settings = { ...DEFAULT_DETECTOR_SETTINGS, sessions: 2, intraOpThreads: 1, maxBatch: 2 };

describe('detector sessions side by side', () => {
  let frames: ModelFrame[];
  let expected: Detection[][];
  let pool: DetectorPool;
  before(async () => {
    await ensureCatalogModels();
    const local = await Detector.load(settings, log);
    frames = await readModelFrames([0, 300, 600], local);
    expected = await local.detect(frames);
    await local.close();
    pool = await DetectorPool.load(settings, log);
  });
  after(async () => {
    await pool?.close();
  });

  it('gives each session an equal share of the cores unless told a number', () => {
    const auto = { ...settings, intraOpThreads: 0 };
    assert.equal(sessionThreads(auto, 8), 4);
    assert.equal(sessionThreads({ ...auto, sessions: 3 }, 2), 1);
    assert.equal(sessionThreads(settings, 8), 1);
  });

  it('runs as many inference calls at once as it has sessions, each finding what one detector finds', async () => {
    assert.equal(pool.concurrency, 2);
    let inFlight = 0;
    let most = 0;
    const detect = pool.detect.bind(pool);
    // the pool as the scheduler sees it, counting the calls in progress
    const counted: FrameDetector = {
      descriptor: pool.descriptor,
      provider: pool.provider,
      inputWidth: pool.inputWidth,
      inputHeight: pool.inputHeight,
      maxBatch: pool.maxBatch,
      concurrency: pool.concurrency,
      close: () => pool.close(),
      detect: async (batch: readonly ModelFrame[]) => {
        most = Math.max(most, ++inFlight);
        try {
          return await detect(batch);
        } finally {
          inFlight--;
        }
      },
    };
    const scheduler = new DetectionScheduler(counted, { maxBatch: 2, maxWaitMs: 5 }, log);
    assert.equal(scheduler.queueLimit, 6, 'a batch per session and one waiting');
    scheduler.register('a', 'ordered');
    scheduler.register('b', 'ordered');
    const results = await Promise.all(
      [...frames, ...frames].flatMap((f) => [scheduler.submit('a', f), scheduler.submit('b', f)]),
    );
    scheduler.close();
    assert.equal(most, 2, 'two batches ran at once');
    assert.deepEqual(
      results,
      [...frames, ...frames].flatMap((_, i) => [expected[i % 3], expected[i % 3]]),
    );
  });
});
