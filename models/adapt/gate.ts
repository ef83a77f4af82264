import Type from 'typebox';
import { ArgusError } from '../../common/errors.ts';
import { sha256Hex } from '../../common/hash.ts';
import { compileSchema } from '../../common/schema.ts';
import {
  AGREEMENT_IOU,
  agreementOf,
  CANDIDATE_SCORE_THRESHOLD,
  checkComparable,
  frameMatch,
} from '../../inference/agreement.ts';
import { type Detection, Detector } from '../../inference/detector.ts';
import type { FrameMatch } from '../../inference/map.ts';
import type { LoadedModel } from '../../inference/model-dir.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import { iou } from '../../inference/nms.ts';
import type { Box } from '../../inference/rect.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { type AnnotatedSet, scoreOnAnnotated } from '../teacher/annotated.ts';
import type { LabelledFrame } from './features.ts';

/**
 * The gate between an adapted student and the fleet: on held-out frames of the site, the
 * candidate must agree with the teacher (mAP@0.5 of its detections against the teacher's, as
 * inference/agreement.ts measures it) better than the model it would replace, by a rise of at
 * least `minAgreementGain` that closes at least `minGapClosedShare` of the gap to 1.0; and on
 * hand-annotated frames its AP@0.5 must not fall by more than `maxAnnotatedDrop`. The rise is
 * asked as a share of the gap because a fixed rise asks more than the gap holds near 1.0 (a
 * baseline at 0.97 could only pass by closing two thirds of what is left); the absolute floor
 * keeps a rise within the measure's noise from passing on a small gap. A teacher that labels wrongly (boxes off the objects) makes a candidate that
 * agrees with the teacher's held-out labels no better, and the hand-annotated frames catch what
 * the teacher and the candidate get wrong together. The verdict says, one sentence per check
 * missed, by how much.
 */
export const AdaptGateSchema = Type.Object(
  {
    /** the least rise of agreement with the teacher on held-out frames (a floor above noise) */
    minAgreementGain: Type.Number({ minimum: -1, maximum: 1, default: 0.005 }),
    /** the least share of the gap between the baseline's agreement and 1.0 the rise must close */
    minGapClosedShare: Type.Number({ minimum: 0, maximum: 1, default: 0.25 }),
    /** the most the AP@0.5 on the hand-annotated frames may fall */
    maxAnnotatedDrop: Type.Number({ minimum: 0, maximum: 1, default: 0.01 }),
    /** classes with fewer teacher boxes on the held-out frames are reported, not averaged */
    minTruths: Type.Integer({ minimum: 1, default: 5 }),
  },
  { additionalProperties: false },
);

export type AdaptGate = Type.Static<typeof AdaptGateSchema>;

export const adaptGateValidator = compileSchema<AdaptGate>(AdaptGateSchema);

export function adaptGate(partial: unknown = {}): AdaptGate {
  return adaptGateValidator.parse(adaptGateValidator.withDefaults(partial), 'adaptation gate');
}

/** the hand-annotated frames, each as the student takes it (`frames[i]` is `set.frames[i]`) */
export interface AnnotatedFrames {
  set: AnnotatedSet;
  frames: readonly ModelFrame[];
}

export interface GateRequest {
  /** the model the candidate would replace (the site's current student) */
  baseline: LoadedModel;
  candidate: LoadedModel;
  /** held-out frames of the site with the teacher's labels (at its operating threshold) */
  heldOut: Iterable<LabelledFrame> | AsyncIterable<LabelledFrame>;
  annotated: AnnotatedFrames;
  /** sha256 of each frame the candidate was trained on (`AdaptResult.trainedFrames`) */
  trainedFrames: readonly string[];
  gate?: unknown;
  threads?: number;
  signal?: AbortSignal;
}

