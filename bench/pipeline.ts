import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createLogger } from '../common/logger.ts';
import { SAMPLE_VIDEO } from '../common/paths.ts';
import { startThread } from '../common/thread.ts';
import { Detector, type FrameDetector } from '../inference/detector.ts';
import { DetectorPool, sessionThreads } from '../inference/detector-pool.ts';
import { loadModel } from '../inference/model-dir.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../inference/settings.ts';
import { writeDerivedModel } from '../models/bundle/lineage.ts';
import { quantizeConfig } from '../models/quant/config.ts';
import { quantizeModel } from '../models/quant/quantize.ts';
import { fetchModels } from '../models/store.ts';
import { CameraRuntime } from '../pipelines/runtime/camera.ts';
import { growHeapForVideo } from '../pipelines/runtime/heap.ts';
import { DetectionScheduler } from '../pipelines/runtime/scheduler.ts';
import { loadScene } from '../pipelines/scene/load.ts';
import type { Scene } from '../pipelines/scene/schema.ts';
import { readModelFrames } from '../test/helpers/frames.ts';
import { recordingDetector } from '../test/helpers/recording-detector.ts';
import { RtspServer } from '../video/rtsp-test-server.ts';
import type { RawInferenceJob } from './raw-inference-thread.ts';
import { machine, percentile, round } from './stats.ts';

/**
 * The edge pipeline against raw inference, on this box:
 * (a) onnxruntime throughput of the detector on pre-made input tensors, at the pipeline's batch size:
 *     the better of one session with every core and the pipeline's sessions side by side;
 * (b) the whole pipeline over vtest.avi (GStreamer decode and scale → detect every frame → tracker →
 *     scene rules → events) through CameraRuntime in replay mode, and (b)/(a);
 * (c) the most live cameras (RTSP from scripts/rtsp-server.py, motion gating on, 5 detect-fps) the box
 *     serves with < 1 % late frames. A frame is *late* when it passed the motion gate and its detection
 *     result reached the camera more than 1/5 s after the frame reached Node, or the scheduler dropped
 *     it for a newer frame of its camera. A step also fails when the cameras receive fewer than 97 %
 *     of the frames they should (5 per second each): frames lost before Node are not hidden; or more
 *     than 103 %: a backlog released in a burst (frames late before they reach Node) is not hidden
 *     either.
 * (d) frame → event latency p50/p99 (frame reaching Node → event message with its snapshot) of the
 *     largest passing step.
 * (c) and (d) run for the model factory's int8 model and for the fp32 model it comes from; the headline
 * figures are those of the variant that serves more cameras. The camera count doubles from 4 until a
 * step fails, then the gap between the most that passed and the fewest that failed is halved until it
 * is at most 2 cameras or 20 %.
 * Env: BENCH_STEP_S (measured seconds per camera step, default 20), BENCH_CAMERAS (explicit counts
 * instead of the search, e.g. "4,8,16", run in order until one fails),
 * BENCH_BATCH (frames per inference call, default the detector settings' default), BENCH_MODELS
 * (the camera sweeps to run, default "fp32,int8"), BENCH_WAIT_MS (how long the live cameras' first
 * waiting frame waits for others to join its inference call, default 5 as on a box), BENCH_NICE (the
 * detector threads' priority, default the detector settings' default).
 */

const log = createLogger('bench-pipeline');
const SCENE = resolve(import.meta.dirname, '../scenes/vtest-campus.yaml');
const DETECT_FPS = 5;
const DEADLINE_MS = 1000 / DETECT_FPS;
const STEP_S = Number(process.env.BENCH_STEP_S ?? 20);
const CAMERA_STEPS = process.env.BENCH_CAMERAS?.split(',').map(Number);
const BUDGET_MS = 420_000;
const LIVE_WAIT_MS = Number(process.env.BENCH_WAIT_MS ?? 5);
const RTSP_PATHS = 4;
const benchStart = performance.now();

const pool = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
if (pool < 64) console.warn(`UV_THREADPOOL_SIZE=${pool}: every camera holds ~3 libuv threads; run with 128`);

