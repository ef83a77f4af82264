import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Box, FrameDetector } from '../../pipelines/detector/detector.ts';
import { iou } from '../../pipelines/detector/nms.ts';
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

/** asserts that `detector` finds every annotated person of vtest.avi frame `index` at IoU ≥ 0.5 */
export async function assertFindsEveryPerson(detector: FrameDetector, index: number): Promise<void> {
  const frames = await readModelFrames([index], detector);
  const [found] = await detector.detect(frames);
  const persons = found!.filter((d) => d.label === 'person');
  for (const truth of groundTruthPersons(index)) {
    const best = Math.max(0, ...persons.map((p) => iou(p.box, truth)));
    assert.ok(best >= 0.5, `person at [${truth}] in frame ${index}: best IoU ${best.toFixed(2)}`);
  }
}
