import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { readFile } from 'node:fs/promises';
import { Detector } from '../inference/detector.ts';
import { loadModel } from '../inference/model-dir.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../inference/settings.ts';
import { catalogEntry } from '../models/catalog.ts';
import { fetchModels, sourceFilePath } from '../models/store.ts';
import { readFrames } from '../test/helpers/frames.ts';
import { machine, percentile, round, timeRuns } from './stats.ts';

/**
 * NanoDet-g fp32 on onnxruntime-node: latency p50/p95 and throughput at batch 1 and 4 with 1 and 2
 * intra-op threads, against TensorFlow.js with the wasm backend on the same frames in the same run.
 */

const RUNS = Number(process.env.BENCH_RUNS ?? 40);
const entry = catalogEntry('nanodet')!;
await fetchModels(['nanodet']);
const model = await loadModel('nanodet');
const { width, height, normalization } = model.descriptor.input;
const frames = [...(await readFrames([0, 100, 200, 300], { width, height, format: 'BGR' })).values()].map(
  (f) => f.model,
);
const batch4 = new Uint8Array(4 * width * height * 3);
for (const [i, f] of frames.entries()) batch4.set(f, i * f.length);

interface Point {
  p50: number;
  p95: number;
  fps: number;
}
const results: Record<string, Point> = {};
for (const threads of [1, 2]) {
  const detector = await Detector.fromModel(model, {
    ...DEFAULT_DETECTOR_SETTINGS,
    intraOpThreads: threads,
    maxBatch: 4,
  });
  for (const batch of [1, 4]) {
    const input = batch === 1 ? frames[0]! : batch4;
    const times = await timeRuns(
      () => detector.runBatch(input, batch),
      batch === 1 ? RUNS : Math.ceil(RUNS / 2),
      5,
    );
    const p50 = percentile(times, 50);
    results[`b${batch}_t${threads}`] = { p50, p95: percentile(times, 95), fps: (1000 * batch) / p50 };
    console.log(
      `onnxruntime fp32  batch ${batch}  threads ${threads}:  p50 ${p50.toFixed(1)} ms  p95 ${percentile(times, 95).toFixed(1)} ms  ${((1000 * batch) / p50).toFixed(1)} frames/s`,
    );
  }
  await detector.close();
}

await tf.setBackend('wasm');
const json = JSON.parse(await readFile(sourceFilePath(entry.package, entry.files.modelJson), 'utf8'));
const bin = await readFile(sourceFilePath(entry.package, entry.files.weights[0]!));
const tfModel = await tf.loadGraphModel(
  tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest[0].weights,
    weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
    format: json.format,
  } as tf.io.ModelArtifacts),
);
const plane = width * height;
const input = new Float32Array(3 * plane);
for (let i = 0; i < plane; i++) {
  for (let c = 0; c < 3; c++)
    input[c * plane + i] = (frames[0]![i * 3 + c]! - normalization.mean[c]!) / normalization.std[c]!;
}
const tfTimes = await timeRuns(
  async () => {
    const x = tf.tensor(input, [1, 3, height, width]);
    const out = tfModel.execute(x, ['Identity:0', 'Identity_3:0']) as tf.Tensor[];
    await Promise.all(out.map((o) => o.data()));
    tf.dispose([x, ...out]);
  },
  Math.max(5, Math.ceil(RUNS / 4)),
  2,
);
const tfP50 = percentile(tfTimes, 50);
console.log(
  `tfjs-wasm         batch 1  (1 thread):  p50 ${tfP50.toFixed(1)} ms  ${(1000 / tfP50).toFixed(1)} frames/s`,
);

const best = results.b1_t2!;
const summary = {
  benchmark: 'detector',
  model: 'nanodet-g fp32',
  ...machine(),
  fp32_b1_p50_ms: round(best.p50),
  fp32_b1_p95_ms: round(best.p95),
  fp32_b1_fps: round(best.fps, 1),
  fp32_b4_fps: round(results.b4_t2!.fps, 1),
  fp32_b1_p50_ms_1thread: round(results.b1_t1!.p50),
  fp32_b1_fps_1thread: round(results.b1_t1!.fps, 1),
  fp32_b4_fps_1thread: round(results.b4_t1!.fps, 1),
  tfjs_wasm_p50_ms: round(tfP50),
  speedup_vs_tfjs_wasm: round(tfP50 / best.p50, 1),
};
console.log(`speed-up of onnxruntime (batch 1, 2 threads) over tfjs-wasm: ${summary.speedup_vs_tfjs_wasm}×`);
console.log(JSON.stringify(summary));