growHeapForVideo();
await fetchModels(['nanodet']);
const settings = {
  ...DEFAULT_DETECTOR_SETTINGS,
  maxBatch: Number(process.env.BENCH_BATCH ?? DEFAULT_DETECTOR_SETTINGS.maxBatch),
  threadNice: Number(process.env.BENCH_NICE ?? DEFAULT_DETECTOR_SETTINGS.threadNice),
};
const rawDetector = await Detector.load(settings, log);
const BATCH = rawDetector.maxBatch;
const baseScene = await loadScene(SCENE, rawDetector.descriptor.labels);
console.log(
  `detector ${settings.model} on ${rawDetector.provider}, batch ${BATCH}; ${machine().cores} cores`,
);

// (a) raw inference on pre-made tensors
const frames = (await readModelFrames([0, 100, 200, 300], rawDetector)).map((f) => f.pixels);
const packed = new Uint8Array(BATCH * frames[0]!.length);
for (let i = 0; i < BATCH; i++) packed.set(frames[i % frames.length]!, i * frames[0]!.length);
for (let i = 0; i < 5; i++) await rawDetector.runBatch(packed, BATCH);
const rawTimes: number[] = [];
const rawStart = performance.now();
while (performance.now() - rawStart < 8000 || rawTimes.length < 20) {
  const t0 = performance.now();
  await rawDetector.runBatch(packed, BATCH);
  rawTimes.push(performance.now() - t0);
}
const oneSessionFps = (rawTimes.length * BATCH * 1000) / (performance.now() - rawStart);
console.log(
  `(a) raw onnxruntime, one session with every core, batch ${BATCH}: ${oneSessionFps.toFixed(1)} frames/s (p50 ${percentile(rawTimes, 50).toFixed(1)} ms per batch, ${rawTimes.length} batches)`,
);

/** the pipeline's detector sessions side by side, each on its own thread, on the same batch */
async function rawSessionsFps(): Promise<number> {
  const job: RawInferenceJob = {
    settings: { ...settings, intraOpThreads: sessionThreads(settings) },
    packed,
    batch: BATCH,
    warmup: 5,
    seconds: 8,
  };
  const threads = Array.from({ length: settings.sessions }, () =>
    startThread(new URL('./raw-inference-thread.ts', import.meta.url), job),
  );
  const message = (w: (typeof threads)[number]) =>
    new Promise<unknown>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
  await Promise.all(threads.map(message));
  const results = threads.map(message) as Promise<{ batches: number; ms: number }>[];
  for (const w of threads) w.postMessage('go');
  const done = await Promise.all(results);
  return done.reduce((fps, r) => fps + (r.batches * BATCH * 1000) / r.ms, 0);
}
const sessionsFps = await rawSessionsFps();
console.log(
  `(a) raw onnxruntime, ${settings.sessions} sessions × ${sessionThreads(settings)} threads side by side (the pipeline's detector), batch ${BATCH}: ${sessionsFps.toFixed(1)} frames/s`,
);
/** the baseline is the better of the two: the most this box's onnxruntime does with the model */
const rawFps = Math.max(oneSessionFps, sessionsFps);

/** counts what becomes of every frame submitted to the scheduler */
function instrument(scheduler: DetectionScheduler) {
  const tally = {
    submitted: 0,
    /** of them, whole frames (the rest are regions) */
    whole: 0,
    detected: 0,
    dropped: 0,
    slow: 0,
    counting: false,
    resultMs: [] as number[],
  };
  const submit = scheduler.submit.bind(scheduler);
  scheduler.submit = (camera, frame, regions) => {
    const at = performance.now();
    const counting = tally.counting;
    if (counting) tally.submitted++;
    if (counting && !regions) tally.whole++;
    const result = submit(camera, frame, regions);
    void result.then(
      (d) => {
        if (!counting) return;
        if (d === null) tally.dropped++;
        else {
          tally.detected++;
          const ms = performance.now() - at;
          tally.resultMs.push(ms);
          if (ms > DEADLINE_MS) tally.slow++;
        }
      },
      () => {},
    );
    return result;
  };
  return tally;
}

await rawDetector.close();
// the pipeline's detector: the same session settings, on its own thread
const detector = await DetectorPool.load(settings, log);

