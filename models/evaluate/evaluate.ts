import { ArgusError } from '../../common/errors.ts';
import { createProgress } from '../../common/progress.ts';
import {
  AGREEMENT_IOU,
  agreementOf,
  CANDIDATE_SCORE_THRESHOLD,
  checkComparable,
  frameMatch,
} from '../../inference/agreement.ts';
import { type Detection, Detector } from '../../inference/detector.ts';
import { hardwareClass } from '../../inference/hardware-class.ts';
import type { FrameMatch, MapResult } from '../../inference/map.ts';
import type { LoadedModel } from '../../inference/model-dir.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { type ModelRef, readLineage } from '../bundle/lineage.ts';
import {
  type FrameSet,
  formatFrameSet,
  isSiteFrames,
  overlappingFrames,
  readModelFrames,
} from '../quant/frames.ts';
import { cpuDescription } from './hardware.ts';
import { measureLatency, percentile } from './latency.ts';
import type { EvaluationReport } from './report.ts';

/**
 * Agreement of a candidate (quantized, pruned) with its reference on frames not used for
 * calibration: the reference's detections at its operating thresholds are the ground truth, the
 * candidate's detections down to a low score threshold are ranked against them (mAP@0.5, per class
 * and overall), and both models' per-frame latency is measured in the same run.
 */

export interface AgreementOptions {
  /** a range of a recording (decoded here), or frames of a site given as `modelFrames` */
  frames: FrameSet;
  /** the frames themselves, at the models' input size, for site frames */
  modelFrames?: readonly ModelFrame[];
  /** intra-op threads for both models (speed only: the detections do not depend on it) */
  threads: number;
  /** the candidate's detections are ranked down to this score */
  candidateScoreThreshold: number;
  /** classes with fewer reference detections are reported, not averaged */
  minTruths: number;
  signal?: AbortSignal;
}

export interface LatencyOptions {
  /** intra-op threads for both models */
  threads: number;
  /** timed detect() runs per model */
  latencyRuns: number;
  signal?: AbortSignal;
}

export interface EvaluateOptions extends AgreementOptions, LatencyOptions {}

/** a candidate's agreement with its reference, with the decoded frames its latency is measured on */
export interface Agreement {
  reference: LoadedModel;
  candidate: LoadedModel;
  options: AgreementOptions;
  frames: ModelFrame[];
  result: MapResult;
}

export const DEFAULT_EVALUATE_OPTIONS = {
  threads: 1,
  latencyRuns: 30,
  candidateScoreThreshold: CANDIDATE_SCORE_THRESHOLD,
  minTruths: 10,
} as const;

function detectorSettings(threads: number) {
  return {
    ...DEFAULT_DETECTOR_SETTINGS,
    executionProviders: ['cpu'],
    intraOpThreads: threads,
    maxBatch: 1,
  };
}

function ref(model: LoadedModel): ModelRef {
  const d = model.descriptor;
  return { name: d.name, version: d.version, sha256: d.sha256 };
}

/** evaluation frames must not include frames the candidate was calibrated on */
async function checkHeldOut(candidate: LoadedModel, frames: FrameSet): Promise<void> {
  const lineage = await readLineage(candidate.dir);
  for (const step of lineage.steps) {
    if (step.kind !== 'quantize') continue;
    const shared = overlappingFrames(frames, step.calibrationFrames);
    if (shared.length > 0) {
      throw new ArgusError(
        `evaluation frames ${formatFrameSet(frames)} include ${shared.length} frame(s) ${candidate.descriptor.name} was calibrated on (${formatFrameSet(step.calibrationFrames)}), e.g. frame ${shared[0]}`,
        'evaluate on frames not used for calibration (--frames)',
      );
    }
  }
}

