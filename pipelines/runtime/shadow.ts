import { ArgusError } from '../../common/errors.ts';
import type { ShadowFigures } from '../../contract/ota.ts';
import { agreementOf, frameMatch } from '../../inference/agreement.ts';
import type { Detection, FrameDetector } from '../../inference/detector.ts';
import type { FrameMatch } from '../../inference/map.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import { SampleWindow } from './stats.ts';

/** a camera's newest frame, as CameraRuntime.latestFrame gives it */
export interface FrameSample {
  frame: ModelFrame;
  receivedAt: number;
}

export interface ShadowOptions {
  /** frames both models run on */
  frames: number;
  /** the run fails when it has not gathered and run them in this time */
  timeoutMs: number;
  /**
   * share of one core the two models' runs may take together (0 < share ≤ 1): after each frame the
   * run pauses for as long as its two runs took, times (1 − share) / share
   */
  cpuShare: number;
  signal: AbortSignal;
}

/** classes with fewer reference boxes over the sampled frames are reported, not averaged */
const MIN_TRUTHS = 5;
/** how long the run waits for a camera to deliver a frame it has not sampled yet */
const NO_NEW_FRAME_WAIT_MS = 50;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });

/**
 * The candidate's agreement with the reference over the matched frames: mAP@0.5 over the classes
 * the reference found at least MIN_TRUTHS times, else over every class it found. When the reference
 * found nothing at all, the two agree only if the candidate found nothing at its own operating
 * threshold either (1), else not (0).
 */
export function shadowAgreement(candidate: FrameDetector, matches: readonly FrameMatch[]): number {
  const d = candidate.descriptor;
  let map = agreementOf(d, matches, MIN_TRUTHS).map;
  if (Number.isNaN(map)) map = agreementOf(d, matches, 1).map;
  if (Number.isNaN(map)) {
    const operating = d.thresholds.score;
    return matches.some((m) => m.found.some((f) => f.score >= operating)) ? 0 : 1;
  }
  return map;
}

const p50 = (w: SampleWindow) => w.percentile(50);
const round = (v: number, digits: number) => Number(v.toFixed(digits));

/**
 * Shadow validation on live frames: takes the cameras' newest frames in turn (each frame once;
 * the frames the pipeline already decoded, no second decode), runs the reference and the candidate
 * on each, one frame at a time, and waits between frames so that both together take at most
 * `cpuShare` of one core. Both detectors should run on low-priority threads of their own, so that
 * the cameras' detector keeps its pace (the scheduler's frames come first). Returns the agreement
 * of the candidate with the reference and both p50 latencies, measured the same way.
 */
export async function runShadow(
  cameras: () => readonly (() => FrameSample | undefined)[],
  reference: FrameDetector,
  candidate: FrameDetector,
  options: ShadowOptions,
): Promise<ShadowFigures> {
  if (!(options.cpuShare > 0 && options.cpuShare <= 1))
    throw new ArgusError(`shadow cpuShare ${options.cpuShare} is not in (0, 1]`);
  const deadline = performance.now() + options.timeoutMs;
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = AbortSignal.any([options.signal, timeout]);
  const matches: FrameMatch[] = [];
  const referenceLatency = new SampleWindow(options.frames);
  const candidateLatency = new SampleWindow(options.frames);
  const sampled = new Map<number, number>();
  let turn = 0;
  while (matches.length < options.frames) {
    if (signal.aborted || performance.now() >= deadline) {
      const why = options.signal.aborted
        ? 'it was canceled'
        : `the time ran out (${Math.round(options.timeoutMs / 1000)} s)`;
      throw new ArgusError(
        `shadow validation ran ${matches.length} of ${options.frames} frames before ${why}`,
        options.signal.aborted
          ? 'nothing to fix: the update was withdrawn or the box is stopping'
          : 'the cameras delivered too few frames: check that they are online, or give the shadow step fewer frames or more time',
      );
    }
    const sources = cameras();
    let sample: FrameSample | undefined;
    for (let k = 0; k < sources.length && !sample; k++) {
      const i = (turn + k) % sources.length;
      const s = sources[i]!();
      if (s && sampled.get(i) !== s.receivedAt) {
        sampled.set(i, s.receivedAt);
        sample = s;
        turn = i + 1;
      }
    }
    if (!sample) {
      await sleep(NO_NEW_FRAME_WAIT_MS, signal);
      continue;
    }
    const t0 = performance.now();
    const [truth] = (await reference.detect([sample.frame])) as [Detection[]];
    const t1 = performance.now();
    const [found] = (await candidate.detect([sample.frame])) as [Detection[]];
    const t2 = performance.now();
    referenceLatency.add(t1 - t0);
    candidateLatency.add(t2 - t1);
    matches.push(frameMatch(candidate.descriptor, truth, found));
    await sleep(((t2 - t0) * (1 - options.cpuShare)) / options.cpuShare, signal);
  }
  const currentLatencyMs = p50(referenceLatency);
  const candidateLatencyMs = p50(candidateLatency);
  return {
    frames: matches.length,
    agreement: round(shadowAgreement(candidate, matches), 4),
    candidateLatencyMs: round(candidateLatencyMs, 2),
    currentLatencyMs: round(currentLatencyMs, 2),
    latencyRatio: round(Math.min(1000, candidateLatencyMs / Math.max(currentLatencyMs, 1e-3)), 3),
  };
}
