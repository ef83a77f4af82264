import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SAMPLE_VIDEO } from '../common/paths.ts';
import { hardwareClass } from '../inference/hardware-class.ts';
import { type LoadedModel, loadModel } from '../inference/model-dir.ts';
import { writeDerivedModel } from '../models/bundle/lineage.ts';
import { measureAgreement, reportLatency } from '../models/evaluate/evaluate.ts';
import { checkGate, DEFAULT_GATE } from '../models/evaluate/gate.ts';
import type { EvaluationReport } from '../models/evaluate/report.ts';
import { pruneClasses, TRAFFIC_LABELS } from '../models/prune/prune.ts';
import { quantizeConfig } from '../models/quant/config.ts';
import { DEFAULT_EVALUATION_FRAMES, parseFrameRange } from '../models/quant/frames.ts';
import { quantizeModel } from '../models/quant/quantize.ts';
import { fetchModels } from '../models/store.ts';
import { machine, round } from './stats.ts';

/**
 * The model factory's int8 NanoDet-g and its class-pruned int8 variant against fp32: detect()
 * latency ratio at 1 and 2 intra-op threads (goal ≤ 0.5) and agreement mAP@0.5 with the fp32
 * detections as ground truth (goal ≥ 0.97) on held-out frames of vtest.avi, with model sizes.
 * Quantization uses the default config (calibration on frames 10-390/20); the models are written
 * to a temporary directory, not the model cache.
 */

const RUNS = Number(process.env.BENCH_RUNS ?? 40);
const THREADS = [1, 2] as const;
const frames = parseFrameRange(DEFAULT_EVALUATION_FRAMES, SAMPLE_VIDEO);
const mib = (bytes: number) => round(bytes / (1 << 20), 2);

await fetchModels(['nanodet']);
const fp32 = await loadModel('nanodet');
const dir = await mkdtemp(join(tmpdir(), 'argus-bench-quant-'));

async function derive(name: string, make: () => ReturnType<typeof quantizeModel>): Promise<LoadedModel> {
  await writeDerivedModel(join(dir, name), await make());
  return loadModel(join(dir, name));
}

interface Variant {
  map50: number;
  ratio: Record<(typeof THREADS)[number], number>;
  reports: EvaluationReport[];
}

/** agreement once (it does not depend on the thread count), latency at each thread count */
async function measure(label: string, candidate: LoadedModel): Promise<Variant> {
  const agreement = await measureAgreement(fp32, candidate, {
    frames,
    threads: Math.max(...THREADS),
    candidateScoreThreshold: 0.05,
    minTruths: 10,
  });
  console.log(`${label.padEnd(22)} mAP@0.5 vs fp32 ${agreement.result.map.toFixed(3)}`);
  const reports: EvaluationReport[] = [];
  for (const threads of THREADS) {
    const report = await reportLatency(agreement, { threads, latencyRuns: RUNS });
    const l = report.latency;
    console.log(
      `${''.padEnd(22)} threads ${threads}: p50 ${l.candidateP50Ms.toFixed(1)} ms vs fp32 ${l.referenceP50Ms.toFixed(1)} ms → ratio ${l.ratio.toFixed(2)}`,
    );
    reports.push(report);
  }
  const [one, two] = reports as [EvaluationReport, EvaluationReport];
  for (const c of one.perClass.filter((x) => x.counted)) {
    console.log(
      `${''.padEnd(22)}   ${c.label.padEnd(14)} AP ${c.ap50?.toFixed(3)}  (${c.truths} fp32 detections)`,
    );
  }
  const gate = checkGate(two, DEFAULT_GATE);
  console.log(
    `${''.padEnd(22)}   gate (mAP ≥ ${DEFAULT_GATE.minMap50}, ratio ≤ ${DEFAULT_GATE.maxLatencyRatio}): ${gate.passed ? 'passed' : gate.failures.join('; ')}`,
  );
  return {
    map50: agreement.result.map,
    ratio: { 1: one.latency.ratio, 2: two.latency.ratio },
    reports,
  };
}

try {
  const config = quantizeConfig();
  const int8 = await derive('nanodet-int8', () => quantizeModel(fp32, { config, video: SAMPLE_VIDEO }));
  const pruned = await derive('nanodet-traffic', () =>
    pruneClasses(fp32, { keep: TRAFFIC_LABELS, name: 'nanodet-traffic' }),
  );
  const prunedInt8 = await derive('nanodet-traffic-int8', () =>
    quantizeModel(pruned, { config, video: SAMPLE_VIDEO }),
  );

  console.log(
    `frames ${frames.first}-${frames.last}/${frames.step} of vtest.avi (held out from calibration), ${RUNS} timed runs per model, ${hardwareClass()}`,
  );
  const q = await measure('int8', int8);
  const p = await measure('traffic-pruned int8', prunedInt8);
  const sizes = {
    fp32_mib: mib(fp32.bytes.length),
    int8_mib: mib(int8.bytes.length),
    pruned_fp32_mib: mib(pruned.bytes.length),
    pruned_int8_mib: mib(prunedInt8.bytes.length),
  };
  console.log(
    `sizes: fp32 ${sizes.fp32_mib} MiB, int8 ${sizes.int8_mib} MiB, pruned fp32 ${sizes.pruned_fp32_mib} MiB, pruned int8 ${sizes.pruned_int8_mib} MiB`,
  );
  const fp32P50 = (threads: number) => q.reports[THREADS.indexOf(threads as 1 | 2)]!.latency.referenceP50Ms;
  const summary = {
    benchmark: 'quant',
    model: 'nanodet-g',
    ...machine(),
    hardware_class: hardwareClass(),
    frames: `${frames.first}-${frames.last}/${frames.step}`,
    fp32_p50_ms_1thread: round(fp32P50(1)),
    fp32_p50_ms_2threads: round(fp32P50(2)),
    int8_p50_ms_1thread: round(q.reports[0]!.latency.candidateP50Ms),
    int8_p50_ms_2threads: round(q.reports[1]!.latency.candidateP50Ms),
    int8_over_fp32_latency: round(Math.max(q.ratio[1], q.ratio[2]), 3),
    int8_over_fp32_latency_1thread: round(q.ratio[1], 3),
    int8_over_fp32_latency_2threads: round(q.ratio[2], 3),
    int8_map50_vs_fp32: round(q.map50, 4),
    pruned_int8_over_fp32_latency: round(Math.max(p.ratio[1], p.ratio[2]), 3),
    pruned_int8_over_fp32_latency_1thread: round(p.ratio[1], 3),
    pruned_int8_over_fp32_latency_2threads: round(p.ratio[2], 3),
    pruned_int8_map50_vs_fp32: round(p.map50, 4),
    ...sizes,
  };
  console.log(JSON.stringify(summary));
} finally {
  await rm(dir, { recursive: true, force: true });
}
