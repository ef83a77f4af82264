import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { createLogger } from '../common/logger.ts';
import { SAMPLE_VIDEO } from '../common/paths.ts';
import { compileSchema } from '../common/schema.ts';
import { type Detection, Detector } from '../inference/detector.ts';
import { loadModel } from '../inference/model-dir.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../inference/settings.ts';
import { generateSigningKey, loadSigningKey } from '../models/bundle/keys.ts';
import { writeDerivedModel } from '../models/bundle/lineage.ts';
import type { HarvestedFrame } from '../models/loop/frames.ts';
import { runLoop } from '../models/loop/loop.ts';
import { pruneClasses } from '../models/prune/prune.ts';
import { fetchModels } from '../models/store.ts';
import { teacherConfig } from '../models/teacher/config.ts';
import { modelFrameOf } from '../models/teacher/image.ts';
import {
  DEFAULT_HARVEST_CONFIG,
  frameHash,
  type HarvestConfig,
  HarvestSelector,
} from '../pipelines/harvest/index.ts';
import { type TrackerSettings, TrackerSettingsSchema } from '../pipelines/scene/schema.ts';
import { Tracker } from '../pipelines/tracking/tracker.ts';
import { vtestAnnotatedPersons } from '../test/helpers/annotated.ts';
import { FrameSource } from '../video/frame-source.ts';
import { machine, round } from './stats.ts';

/**
 * The data–model loop on vtest.avi as the site (issue 18): the box's harvest selector runs over the
 * first two thirds of the recording (the student's detections, the tracker, a reference spot check)
 * and keeps what it would upload; the last third is held out (every 5th frame). runLoop then
 * labels, adapts, quantizes, gates and signs. Reported: the student's agreement with the teacher
 * (mAP@0.5) on the held-out frames before and after, the share of the gap to 1.0 closed, false
 * persons per held-out frame (the student's persons at its threshold matching no teacher box),
 * AP@0.5 on the 33 hand-annotated frames before and after, the loop's wall time, and the bytes a
 * box uplinks per day at the default harvest budget. The video is 80 s long, so the harvest runs
 * at a budget scaled to it (BENCH_FRAMES_PER_HOUR, BENCH_MIN_INTERVAL_S): the default budget's 60
 * frames an hour would keep one frame of it.
 */

const FPS = 10;
const FRAMES = 795;
const HARVEST_END = Math.floor((FRAMES * 2) / 3);
const HELD_OUT_STEP = Number(process.env.BENCH_HELD_OUT_STEP ?? 5);
const THREADS = Number(process.env.BENCH_THREADS ?? 2);
const BASE = Date.parse('2026-12-01T08:00:00Z');
const capturedAt = (index: number) => new Date(BASE + (index * 1000) / FPS).toISOString();

const harvestConfig: HarvestConfig = {
  ...DEFAULT_HARVEST_CONFIG,
  framesPerHour: Number(process.env.BENCH_FRAMES_PER_HOUR ?? 3600),
  minIntervalS: Number(process.env.BENCH_MIN_INTERVAL_S ?? 0.5),
  spotCheckEveryS: 5,
  dedupBits: Number(process.env.BENCH_DEDUP_BITS ?? DEFAULT_HARVEST_CONFIG.dedupBits),
};

