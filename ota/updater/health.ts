import type { HealthFigures, HealthThresholds, ShadowFigures, ShadowThresholds } from '../../contract/ota.ts';
import type { HealthSample } from './host.ts';

/**
 * The updater's judgements: shadow figures against the rollout's shadow thresholds, and the health
 * window (figures before the swap against those after it) against its health thresholds. Each
 * returns the reason for refusing, in words an operator can act on, or undefined.
 */

export interface TimedSample extends HealthSample {
  /** ms, monotonic (performance.now) */
  t: number;
}

/** what a stretch of samples shows: mean detect fps and latency, events per minute, restarts at its end */
export interface Stretch {
  detectFps: number;
  detectLatencyMs: number;
  eventsPerMin: number;
  detectorRestarts: number;
  spanS: number;
}

export function summarise(samples: readonly TimedSample[]): Stretch {
  if (samples.length === 0)
    return { detectFps: 0, detectLatencyMs: 0, eventsPerMin: 0, detectorRestarts: 0, spanS: 0 };
  const first = samples[0]!;
  const last = samples[samples.length - 1]!;
  const spanS = (last.t - first.t) / 1000;
  const mean = (f: (s: TimedSample) => number) => samples.reduce((sum, s) => sum + f(s), 0) / samples.length;
  return {
    detectFps: mean((s) => s.detectFps),
    detectLatencyMs: mean((s) => s.detectLatencyMs),
    eventsPerMin: spanS > 0 ? ((last.events - first.events) / spanS) * 60 : 0,
    detectorRestarts: last.detectorRestarts,
    spanS,
  };
}

const round = (n: number, digits = 2) => Number(n.toFixed(digits));

export function healthFigures(before: Stretch, after: Stretch, elapsedS: number): HealthFigures {
  return {
    elapsedS: round(elapsedS, 1),
    detectFpsBefore: round(before.detectFps),
    detectFpsAfter: round(after.detectFps),
    detectLatencyMsBefore: round(before.detectLatencyMs),
    detectLatencyMsAfter: round(after.detectLatencyMs),
    detectorRestarts: Math.max(0, after.detectorRestarts - before.detectorRestarts),
    eventsPerMinBefore: round(before.eventsPerMin),
    eventsPerMinAfter: round(after.eventsPerMin),
  };
}

/** the reason the figures fail the thresholds; ratios are only judged against a figure above 0 before */
export function judgeHealth(f: HealthFigures, t: HealthThresholds): string | undefined {
  if (f.detectorRestarts > t.maxDetectorRestarts)
    return `the detector restarted ${f.detectorRestarts} time(s) in the health window; the rollout allows ${t.maxDetectorRestarts}`;
  if (f.detectFpsBefore > 0) {
    const ratio = f.detectFpsAfter / f.detectFpsBefore;
    if (ratio < t.minDetectFpsRatio)
      return `detect fps fell from ${f.detectFpsBefore} to ${f.detectFpsAfter} (×${round(ratio)}); the rollout requires at least ×${t.minDetectFpsRatio}`;
  }
  if (f.detectLatencyMsBefore > 0) {
    const ratio = f.detectLatencyMsAfter / f.detectLatencyMsBefore;
    if (ratio > t.maxDetectLatencyRatio)
      return `detect latency rose from ${f.detectLatencyMsBefore} ms to ${f.detectLatencyMsAfter} ms (×${round(ratio)}); the rollout allows at most ×${t.maxDetectLatencyRatio}`;
  }
  if (t.minEventRateRatio !== undefined && f.eventsPerMinBefore > 0) {
    const ratio = f.eventsPerMinAfter / f.eventsPerMinBefore;
    if (ratio < t.minEventRateRatio)
      return `events fell from ${f.eventsPerMinBefore} to ${f.eventsPerMinAfter} per minute (×${round(ratio)}); the rollout requires at least ×${t.minEventRateRatio}`;
  }
  return undefined;
}

export function judgeShadow(f: ShadowFigures, t: ShadowThresholds): string | undefined {
  if (f.frames < t.frames)
    return `shadow validation ran on ${f.frames} frame(s), fewer than the ${t.frames} the rollout requires`;
  if (f.agreement < t.minAgreement)
    return `the candidate agrees with the current model at mAP@0.5 ${round(f.agreement, 3)} on ${f.frames} frames; the rollout requires at least ${t.minAgreement}`;
  if (f.latencyRatio > t.maxLatencyRatio)
    return `the candidate's latency is ×${round(f.latencyRatio)} the current model's (${round(f.candidateLatencyMs)} ms against ${round(f.currentLatencyMs)} ms); the rollout allows at most ×${t.maxLatencyRatio}`;
  return undefined;
}
