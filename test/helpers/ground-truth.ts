import { readFileSync } from 'node:fs';
import type { Box } from '../../pipelines/detector/detector.ts';

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