export interface GateMetrics {
  heldOutFrames: number;
  /** teacher boxes of the candidate's classes on them */
  teacherBoxes: number;
  agreementBefore: number;
  agreementAfter: number;
  /** share of the gap to 1.0 the candidate closed */
  gapClosedShare: number;
  annotatedFrames: number;
  annotatedBefore: number;
  annotatedAfter: number;
  /** detections of the annotated class at the operating threshold matching no teacher box, per held-out frame */
  falsePositivesPerFrameBefore: number;
  falsePositivesPerFrameAfter: number;
}

export interface AdaptVerdict {
  passed: boolean;
  /** one sentence per check missed */
  failures: string[];
  metrics: GateMetrics;
}

export interface AgreementRise {
  gain: number;
  /** share of the gap to 1.0 the candidate closed (0 when the baseline already agrees fully) */
  gapClosedShare: number;
  /** the sentence of the verdict when the rise misses either criterion */
  failure?: string;
}

/** whether agreement with the teacher rose from `before` to `after` by what `gate` asks */
export function agreementRise(
  before: number,
  after: number,
  gate: Pick<AdaptGate, 'minAgreementGain' | 'minGapClosedShare'>,
): AgreementRise {
  const gain = after - before;
  const gap = 1 - before;
  const gapClosedShare = gap > 0 ? gain / gap : 0;
  const signed = `${gain >= 0 ? '+' : ''}${gain.toFixed(3)}`;
  const went = `went from ${before.toFixed(3)} to ${after.toFixed(3)} (${signed})`;
  if (gap <= 0) {
    return {
      gain,
      gapClosedShare,
      failure: `${went}: the baseline already agrees fully, a candidate cannot rise`,
    };
  }
  const missed: string[] = [];
  if (gain < gate.minAgreementGain) {
    missed.push(`short of the gate's minimum rise of ${gate.minAgreementGain.toFixed(3)}`);
  }
  if (gapClosedShare < gate.minGapClosedShare) {
    missed.push(
      `closing ${(gapClosedShare * 100).toFixed(1)} % of the gap to 1.0 against the ${(gate.minGapClosedShare * 100).toFixed(1)} % the gate asks`,
    );
  }
  return missed.length === 0
    ? { gain, gapClosedShare }
    : { gain, gapClosedShare, failure: `${went}, ${missed.join(' and ')}` };
}

/** detections at or above `score` of `label` that overlap no truth of it by AGREEMENT_IOU (each truth matched once) */
function falsePositives(
  found: readonly Detection[],
  truth: readonly Detection[],
  label: string,
  score: number,
): number {
  const truths = truth.filter((t) => t.label === label).map((t) => t.box);
  const used = new Array<boolean>(truths.length).fill(false);
  let count = 0;
  for (const d of [...found]
    .filter((f) => f.label === label && f.score >= score)
    .sort((a, b) => b.score - a.score)) {
    let best = -1;
    let bestIou = AGREEMENT_IOU;
    truths.forEach((t, i) => {
      const o = used[i] ? 0 : iou(d.box, t);
      if (o >= bestIou) {
        bestIou = o;
        best = i;
      }
    });
    if (best >= 0) used[best] = true;
    else count++;
  }
  return count;
}

