import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createLogger } from '../common/logger.ts';
import { SAMPLE_VIDEO } from '../common/paths.ts';
import { DetectorPool } from '../inference/detector-pool.ts';
import { loadModel } from '../inference/model-dir.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../inference/settings.ts';
import { writeDerivedModel } from '../models/bundle/lineage.ts';
import { quantizeConfig } from '../models/quant/config.ts';
import { quantizeModel } from '../models/quant/quantize.ts';
import { fetchModels, readModelDescriptor } from '../models/store.ts';
import { type EventAccuracy, observeReplay, scoreObservation } from '../pipelines/evaluate/events.ts';
import { loadEventTruth } from '../pipelines/evaluate/truth.ts';
import { growHeapForVideo } from '../pipelines/runtime/heap.ts';
import { loadScene } from '../pipelines/scene/load.ts';
import type { Scene } from '../pipelines/scene/schema.ts';
import { machine, round } from './stats.ts';

/**
 * Event accuracy of the box against the hand-annotated ground truth of vtest.avi
 * (test/fixtures/vtest-events-truth.json) on the counting scene (scenes/vtest-counting.yaml), each
 * configuration replayed through the real pipeline (GStreamer, motion gate, detector, tracker,
 * rules, event lifecycle) in the same run:
 * - default: what the box runs — motion regions on, 5 detect-fps, the fp32 model;
 * - whole_frame_fp32 (the reference): no motion gating, every frame, fp32;
 * - whole_frame_5fps: no motion gating at 5 fps (what the motion regions alone cost);
 * - every_frame: motion regions at every frame (what 5 fps alone costs);
 * - int8: the default with the model factory's int8 model (static QDQ, calibrated on vtest.avi).
 * Replays are ordered (every sampled frame is detected), so the figures do not depend on the
 * machine's speed. BENCH_CONFIGS picks configurations (comma-separated labels); a configuration
 * with motion regions is scored by the worst of BENCH_PHASES cameras (below).
 * Last line: one JSON object.
 */

const truthFile = resolve(import.meta.dirname, '../test/fixtures/vtest-events-truth.json');
const sceneFile = resolve(import.meta.dirname, '../scenes/vtest-counting.yaml');
const log = createLogger('bench-accuracy');
growHeapForVideo();

const settings = {
  ...DEFAULT_DETECTOR_SETTINGS,
  sessions: 1,
  intraOpThreads: Number(process.env.BENCH_THREADS ?? 1),
};
await fetchModels([settings.model]);
const truth = await loadEventTruth(truthFile);
const scene = await loadScene(sceneFile, (await readModelDescriptor(settings.model)).labels);
const wholeFrame: Scene = { ...scene, motion: { ...scene.motion, enabled: false } };

const wanted = (
  process.env.BENCH_CONFIGS ?? 'default,whole_frame_fp32,whole_frame_5fps,every_frame,int8'
).split(',');
const int8Dir = await mkdtemp(join(tmpdir(), 'argus-bench-accuracy-'));
const int8Model = join(int8Dir, 'nanodet-int8');
if (wanted.includes('int8')) {
  await writeDerivedModel(
    int8Model,
    await quantizeModel(await loadModel(settings.model), { config: quantizeConfig(), video: SAMPLE_VIDEO }),
  );
}
const configs = [
  { label: 'default', scene, fps: 5, model: settings.model },
  { label: 'whole_frame_fp32', scene: wholeFrame, fps: 10, model: settings.model },
  { label: 'whole_frame_5fps', scene: wholeFrame, fps: 5, model: settings.model },
  { label: 'every_frame', scene, fps: 10, model: settings.model },
  { label: 'int8', scene, fps: 5, model: int8Model },
].filter((c) => wanted.includes(c.label));

/**
 * The motion gate looks at the whole frame once a period, at a moment set by the camera's id, so a
 * configuration with motion regions is replayed as several cameras (BENCH_PHASES, default 4) and
 * scored by its worst one on each metric: a figure must not hang on a lucky camera name.
 */
const PHASES = Number(process.env.BENCH_PHASES ?? 4);