await fetchModels(['nanodet', 'centernet']);
const dir = await mkdtemp(join(tmpdir(), 'argus-bench-loop-'));
try {
  const teacherLabels = teacherConfig().labels;
  await writeDerivedModel(
    join(dir, 'student'),
    await pruneClasses(await loadModel('nanodet'), { keep: teacherLabels, name: 'nanodet-site' }),
  );
  const studentModel = await loadModel(join(dir, 'student'));
  const settings = { ...DEFAULT_DETECTOR_SETTINGS, maxBatch: 1, intraOpThreads: THREADS };
  const student = await Detector.fromModel(studentModel, { ...settings, scoreThreshold: 0.25 });
  const reference = await Detector.fromModel(await loadModel('nanodet'), settings);
  const tracker = new Tracker(
    compileSchema(TrackerSettingsSchema).withDefaults({}) as TrackerSettings,
    [0, 0, 768, 576],
  );
  let clock = BASE;
  const selector = new HarvestSelector(harvestConfig, () => clock);

  const frames: HarvestedFrame[] = [];
  let harvestedBytes = 0;
  const harvestStart = performance.now();
  const source = new FrameSource(
    { source: { kind: 'file', path: SAMPLE_VIDEO }, model: { width: 768, height: 576, format: 'RGB' } },
    createLogger('bench-loop'),
  );
  let lastSpot = Number.NEGATIVE_INFINITY;
  source.start();
  try {
    for (;;) {
      const f = await source.next();
      if (!f) break;
      const image = { data: new Uint8Array(f.model), width: 768, height: 576 };
      const jpeg = () =>
        sharp(image.data, { raw: { width: 768, height: 576, channels: 3 } })
          .jpeg({ quality: harvestConfig.jpegQuality })
          .toBuffer();
      if (f.index >= HARVEST_END) {
        if ((f.index - HARVEST_END) % HELD_OUT_STEP === 0)
          frames.push({ id: `vtest/${f.index}`, capturedAt: capturedAt(f.index), jpeg: await jpeg() });
        continue;
      }
      const t = f.index / FPS;
      clock = BASE + t * 1000;
      const model = await modelFrameOf(image, studentModel.descriptor.input);
      const [detections] = (await student.detect([model])) as [Detection[]];
      const tracks = tracker.update(detections, t);
      let spotCheck: Detection[] | undefined;
      if (t - lastSpot >= harvestConfig.spotCheckEveryS) {
        lastSpot = t;
        const [found] = (await reference.detect([model])) as [Detection[]];
        spotCheck = found.filter((d) => teacherLabels.includes(d.label));
      }
      const decision = selector.consider({
        camera: 'vtest',
        t,
        width: 768,
        height: 576,
        detections,
        tracks,
        hash: () => frameHash({ pixels: model.pixels, width: 416, height: 416, channels: 3 }),
        ...(spotCheck ? { spotCheck } : {}),
      });
      if (!decision) continue;
      const bytes = await jpeg();
      if (!selector.commit(decision, bytes.length)) continue;
      harvestedBytes += bytes.length;
      frames.push({ id: `vtest/${f.index}`, capturedAt: capturedAt(f.index), jpeg: bytes });
    }
  } finally {
    source.stop();
    await student.close();
    await reference.close();
  }
  const harvestS = (performance.now() - harvestStart) / 1000;
  const stats = selector.stats();
  const heldOut = frames.filter((f) => f.capturedAt >= capturedAt(HARVEST_END)).length;
  console.log(
    `harvest over frames 0-${HARVEST_END - 1}: ${stats.kept} kept of ${stats.considered} (${stats.candidates} candidates, ${stats.duplicates} near-duplicates, ${stats.overBudget} over budget), ${round(harvestedBytes / Math.max(1, stats.kept) / 1024, 1)} KiB each, in ${round(harvestS, 1)} s; ${heldOut} frames held out (${HARVEST_END}-${FRAMES - 1}/${HELD_OUT_STEP})`,
  );

  const key = await generateSigningKey('bench-loop', join(dir, 'keys'));
  const loopStart = performance.now();
  const result = await runLoop({
    site: 'vtest',
    workDir: join(dir, 'work'),
    source: {
      async *frames() {
        yield* frames;
      },
    },
    baseline: join(dir, 'student'),
    heldOutFrom: capturedAt(HARVEST_END),
    annotated: await vtestAnnotatedPersons(),
    signingKey: await loadSigningKey(key.privateKeyPath),
    threads: THREADS,
    onProgress: (step, fraction, message) => {
      if (fraction === 0 || fraction === 1) console.log(`${step}: ${message}`);
    },
  });
  const loopS = (performance.now() - loopStart) / 1000;
  const gate = result.report.steps.gate?.metrics as Record<string, number>;
  const sign = result.report.steps.sign as { map50VsFloat?: number; latencyRatio?: number } | undefined;
  for (const [step, ms] of Object.entries(result.report.wallMs))
    console.log(`  ${step.padEnd(9)} ${round(ms / 1000, 1)} s`);
  console.log(
    `gate: ${result.passed ? 'passed' : `refused: ${result.report.failures.join('; ')}`}; bundle ${result.bundlePath ?? 'none'}`,
  );
  const meanJpeg = harvestedBytes / Math.max(1, stats.kept);
  const perDay = Math.min(
    DEFAULT_HARVEST_CONFIG.framesPerHour * 24 * meanJpeg,
    DEFAULT_HARVEST_CONFIG.megabytesPerDay * 1024 * 1024,
  );
  console.log(
    JSON.stringify({
      benchmark: 'loop',
      ...machine(),
      load_avg_1m: round((await import('node:os')).loadavg()[0]!, 2),
      harvested_frames: stats.kept,
      held_out_frames: gate?.heldOutFrames,
      teacher_boxes_held_out: gate?.teacherBoxes,
      agreement_before: round(gate?.agreementBefore ?? Number.NaN, 4),
      agreement_after: round(gate?.agreementAfter ?? Number.NaN, 4),
      gap_closed_share: round(gate?.gapClosedShare ?? Number.NaN, 4),
      false_persons_per_frame_before: round(gate?.falsePositivesPerFrameBefore ?? Number.NaN, 3),
      false_persons_per_frame_after: round(gate?.falsePositivesPerFrameAfter ?? Number.NaN, 3),
      annotated_map_before: round(gate?.annotatedBefore ?? Number.NaN, 4),
      annotated_map_after: round(gate?.annotatedAfter ?? Number.NaN, 4),
      gate_passed: result.passed,
      signed_bundle: result.bundlePath !== undefined,
      int8_map50_vs_float: round(sign?.map50VsFloat ?? Number.NaN, 4),
      int8_latency_ratio_vs_float: round(sign?.latencyRatio ?? Number.NaN, 3),
      harvest_s: round(harvestS, 1),
      loop_wall_s: round(loopS, 1),
      step_wall_s: Object.fromEntries(
        Object.entries(result.report.wallMs).map(([k, v]) => [k, round(v / 1000, 1)]),
      ),
      mean_harvest_jpeg_bytes: Math.round(meanJpeg),
      bytes_uplinked_per_box_per_day: Math.round(perDay),
    }),
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
