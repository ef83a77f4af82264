import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { createLogger } from '../../common/logger.ts';
import { Detector, type ModelFrame } from '../../pipelines/detector/detector.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../pipelines/detector/settings.ts';
import { ThreadedDetector } from '../../pipelines/detector/threaded-detector.ts';
import { readModelFrames } from '../helpers/frames.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const log = createLogger('test-threaded-detector');
const settings = { ...DEFAULT_DETECTOR_SETTINGS, intraOpThreads: 1 };

describe('detector on a worker thread', () => {
  let frames: ModelFrame[];
  before(async () => {
    await ensureCatalogModels();
    const probe = await Detector.load(settings, log);
    frames = await readModelFrames([0, 300, 600], probe);
    await probe.close();
  });

  it('finds exactly what the detector on the calling thread finds, batched and concurrently', async () => {
    const local = await Detector.load(settings, log);
    const threaded = await ThreadedDetector.load(settings, log);
    try {
      assert.equal(threaded.inputWidth, local.inputWidth, 'frames above are sized for the model');
      assert.equal(threaded.descriptor.input.colorOrder, 'BGR');
      const expected = await local.detect(frames);
      assert.ok(
        expected.every((d) => d.length >= 3),
        'people in every frame',
      );
      assert.deepEqual(await threaded.detect(frames), expected);
      // requests in flight at once come back to their callers
      const oneByOne = await Promise.all(frames.map((f) => threaded.detect([f])));
      assert.deepEqual(
        oneByOne.map((r) => r[0]),
        expected,
      );
      // the frames stay usable by the caller (they are copied, not transferred)
      assert.ok(frames.every((f) => f.pixels.byteLength === 416 * 416 * 3));
    } finally {
      await local.close();
      await threaded.close();
    }
  });

  it('refuses a frame of the wrong size and a call after close, and reports a model that does not load', async () => {
    const threaded = await ThreadedDetector.load(settings, log);
    await assert.rejects(
      threaded.detect([{ pixels: new Uint8Array(10), sourceWidth: 4, sourceHeight: 4 }]),
      /frame of 10 bytes does not match the model input \(519168 bytes\)/,
    );
    await threaded.close();
    await assert.rejects(threaded.detect(frames.slice(0, 1)), /detector closed/);
    await assert.rejects(
      ThreadedDetector.load({ ...settings, model: 'no-such-model' }, log),
      /no-such-model/,
    );
  });
});