// (b) full pipeline over the file, every frame detected
const everyFrame: Scene = { ...baseScene, motion: { ...baseScene.motion, enabled: false } };
const replayScheduler = new DetectionScheduler(detector, { maxBatch: BATCH, maxWaitMs: 5 }, log);
const replayTally = instrument(replayScheduler);
replayTally.counting = true;
let replayEvents = 0;
const replay = new CameraRuntime({
  camera: {
    id: 'replay',
    url: SAMPLE_VIDEO,
    scene: SCENE,
    detectFps: 60,
    loop: false,
    stallTimeoutS: 5,
    rtspTransport: 'tcp',
    decoder: 'auto',
    enabled: true,
  },
  scene: everyFrame,
  scheduler: replayScheduler,
  mode: 'replay',
  replayStart: new Date(0),
  log,
  onEvent: () => {
    replayEvents++;
  },
});
const replayStart = performance.now();
replay.start();
await replay.done;
const replaySeconds = (performance.now() - replayStart) / 1000;
replayScheduler.close();
const pipelineFps = replayTally.detected / replaySeconds;
const ratio = pipelineFps / rawFps;
console.log(
  `(b) pipeline on vtest.avi: ${replay.frames} frames decoded, ${replayTally.detected} detected, ${replayEvents} event messages in ${replaySeconds.toFixed(2)} s = ${pipelineFps.toFixed(1)} frames/s; pipeline/raw ${ratio.toFixed(3)}`,
);

// (c) live RTSP cameras at 5 detect-fps with motion gating
interface Step {
  cameras: number;
  online: number;
  expected: number;
  received: number;
  submitted: number;
  detected: number;
  dropped: number;
  slow: number;
  lateShare: number;
  receivedShare: number;
  motionSkipped: number;
  /** share of the pixels received that the detector looked at */
  motionSearched: number;
  /** pixels of the model inputs inferred, over those of a whole model input per frame submitted */
  inferred: number;
  pass: boolean;
  latencies: number[];
}