/** the evaluation frames: decoded from the recording, or the site frames given */
async function evaluationFrames(reference: LoadedModel, options: AgreementOptions): Promise<ModelFrame[]> {
  const set = options.frames;
  if (isSiteFrames(set)) {
    if (options.modelFrames?.length !== set.count) {
      throw new ArgusError(
        `evaluation on ${formatFrameSet(set)} was given ${options.modelFrames?.length ?? 0} frames`,
        'pass the site frames themselves as modelFrames',
      );
    }
    return [...options.modelFrames];
  }
  const input = reference.descriptor.input;
  const decoding = createProgress('decoding evaluation frames', 'frames');
  const pixels = await readModelFrames(set, input, {
    progress: decoding,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  decoding.finish();
  return pixels.map((p) => ({ pixels: p, sourceWidth: input.width, sourceHeight: input.height }));
}

/** mAP@0.5 of the candidate's detections against the reference's on the evaluation frames */
export async function measureAgreement(
  reference: LoadedModel,
  candidate: LoadedModel,
  options: AgreementOptions,
): Promise<Agreement> {
  const { signal } = options;
  checkComparable(
    reference.descriptor,
    candidate.descriptor,
    'evaluate a candidate against the model it was derived from',
  );
  await checkHeldOut(candidate, options.frames);
  const frames = await evaluationFrames(reference, options);

  const settings = detectorSettings(options.threads);
  const referenceDetector = await Detector.fromModel(reference, settings);
  const candidateDetector = await Detector.fromModel(candidate, {
    ...settings,
    scoreThreshold: options.candidateScoreThreshold,
  });
  try {
    const progress = createProgress('evaluating', 'frames');
    const matches: FrameMatch[] = [];
    for (const [i, frame] of frames.entries()) {
      if (signal?.aborted) throw signal.reason;
      const [truth] = (await referenceDetector.detect([frame])) as [Detection[]];
      const [found] = (await candidateDetector.detect([frame])) as [Detection[]];
      matches.push(frameMatch(candidate.descriptor, truth, found));
      progress.update(i + 1, frames.length);
    }
    progress.finish();
    const result = agreementOf(candidate.descriptor, matches, options.minTruths);
    if (Number.isNaN(result.map)) {
      throw new ArgusError(
        `${reference.descriptor.name} finds fewer than ${options.minTruths} objects of any class ${candidate.descriptor.name} knows on frames ${formatFrameSet(options.frames)}`,
        'evaluate on more frames, or on footage with the objects the model is for',
      );
    }
    return { reference, candidate, options, frames, result };
  } finally {
    await Promise.all([referenceDetector.close(), candidateDetector.close()]);
  }
}

/**
 * The evaluation report of an agreement, with both models' per-frame latency at their operating
 * thresholds measured at `options.threads` on the agreement's frames. One agreement serves a
 * report per thread count.
 */
export async function reportLatency(
  agreement: Agreement,
  options: LatencyOptions,
): Promise<EvaluationReport> {
  const { reference, candidate, result } = agreement;
  const settings = detectorSettings(options.threads);
  const referenceDetector = await Detector.fromModel(reference, settings);
  const candidateDetector = await Detector.fromModel(candidate, settings);
  try {
    const timing = createProgress('measuring latency', 'models');
    const samples = await measureLatency(
      [referenceDetector, candidateDetector],
      agreement.frames,
      options.latencyRuns,
      options.signal,
    );
    timing.finish();
    const [refRuns, candRuns] = samples.runs as [number[], number[]];
    const referenceP50 = percentile(refRuns, 50);
    const candidateP50 = percentile(candRuns, 50);
    const { minTruths, candidateScoreThreshold } = agreement.options;
    return {
      schemaVersion: 1,
      createdAt: new Date().toISOString(),
      candidate: ref(candidate),
      reference: ref(reference),
      hardwareClass: hardwareClass(),
      cpu: `${cpuDescription().cpu} (${cpuDescription().cores} cores)`,
      frames: agreement.options.frames,
      frameCount: agreement.frames.length,
      iouThreshold: AGREEMENT_IOU,
      referenceScoreThreshold: reference.descriptor.thresholds.score,
      candidateScoreThreshold,
      minTruths,
      map50: result.map,
      perClass: result.perClass.map((c) => ({
        label: c.label,
        ap50: c.ap ?? null,
        truths: c.truths,
        detections: c.detections,
        truePositives: c.truePositives,
        counted: c.ap !== undefined && c.truths >= minTruths,
      })),
      latency: {
        referenceP50Ms: referenceP50,
        candidateP50Ms: candidateP50,
        referenceP95Ms: percentile(refRuns, 95),
        candidateP95Ms: percentile(candRuns, 95),
        ratio: candidateP50 / referenceP50,
        runs: options.latencyRuns,
        threads: options.threads,
      },
      sizes: { referenceBytes: reference.bytes.length, candidateBytes: candidate.bytes.length },
    };
  } finally {
    await Promise.all([referenceDetector.close(), candidateDetector.close()]);
  }
}

/** agreement and latency at one thread count: what `argus models evaluate` reports */
export async function evaluateCandidate(
  reference: LoadedModel,
  candidate: LoadedModel,
  options: EvaluateOptions,
): Promise<EvaluationReport> {
  return reportLatency(await measureAgreement(reference, candidate, options), options);
}
