import type { Detector } from '../../inference/detector.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';

/** nearest-rank percentile (p in 0..100) */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

export interface LatencySamples {
  /** per-run milliseconds of each detector, in the order given */
  runs: number[][];
}

const ROUNDS = 3;
const WARMUP = 2;

/**
 * Per-frame detect() latency of several detectors measured in the same process: in ROUNDS rounds,
 * each detector in turn gets a block of warm-up runs and then its timed runs, so that slow drift
 * of the machine (thermal, other load) affects all of them alike, while a block never interleaves
 * two sessions (their ONNX Runtime worker threads spin after each run and would steal each
 * other's cores).
 */
export async function measureLatency(
  detectors: readonly Detector[],
  frames: readonly ModelFrame[],
  runs: number,
  signal?: AbortSignal,
): Promise<LatencySamples> {
  const out = detectors.map(() => [] as number[]);
  const perRound = Math.ceil(runs / ROUNDS);
  let frame = 0;
  const next = () => frames[frame++ % frames.length]!;
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, detector] of detectors.entries()) {
      for (let w = 0; w < WARMUP; w++) await detector.detect([next()]);
      for (let r = 0; r < perRound && out[i]!.length < runs; r++) {
        if (signal?.aborted) throw signal.reason;
        const input = next();
        const t0 = performance.now();
        await detector.detect([input]);
        out[i]!.push(performance.now() - t0);
      }
    }
  }
  return { runs: out };
}