/** per metric the worst of the replays: least recall, precision and IDF1, most of the rest */
function worstOf(all: EventAccuracy[]): EventAccuracy['summary'] {
  const pick = (k: keyof EventAccuracy['summary'], worst: (...v: number[]) => number) => {
    const values = all.map((a) => a.summary[k]).filter((v): v is number => v !== null);
    return values.length ? worst(...values) : null;
  };
  return {
    crossing_recall: pick('crossing_recall', Math.min) as number,
    crossing_precision: pick('crossing_precision', Math.min) as number,
    count_error_share: pick('count_error_share', Math.max) as number,
    occupancy_mae: pick('occupancy_mae', Math.max) as number,
    idf1: pick('idf1', Math.min),
    id_switches: pick('id_switches', Math.max),
    false_events: pick('false_events', Math.max) as number,
  };
}

const results = new Map<string, EventAccuracy & { searched: number; idf1Phases: (number | null)[] }>();
const started = performance.now();
try {
  for (const c of configs) {
    const detector = await DetectorPool.load({ ...settings, model: c.model }, log);
    try {
      const phases = c.scene.motion.enabled ? PHASES : 1;
      const scored: EventAccuracy[] = [];
      let searched = 0;
      for (let phase = 0; phase < phases; phase++) {
        const obs = await observeReplay({
          video: SAMPLE_VIDEO,
          scene: c.scene,
          detector,
          detectFps: c.fps,
          maxBatch: settings.maxBatch,
          log,
          cameraId: `evaluation-${phase}`,
        });
        const a = scoreObservation(truth, obs);
        scored.push(a);
        searched += obs.motionSearchedShare / phases;
        const lines = Object.entries(a.lines)
          .map(
            ([r, l]) =>
              `${r} in ${l.in.found}/${l.in.truth} out ${l.out.found}/${l.out.truth} R ${l.all.recall.toFixed(3)} P ${l.all.precision.toFixed(3)}${l.extra.length ? ` extra ${l.extra.join(' ')}` : ''}${l.missed.length ? ` missed ${l.missed.join(' ')}` : ''}`,
          )
          .join('; ');
        console.log(
          `${`${c.label}${phases > 1 ? ` #${phase}` : ''}`.padEnd(20)} ${lines}; occupancy MAE ${a.summary.occupancy_mae.toFixed(2)}; IDF1 ${a.summary.idf1?.toFixed(3)} (${a.summary.id_switches} switches); false events ${a.summary.false_events}${a.falseEvents.examples.length ? ` (${a.falseEvents.examples.join(', ')})` : ''}; pixels detected ${(100 * obs.motionSearchedShare).toFixed(0)} %`,
        );
      }
      const worst = scored.reduce((w, a) =>
        Object.values(a.lines).reduce((n, l) => n + l.all.recall + l.all.precision, 0) <
        Object.values(w.lines).reduce((n, l) => n + l.all.recall + l.all.precision, 0)
          ? a
          : w,
      );
      results.set(c.label, {
        ...worst,
        summary: worstOf(scored),
        searched,
        idf1Phases: scored.map((a) => a.summary.idf1),
      });
    } finally {
      await detector.close();
    }
  }
} finally {
  await rm(int8Dir, { recursive: true, force: true });
}
console.log(`total ${((performance.now() - started) / 1000).toFixed(0)} s`);

const suffixed = (label: string) =>
  Object.fromEntries(
    Object.entries(results.get(label)?.summary ?? {}).map(([k, v]) => [
      label === 'default' ? k : `${k}_${label}`,
      v,
    ]),
  );
const def = results.get('default');
const ref = results.get('whole_frame_fp32');
console.log(
  JSON.stringify({
    benchmark: 'accuracy',
    model: settings.model,
    ...machine(),
    ...Object.fromEntries(configs.flatMap((c) => Object.entries(suffixed(c.label)))),
    ...(def && ref
      ? {
          // the default's worst shortfall against the reference over the metrics where higher is better, in points
          default_gap_points: round(
            100 *
              Math.max(
                ref.summary.crossing_recall - def.summary.crossing_recall,
                ref.summary.crossing_precision - def.summary.crossing_precision,
                (ref.summary.idf1 ?? 0) - (def.summary.idf1 ?? 0),
              ),
            1,
          ),
          pixels_detected_share: round(def.searched, 3),
          idf1_phases: def.idf1Phases,
        }
      : {}),
    per_line: Object.fromEntries(
      [...results].map(([label, a]) => [
        label,
        Object.fromEntries(
          Object.entries(a.lines).map(([r, l]) => [
            r,
            { in: [l.in.found, l.in.truth, l.in.matched], out: [l.out.found, l.out.truth, l.out.matched] },
          ]),
        ),
      ]),
    ),
  }),
);
process.exit(0);
