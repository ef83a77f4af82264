import { fileURLToPath } from 'node:url';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import type { AnnotatedSet } from '../../models/teacher/annotated.ts';
import { loadEventTruth } from '../../pipelines/evaluate/truth.ts';
import { groundTruthPersons } from './ground-truth.ts';

export const EVENTS_TRUTH_FILE = fileURLToPath(
  new URL('../fixtures/vtest-events-truth.json', import.meta.url),
);

/**
 * Every hand-annotated person box of vtest.avi: frames 0, 300 and 600 (test/fixtures/vtest-ground-
 * truth.json, every person) and the identity frames of the events truth (every 5th of 150-300, the
 * people whose feet are below a third of the frame height), optionally only the frames `only`.
 */
export async function vtestAnnotatedPersons(only?: readonly number[]): Promise<AnnotatedSet> {
  const truth = await loadEventTruth(EVENTS_TRUTH_FILE);
  const identities = truth.identities!;
  const minBottom = (identities.minFeetY ?? 0) * truth.height;
  const frames = new Map<number, AnnotatedSet['frames'][number]>();
  for (const f of identities.frames)
    frames.set(f.frame, { index: f.frame, boxes: f.persons.map((p) => p.box), minBottom });
  for (const index of [0, 300, 600]) frames.set(index, { index, boxes: groundTruthPersons(index) });
  const wanted = only ? new Set(only) : undefined;
  return {
    video: SAMPLE_VIDEO,
    label: 'person',
    width: truth.width,
    height: truth.height,
    frames: [...frames.values()]
      .filter((f) => !wanted || wanted.has(f.index))
      .sort((a, b) => a.index - b.index),
  };
}
