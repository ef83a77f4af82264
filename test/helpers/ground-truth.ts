import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { FrameDetector } from '../../inference/detector.ts';
import { iou } from '../../inference/nms.ts';
import type { Box } from '../../inference/rect.ts';
import { readModelFrames } from './frames.ts';

interface GroundTruthFile {
  frames: Record<string, Record<string, Box[]>>;
}

const file = JSON.parse(
  readFileSync(new URL('../fixtures/vtest-ground-truth.json', import.meta.url), 'utf8'),
) as GroundTruthFile;

/** hand-annotated person boxes of vtest.avi frames 0, 300 and 600 */
export function groundTruthPersons(frame: number): Box[] {
  return file.frames[String(frame)]?.person ?? [];
}

/**
 * asserts that `detector` finds every annotated person of vtest.avi frame `index` at IoU ≥ 0.5;
 * with `rows` (model-frame rows, a multiple of the model's size step), on an input of only those
 * rows, every person lying within them
 */
export async function assertFindsEveryPerson(
  detector: FrameDetector,
  index: number,
  rows?: { top: number; height: number },
): Promise<void> {
  const [frame] = await readModelFrames([index], detector);
  const { inputWidth: w, inputHeight: h } = detector;
  const band = rows ?? { top: 0, height: h };
  const sy = frame!.sourceHeight / h;
  const input = {
    pixels: frame!.pixels.subarray(band.top * w * 3, (band.top + band.height) * w * 3),
    size: { width: w, height: band.height },
    sourceWidth: frame!.sourceWidth,
    sourceHeight: band.height * sy,
  };
  const [found] = await detector.detect([input]);
  const shift = band.top * sy;
  const persons = found!
    .filter((d) => d.label === 'person')
    .map((d) => [d.box[0], d.box[1] + shift, d.box[2], d.box[3] + shift]);
  const inside = groundTruthPersons(index).filter((t) => t[1] >= shift && t[3] <= shift + band.height * sy);
  assert.ok(inside.length > 0, `annotated persons within rows ${band.top}–${band.top + band.height}`);
  for (const truth of inside) {
    const best = Math.max(0, ...persons.map((p) => iou(p, truth)));
    assert.ok(best >= 0.5, `person at [${truth}] in frame ${index}: best IoU ${best.toFixed(2)}`);
  }
}
