import { ArgusError } from '../common/errors.ts';
import type { ModelDescriptor } from './descriptor.ts';
import type { Detection } from './detector.ts';
import { type FrameMatch, type MapResult, meanAveragePrecision } from './map.ts';

/**
 * How much a candidate model agrees with a reference model on the same frames: the reference's
 * detections (at its operating threshold) are taken as truth, the candidate's (down to a low score,
 * so that they can be ranked) are scored against them as mAP@0.5. The model factory gates a derived
 * model with it before packaging; the box's updater measures it on live frames before a swap.
 */

export const AGREEMENT_IOU = 0.5;
/** the candidate's detections are ranked down to this score */
export const CANDIDATE_SCORE_THRESHOLD = 0.05;

/**
 * Refuses a pair of models that cannot be compared frame for frame: another input (size, colour
 * order, type) or classes the reference does not know.
 */
export function checkComparable(reference: ModelDescriptor, candidate: ModelDescriptor, hint: string): void {
  const a = reference.input;
  const b = candidate.input;
  if (a.width !== b.width || a.height !== b.height || a.colorOrder !== b.colorOrder || a.dtype !== b.dtype) {
    throw new ArgusError(
      `${candidate.name} takes ${b.width}×${b.height} ${b.colorOrder} ${b.dtype} frames but ${reference.name} takes ${a.width}×${a.height} ${a.colorOrder} ${a.dtype}`,
      hint,
    );
  }
  const extra = candidate.labels.filter((l) => !reference.labels.includes(l));
  if (extra.length > 0) {
    throw new ArgusError(
      `${candidate.name} has classes its reference ${reference.name} does not know: ${extra.join(', ')}`,
      hint,
    );
  }
}

/** one frame's detections of both models, the reference's limited to the candidate's classes */
export function frameMatch(
  candidate: ModelDescriptor,
  truth: readonly Detection[],
  found: readonly Detection[],
): FrameMatch {
  const kept = new Set(candidate.labels);
  return { truth: truth.filter((d) => kept.has(d.label)), found };
}

/** mAP@0.5 of the candidate over the frames, averaged over classes with at least `minTruths` reference boxes */
export function agreementOf(
  candidate: ModelDescriptor,
  frames: readonly FrameMatch[],
  minTruths: number,
): MapResult {
  return meanAveragePrecision(frames, candidate.labels, { iouThreshold: AGREEMENT_IOU, minTruths });
}