export async function gateAdapted(request: GateRequest): Promise<AdaptVerdict> {
  const { baseline, candidate, annotated, signal } = request;
  const gate = adaptGate(request.gate);
  checkComparable(
    baseline.descriptor,
    candidate.descriptor,
    'gate a candidate adapted from the baseline it replaces',
  );
  if (!candidate.descriptor.labels.includes(annotated.set.label)) {
    throw new ArgusError(
      `${candidate.descriptor.name} has no class "${annotated.set.label}", the class of the annotated frames`,
    );
  }
  const trained = new Set(request.trainedFrames);
  const settings = {
    ...DEFAULT_DETECTOR_SETTINGS,
    executionProviders: ['cpu'],
    intraOpThreads: request.threads ?? 1,
    maxBatch: 1,
    scoreThreshold: CANDIDATE_SCORE_THRESHOLD,
  };
  const models = [baseline, candidate] as const;
  const detectors = await Promise.all(models.map((m) => Detector.fromModel(m, settings)));
  try {
    const detect = async (frame: ModelFrame) =>
      Promise.all(detectors.map(async (d) => ((await d.detect([frame])) as [Detection[]])[0]));
    const held: [FrameMatch[], FrameMatch[]] = [[], []];
    const falses = [0, 0];
    let heldOutFrames = 0;
    let teacherBoxes = 0;
    for await (const f of request.heldOut) {
      if (signal?.aborted) throw signal.reason;
      if (trained.has(sha256Hex(f.frame.pixels))) {
        throw new ArgusError(
          `held-out frame ${f.id} is one the candidate was trained on`,
          'hold out frames the adaptation did not see (e.g. the last third of the harvest)',
        );
      }
      const truth: Detection[] = f.labels.map((l) => ({
        ...l,
        box: [...l.box] as Box,
        classId: candidate.descriptor.labels.indexOf(l.label),
      }));
      const found = await detect(f.frame);
      found.forEach((dets, m) => {
        const match = frameMatch(candidate.descriptor, truth, dets);
        held[m]!.push(match);
        falses[m]! += falsePositives(
          dets,
          truth,
          annotated.set.label,
          models[m]!.descriptor.thresholds.score,
        );
      });
      teacherBoxes += held[1].at(-1)!.truth.length;
      heldOutFrames++;
    }
    const [agreementBefore, agreementAfter] = held.map(
      (frames) => agreementOf(candidate.descriptor, frames, gate.minTruths).map,
    );
    if (heldOutFrames === 0 || Number.isNaN(agreementBefore) || Number.isNaN(agreementAfter)) {
      throw new ArgusError(
        `the teacher labelled fewer than ${gate.minTruths} objects of any class of ${candidate.descriptor.name} on ${heldOutFrames} held-out frames`,
        'hold out more frames of the site',
      );
    }

    const { set } = annotated;
    if (annotated.frames.length !== set.frames.length) {
      throw new ArgusError(
        `${annotated.frames.length} frames given for ${set.frames.length} annotated frames`,
      );
    }
    const ann: [Detection[][], Detection[][]] = [[], []];
    for (const frame of annotated.frames) {
      if (signal?.aborted) throw signal.reason;
      (await detect(frame)).forEach((dets, m) => {
        ann[m]!.push(dets);
      });
    }
    const [annotatedBefore, annotatedAfter] = ann.map(
      (found, m) => scoreOnAnnotated(set, found, models[m]!.descriptor.thresholds.score).ap,
    );
    if (Number.isNaN(annotatedBefore) || Number.isNaN(annotatedAfter)) {
      throw new ArgusError(`the ${set.frames.length} annotated frames hold no "${set.label}"`);
    }

    const failures: string[] = [];
    const rise = agreementRise(agreementBefore!, agreementAfter!, gate);
    if (rise.failure) {
      failures.push(`agreement with the teacher on ${heldOutFrames} held-out frames ${rise.failure}`);
    }
    const drop = annotatedBefore! - annotatedAfter!;
    if (drop > gate.maxAnnotatedDrop) {
      failures.push(
        `AP@0.5 of "${annotated.set.label}" on ${set.frames.length} hand-annotated frames fell from ${annotatedBefore!.toFixed(3)} to ${annotatedAfter!.toFixed(3)}, ${drop.toFixed(3)} more than the ${gate.maxAnnotatedDrop.toFixed(3)} the gate allows`,
      );
    }
    return {
      passed: failures.length === 0,
      failures,
      metrics: {
        heldOutFrames,
        teacherBoxes,
        agreementBefore: agreementBefore!,
        agreementAfter: agreementAfter!,
        gapClosedShare: rise.gapClosedShare,
        annotatedFrames: set.frames.length,
        annotatedBefore: annotatedBefore!,
        annotatedAfter: annotatedAfter!,
        falsePositivesPerFrameBefore: falses[0]! / heldOutFrames,
        falsePositivesPerFrameAfter: falses[1]! / heldOutFrames,
      },
    };
  } finally {
    await Promise.all(detectors.map((d) => d.close()));
  }
}
