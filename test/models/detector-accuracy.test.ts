import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { Detector } from '../../pipelines/detector/detector.ts';
import { iou } from '../../pipelines/detector/nms.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../pipelines/detector/settings.ts';
import { GROUND_TRUTH_FRAMES, readFrames } from '../helpers/frames.ts';
import { groundTruthPersons } from '../helpers/ground-truth.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

describe('NanoDet-g on vtest.avi against hand-annotated ground truth', () => {
  let detector: Detector;
  before(async () => {
    await ensureCatalogModels();
    detector = await Detector.load({ ...DEFAULT_DETECTOR_SETTINGS, model: 'nanodet' });
  });

  for (const index of GROUND_TRUTH_FRAMES) {
    it(`finds every person of frame ${index} at IoU ≥ 0.5`, async () => {
      const frames = await readFrames([index], { width: 416, height: 416, format: 'BGR' });
      const f = frames.get(index)!;
      const [found] = await detector.detect([
        { pixels: f.model, sourceWidth: f.full.width, sourceHeight: f.full.height },
      ]);
      const persons = found!.filter((d) => d.label === 'person');
      for (const truth of groundTruthPersons(index)) {
        const best = Math.max(0, ...persons.map((p) => iou(p.box, truth)));
        assert.ok(best >= 0.5, `person at [${truth}] in frame ${index}: best IoU ${best.toFixed(2)}`);
      }
    });
  }

  it('returns the same detections for a batch of frames as for each frame alone', async () => {
    const frames = await readFrames([...GROUND_TRUTH_FRAMES], { width: 416, height: 416, format: 'BGR' });
    const inputs = [...frames.values()].map((f) => ({
      pixels: f.model,
      sourceWidth: f.full.width,
      sourceHeight: f.full.height,
    }));
    const batched = await detector.detect(inputs);
    for (const [i, input] of inputs.entries()) {
      const [alone] = await detector.detect([input]);
      assert.deepEqual(batched[i], alone);
    }
  });
});