async function runStep(server: RtspServer, pool: FrameDetector, n: number): Promise<Step> {
  // counts the model inputs (a whole frame, or a mosaic of moving regions of several frames) and
  // times the inference calls
  const { detector, calls: callLog } = recordingDetector(pool);
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  const scheduler = new DetectionScheduler(detector, { maxBatch: BATCH, maxWaitMs: LIVE_WAIT_MS }, log);
  const tally = instrument(scheduler);
  const cameras = Array.from(
    { length: n },
    (_, i) =>
      new CameraRuntime({
        camera: {
          id: `cam-${i + 1}`,
          url: server.url(`cam-${(i % RTSP_PATHS) + 1}`),
          scene: SCENE,
          detectFps: DETECT_FPS,
          loop: false,
          stallTimeoutS: 5,
          rtspTransport: 'tcp',
          decoder: 'auto',
          enabled: true,
        },
        scene: baseScene,
        scheduler,
        mode: 'live',
        log,
        onEvent: () => {},
      }),
  );
  for (const c of cameras) c.start();
  const upBy = performance.now() + 15_000;
  while (cameras.some((c) => c.frames === 0) && performance.now() < upBy)
    await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 3000)); // warm-up: connections settle, tracks form
  // a count summed over the cameras from now on
  const since = (count: (c: CameraRuntime) => number) => {
    const before = cameras.map(count);
    return () => cameras.reduce((sum, c, i) => sum + count(c) - before[i]!, 0);
  };
  const framesSince = since((c) => c.frames);
  const skippedSince = since((c) => c.stats().motionSkippedShare * c.frames);
  const searchedSince = since((c) => (c.stats().motionSearchedShare ?? 1) * c.frames);
  const latencyBefore = cameras.map((c) => c.eventLatency.count);
  tally.counting = true;
  callLog.inputs.length = 0;
  callLog.pixels.length = 0;
  callLog.ms.length = 0;
  tally.resultMs.length = 0;
  loopDelay.enable();
  const cpuBefore = process.cpuUsage();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, STEP_S * 1000));
  tally.counting = false;
  loopDelay.disable();
  const cpu = process.cpuUsage(cpuBefore);
  const measuredInputs = callLog.inputs.reduce((sum, n) => sum + n, 0);
  const calls = callLog.ms.length;
  const seconds = (performance.now() - t0) / 1000;
  const received = framesSince();
  const skipped = skippedSince();
  const searched = searchedSince();
  const latencies = cameras.flatMap((c, i) => c.eventLatency.values().slice(latencyBefore[i]!));
  const online = cameras.filter((c) => c.stats().state === 'online').length;
  await new Promise((r) => setTimeout(r, 500)); // results of the last submitted frames
  await Promise.all(cameras.map((c) => c.stop()));
  scheduler.close();
  const expected = n * DETECT_FPS * seconds;
  const late = tally.dropped + tally.slow;
  const lateShare = tally.submitted === 0 ? 1 : late / tally.submitted;
  const receivedShare = received / expected;
  const step: Step = {
    cameras: n,
    online,
    expected: Math.round(expected),
    received,
    submitted: tally.submitted,
    detected: tally.detected,
    dropped: tally.dropped,
    slow: tally.slow,
    lateShare,
    receivedShare,
    motionSkipped: received === 0 ? 0 : skipped / received,
    motionSearched: received === 0 ? 0 : searched / received,
    inferred:
      callLog.pixels.reduce((sum, p) => sum + p, 0) /
      Math.max(1, tally.submitted * pool.inputWidth * pool.inputHeight),
    pass: online === n && lateShare < 0.01 && receivedShare >= 0.97 && receivedShare <= 1.03,
    latencies,
  };
  console.log(
    `(c) ${String(n).padStart(2)} cameras: ${online}/${n} online, frames ${received}/${step.expected} (${(100 * receivedShare).toFixed(1)} %), ` +
      `motion-skipped ${(100 * step.motionSkipped).toFixed(0)} %, pixels detected ${(100 * step.motionSearched).toFixed(0)} % (whole frames ${tally.whole} of ${tally.submitted}), model inputs ${measuredInputs} (${(100 * step.inferred).toFixed(0)} % of the frames' pixels), frames detected ${tally.detected}, dropped ${tally.dropped}, ` +
      `over ${DEADLINE_MS} ms ${tally.slow}, late ${(100 * lateShare).toFixed(2)} % → ${step.pass ? 'pass' : 'FAIL'}`,
  );
  console.log(
    `    camera process ${((100 * (cpu.user + cpu.system)) / 1e6 / seconds).toFixed(0)} % CPU; ${calls} inference calls of ${(measuredInputs / Math.max(1, calls)).toFixed(2)} inputs, ` +
      `p50/p99 ${percentile(callLog.ms, 50).toFixed(0)}/${percentile(callLog.ms, 99).toFixed(0)} ms; frame → detections p50/p99 ` +
      `${percentile(tally.resultMs, 50).toFixed(0)}/${percentile(tally.resultMs, 99).toFixed(0)} ms; event-loop delay p99 ${(loopDelay.percentile(99) / 1e6).toFixed(0)} ms`,
  );
  return step;
}

await detector.close();

// (c) and (d) for the fp32 model and for the model factory's int8 model of it (static QDQ,
// calibrated on vtest.avi, the variant that passes the accuracy gate in bench:quant)
const int8Dir = await mkdtemp(join(tmpdir(), 'argus-bench-pipeline-'));
await writeDerivedModel(
  join(int8Dir, 'nanodet-int8'),
  await quantizeModel(await loadModel(settings.model), { config: quantizeConfig(), video: SAMPLE_VIDEO }),
);
const variants = [
  { label: 'int8', model: join(int8Dir, 'nanodet-int8') },
  { label: 'fp32', model: settings.model },
].filter((v) => (process.env.BENCH_MODELS ?? 'fp32,int8').split(',').includes(v.label));

/** the next camera count to measure after `steps`, or undefined when the sweep is done */
function nextCameras(steps: readonly Step[]): number | undefined {
  const last = steps.at(-1);
  if (last && !last.pass && CAMERA_STEPS) return undefined;
  if (CAMERA_STEPS) return CAMERA_STEPS[steps.length];
  const passed = Math.max(0, ...steps.filter((st) => st.pass).map((st) => st.cameras));
  const failed = Math.min(...steps.filter((st) => !st.pass).map((st) => st.cameras));
  if (!Number.isFinite(failed)) return passed === 0 ? 4 : passed * 2;
  if (failed - passed <= 2 || failed <= passed * 1.2) return undefined;
  return passed + 2 * Math.round((failed - passed) / 4);
}

