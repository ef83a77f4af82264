import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Detector } from '../../inference/detector.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { GROUND_TRUTH_FRAMES, readModelFrames } from '../helpers/frames.ts';
import { assertFindsEveryPerson } from '../helpers/ground-truth.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

describe('NanoDet-g on vtest.avi against hand-annotated ground truth', () => {
  let detector: Detector;
  before(async () => {
    await ensureCatalogModels();
    detector = await Detector.load({ ...DEFAULT_DETECTOR_SETTINGS, model: 'nanodet' });
  });

  after(() => detector?.close());

  for (const index of GROUND_TRUTH_FRAMES) {
    it(`finds every person of frame ${index} at IoU ≥ 0.5`, () => assertFindsEveryPerson(detector, index));
    it(`finds every person within a band of frame ${index} on inputs of only that band`, async () => {
      assert.equal(detector.descriptor.input.sizeStep, 32);
      await assertFindsEveryPerson(detector, index, { top: 96, height: 256 });
      await assertFindsEveryPerson(detector, index, { top: 64, height: 192 });
    });
  }

  it('returns the same detections for a batch of frames as for each frame alone', async () => {
    const inputs = await readModelFrames(GROUND_TRUTH_FRAMES, detector);
    const batched = await detector.detect(inputs);
    for (const [i, input] of inputs.entries()) {
      const [alone] = await detector.detect([input]);
      assert.deepEqual(batched[i], alone);
    }
  });
});
