import { parentPort } from 'node:worker_threads';
import { createLogger } from '../common/logger.ts';
import { threadData } from '../common/thread.ts';
import { Detector } from '../inference/detector.ts';
import type { DetectorSettings } from '../inference/settings.ts';

/**
 * bench:pipeline's raw inference on a worker thread: one detector session runs the same pre-made
 * batch back to back while the main thread says go, and reports how many batches it ran. Several
 * of these side by side measure what the pipeline's detector sessions can do at most.
 */
export interface RawInferenceJob {
  settings: DetectorSettings;
  /** `batch` frames, packed as the model takes them */
  packed: Uint8Array;
  batch: number;
  warmup: number;
  seconds: number;
}

const job = threadData<RawInferenceJob>();
const detector = await Detector.load(job.settings, createLogger('bench-raw'));
for (let i = 0; i < job.warmup; i++) await detector.runBatch(job.packed, job.batch);
parentPort!.postMessage('ready');
parentPort!.once('message', async () => {
  let batches = 0;
  const start = performance.now();
  while (performance.now() - start < job.seconds * 1000) {
    await detector.runBatch(job.packed, job.batch);
    batches++;
  }
  await detector.close();
  parentPort!.postMessage({ batches, ms: performance.now() - start });
});