interface Sweep {
  label: string;
  steps: Step[];
  best: Step | undefined;
  reported: Step | undefined;
  p50: number;
  p99: number;
}

const server = await RtspServer.create({
  paths: Array.from({ length: RTSP_PATHS }, (_, i) => `cam-${i + 1}`),
});
const sweeps: Sweep[] = [];
try {
  for (const variant of variants) {
    const threaded = await DetectorPool.load({ ...settings, model: variant.model }, log);
    const steps: Step[] = [];
    try {
      for (let n = nextCameras(steps); n !== undefined; n = nextCameras(steps)) {
        if (performance.now() - benchStart + (STEP_S + 8) * 1000 > BUDGET_MS) {
          console.log(`(c) ${variant.label}: stopping before ${n} cameras: time budget`);
          break;
        }
        const step = await runStep(server, threaded, n);
        steps.push(step);
      }
    } finally {
      await threaded.close();
    }
    const best = steps
      .filter((st) => st.pass)
      .sort((a, b) => a.cameras - b.cameras)
      .at(-1);
    const reported = best ?? steps[0];
    const latencies = reported?.latencies ?? [];
    const sweep: Sweep = {
      label: variant.label,
      steps,
      best,
      reported,
      p50: latencies.length ? percentile(latencies, 50) : Number.NaN,
      p99: latencies.length ? percentile(latencies, 99) : Number.NaN,
    };
    sweeps.push(sweep);
    console.log(
      `(c) ${variant.label}: most cameras at ${DETECT_FPS} detect-fps with < 1 % late frames: ${best?.cameras ?? 0} (RTSP served from ${RTSP_PATHS} paths of one local server on the same box)`,
    );
    console.log(
      `(d) ${variant.label}: frame → event latency at ${reported?.cameras ?? 0} cameras: p50 ${sweep.p50.toFixed(1)} ms, p99 ${sweep.p99.toFixed(1)} ms (${latencies.length} event messages)`,
    );
  }
} finally {
  await server.stop();
  await rm(int8Dir, { recursive: true, force: true });
}

// the headline figures are those of the model a box would run: the one serving more cameras
const chosen = sweeps.reduce((a, b) => ((b.best?.cameras ?? 0) > (a.best?.cameras ?? 0) ? b : a));
const sweepJson = (sw: Sweep) =>
  sw.steps.map((st) => ({
    cameras: st.cameras,
    late_share: round(st.lateShare, 4),
    inferred_share: round(st.inferred, 3),
    received_share: round(st.receivedShare, 4),
    dropped: st.dropped,
    slow: st.slow,
    pass: st.pass,
  }));
console.log(`total ${((performance.now() - benchStart) / 1000).toFixed(0)} s`);
console.log(
  JSON.stringify({
    benchmark: 'pipeline',
    model: settings.model,
    ...machine(),
    batch: BATCH,
    sessions: settings.sessions,
    raw_fps: round(rawFps, 1),
    raw_one_session_fps: round(oneSessionFps, 1),
    raw_sessions_fps: round(sessionsFps, 1),
    pipeline_fps: round(pipelineFps, 1),
    pipeline_over_raw: round(ratio, 3),
    cameras_at_5fps: chosen.best?.cameras ?? 0,
    cameras_model: chosen.label,
    late_frame_share: round(chosen.reported?.lateShare ?? 1, 4),
    received_frame_share: round(chosen.reported?.receivedShare ?? 0, 4),
    motion_skipped_share: round(chosen.reported?.motionSkipped ?? 0, 3),
    motion_searched_share: round(chosen.reported?.motionSearched ?? 1, 3),
    event_latency_p50_ms: round(chosen.p50, 1),
    event_latency_p99_ms: round(chosen.p99, 1),
    ...Object.fromEntries(sweeps.map((sw) => [`cameras_at_5fps_${sw.label}`, sw.best?.cameras ?? 0])),
    ...Object.fromEntries(sweeps.map((sw) => [`steps_${sw.label}`, sweepJson(sw)])),
  }),
);
process.exit(0);
