import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { ArgusError } from '../../common/errors.ts';
import { buildDirAtomic, sweepStaging, writeFileAtomic } from '../../common/fs-atomic.ts';
import { sha256Hex } from '../../common/hash.ts';
import { createLogger } from '../../common/logger.ts';
import type { Detection } from '../../inference/detector.ts';
import { type LoadedModel, loadModel } from '../../inference/model-dir.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import { adaptStudent } from '../adapt/adapt.ts';
import type { LabelledFrame } from '../adapt/features.ts';
import { type AnnotatedFrames, gateAdapted } from '../adapt/gate.ts';
import { buildBundle } from '../bundle/build.ts';
import type { SigningKey } from '../bundle/keys.ts';
import { type LoopLineageStep, readLineage, writeDerivedModel } from '../bundle/lineage.ts';
import { measureAgreement, reportLatency } from '../evaluate/evaluate.ts';
import { checkGate, DEFAULT_GATE } from '../evaluate/gate.ts';
import { writeEvaluationReport } from '../evaluate/report.ts';
import { pruneClasses } from '../prune/prune.ts';
import { quantizeConfig } from '../quant/config.ts';
import type { SiteFrames } from '../quant/frames.ts';
import { quantizeModel } from '../quant/quantize.ts';
import { ensureModelInstalled } from '../store.ts';
import { type AnnotatedSet, readVideoImages } from '../teacher/annotated.ts';
import { type TeacherConfig, teacherConfig } from '../teacher/config.ts';
import { decodeImage, modelFrameOf } from '../teacher/image.ts';
import { Teacher } from '../teacher/teacher.ts';
import {
  type CollectSummary,
  collectFrames,
  type FrameEntry,
  type HarvestedFrames,
  LABELS_FILE,
  type LabelLine,
  readIndex,
  readJpeg,
  readLabels,
  readModelFrame,
  type Split,
} from './frames.ts';
import { type LoopSettingsInput, loopSettings } from './settings.ts';
import { LOOP_STEPS, type LoopState, type LoopStep, readLoopState, writeLoopState } from './state.ts';

/**
 * The data–model loop for one site (issue 18), as one resumable run in a work directory:
 *
 * 1. collect: the site's harvested JPEG frames are streamed in, decoded into the student's input
 *    and split by capture time into training frames and held-out ones (the latest third);
 * 2. teacher: the teacher labels every frame at full resolution;
 * 3. adapt: the student's head is trained on the teacher's labels of the training frames
 *    (models/adapt);
 * 4. quantize: the adapted student is quantized to int8, calibrated on the site's training frames;
 * 5. gate: on the held-out frames its agreement with the teacher must rise over the student the
 *    boxes run, and on hand-annotated frames its accuracy must not fall (models/adapt/gate.ts);
 * 6. sign: a passing candidate is evaluated against its float model (the factory's quantization
 *    gate) and packed as a signed bundle whose lineage names the teacher, the frames, the losses
 *    and every step's metrics, ready to publish and roll out to the site's boxes.
 *
 * Each step's output stays in the work directory (`collect/`, `teacher/`, `adapt/`, `quantize/`,
 * `gate/`, `sign/`), each renamed into place whole, and `state.json` records each finished step
 * before the next begins: a run interrupted (killed, aborted) and started again on the same
 * directory resumes at the step it was in and never leaves a partial artifact.
 */

/** a run: its site, work directory and frames, with the loop's settings (models/loop/settings.ts) */
export interface LoopOptions extends LoopSettingsInput {
  /** the site's label (e.g. the rollout label `site=north`) */
  site: string;
  workDir: string;
  source: HarvestedFrames;
  /** signs the bundle; without it the bundle is written unsigned (`argus models sign` later) */
  signingKey?: SigningKey;
  signal?: AbortSignal;
  onProgress?: (step: LoopStep, fraction: number, message: string) => void;
}

export interface LoopReport {
  site: string;
  workDir: string;
  /** every step's summary, by step */
  steps: LoopState['results'];
  wallMs: LoopState['wallMs'];
  failures: string[];
}

export interface LoopResult {
  bundlePath?: string;
  passed: boolean;
  report: LoopReport;
}

const SITE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$/;
const log = createLogger('loop');

function dirOf(workDir: string, step: LoopStep): string {
  return join(workDir, step);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** held-out (or training) frames with the teacher's labels, one at a time */
async function* labelledFrames(workDir: string, split: Split): AsyncIterable<LabelledFrame> {
  const collect = dirOf(workDir, 'collect');
  const labels = readLabels(dirOf(workDir, 'teacher'))[Symbol.asyncIterator]();
  for await (const entry of readIndex(collect)) {
    const line = (await labels.next()) as IteratorResult<LabelLine>;
    if (line.done || line.value.n !== entry.n) {
      throw new ArgusError(
        `the teacher's labels do not follow the frames at frame ${entry.n}`,
        'run the loop in a new work directory',
      );
    }
    if (entry.split !== split) continue;
    yield { id: entry.id, frame: await readModelFrame(collect, entry), labels: line.value.labels };
  }
}

/** `count` entries of a split spread evenly over it */
async function spreadEntries(collect: string, split: Split, count: number): Promise<FrameEntry[]> {
  const all: FrameEntry[] = [];
  for await (const e of readIndex(collect, split)) all.push(e);
  if (all.length <= count) return all;
  return Array.from({ length: count }, (_, i) => all[Math.floor(((i + 0.5) * all.length) / count)]!);
}

function siteFramesOf(site: string, entries: readonly FrameEntry[]): SiteFrames {
  return { site, count: entries.length, sha256: sha256Hex(entries.map((e) => e.pixelsSha256).join('\n')) };
}

/** the annotated set's frames as the student takes them */
async function annotatedFrames(
  set: AnnotatedSet,
  student: LoadedModel,
  signal?: AbortSignal,
): Promise<AnnotatedFrames> {
  const images = await readVideoImages(
    set.video,
    set.frames.map((f) => f.index),
    set,
    signal,
  );
  const frames: ModelFrame[] = [];
  for (const f of set.frames) {
    frames.push(await modelFrameOf(images.get(f.index)!, student.descriptor.input));
    images.delete(f.index);
  }
  return { set, frames };
}

export async function runLoop(options: LoopOptions): Promise<LoopResult> {
  const { site, workDir, source, signingKey, signal, onProgress, ...given } = options;
  const settings = loopSettings(given, 'loop options');
  if (!SITE.test(site)) {
    throw new ArgusError(
      `site label ${JSON.stringify(site)} is not a label`,
      'letters, digits, . _ : - (at most 100)',
    );
  }
  const teacherSettings: TeacherConfig = teacherConfig({
    ...(given.threads !== undefined ? { intraOpThreads: settings.threads } : {}),
    ...settings.teacher,
  });
  await mkdir(workDir, { recursive: true });
  await sweepStaging(workDir);
  const previous = await readLoopState(workDir);
  if (previous && previous.site !== site) {
    throw new ArgusError(
      `work directory ${workDir} holds a run of site ${previous.site}`,
      'use a directory per site and run',
    );
  }
  const state: LoopState = previous ?? {
    schemaVersion: 1,
    site,
    startedAt: new Date().toISOString(),
    step: 'collect',
    results: {},
    wallMs: {},
  };
  if (!previous) await writeLoopState(workDir, state);
  const progress = (step: LoopStep, fraction: number, message: string) =>
    onProgress?.(step, Math.max(0, Math.min(1, fraction)), message);
  const { threads } = settings;
  const failures: string[] = [];

  const baselineDir = join(dirOf(workDir, 'collect'), 'baseline');
  const baseline = async () => loadModel(settings.baseline ?? baselineDir);
  const student = async () => (settings.student ? loadModel(settings.student) : baseline());
  const collected = () => state.results.collect as unknown as CollectSummary;

  const steps: Record<LoopStep, () => Promise<Record<string, unknown>>> = {
    collect: async () => {
      let summary: CollectSummary | undefined;
      await buildDirAtomic(dirOf(workDir, 'collect'), async (dir) => {
        if (!settings.baseline) {
          await ensureModelInstalled('nanodet', signal);
          const pruned = await pruneClasses(await loadModel('nanodet'), {
            keep: teacherSettings.labels,
            name: 'nanodet-site',
          });
          await writeDerivedModel(join(dir, 'baseline'), pruned);
        }
        const input = settings.baseline
          ? (await loadModel(settings.baseline)).descriptor.input
          : (await loadModel(join(dir, 'baseline'))).descriptor.input;
        summary = await collectFrames(source, dir, site, input, {
          heldOutShare: settings.heldOutShare,
          maxFrames: settings.maxFrames,
          ...(settings.heldOutFrom ? { heldOutFrom: settings.heldOutFrom } : {}),
          ...(signal ? { signal } : {}),
          onFrame: (n) => {
            if (n % 10 === 0) progress('collect', 0, `${n} frames`);
          },
        });
      });
      progress('collect', 1, `${summary!.train} frames to train on, ${summary!.heldOut} held out`);
      return { ...summary! };
    },

    teacher: async () => {
      const teacher = await Teacher.load(teacherSettings, log);
      const collect = dirOf(workDir, 'collect');
      const perClass: Record<string, number> = {};
      let frames = 0;
      const started = performance.now();
      try {
        await buildDirAtomic(dirOf(workDir, 'teacher'), async (dir) => {
          const lines: string[] = [];
          for await (const entry of readIndex(collect)) {
            if (signal?.aborted) throw signal.reason;
            const labels: Detection[] = await teacher.label(
              await decodeImage(await readJpeg(collect, entry)),
            );
            for (const l of labels) perClass[l.label] = (perClass[l.label] ?? 0) + 1;
            lines.push(JSON.stringify({ n: entry.n, labels } satisfies LabelLine));
            if (lines.length >= 64)
              await writeFile(join(dir, LABELS_FILE), `${lines.splice(0).join('\n')}\n`, { flag: 'a' });
            frames++;
            progress(
              'teacher',
              frames / collected().frames,
              `${frames} of ${collected().frames} frames labelled`,
            );
          }
          await writeFile(join(dir, LABELS_FILE), lines.length ? `${lines.join('\n')}\n` : '', { flag: 'a' });
          await writeFile(join(dir, 'teacher.json'), `${JSON.stringify(teacherSettings, null, 2)}\n`);
        });
      } finally {
        await teacher.close();
      }
      return {
        frames,
        labels: perClass,
        msPerFrame: (performance.now() - started) / Math.max(1, frames),
        configSha256: sha256Hex(JSON.stringify(teacherSettings)),
        providers: teacher.providers,
      };
    },

    adapt: async () => {
      const result = await adaptStudent({
        student: await student(),
        frames: labelledFrames(workDir, 'train'),
        teacher: { name: 'argus-teacher', sha256: sha256Hex(JSON.stringify(teacherSettings)) },
        workDir: dirOf(workDir, 'adapt'),
        options: {
          threads: Math.min(64, threads || availableParallelism()),
          ...settings.adapt,
        },
        name: `${(await student()).descriptor.name}-${site.replace(/[^a-z0-9._-]/gi, '-').toLowerCase()}`,
        ...(signal ? { signal } : {}),
        onProgress: (p) =>
          progress(
            'adapt',
            p.step === 'train' && p.total ? p.done / p.total : 0,
            p.step === 'train'
              ? `epoch ${p.done}/${p.total}: loss ${p.loss?.total.toFixed(4)}`
              : `${p.done} frames cached`,
          ),
      });
      await writeFileAtomic(
        join(dirOf(workDir, 'adapt'), 'trained-frames.json'),
        `${JSON.stringify(result.trainedFrames)}\n`,
      );
      return {
        modelDir: result.modelDir,
        losses: result.losses,
        labels: result.labels,
        positives: result.positives,
        cells: result.cells,
        featureMs: result.featureMs,
        trainMs: result.trainMs,
      };
    },

    quantize: async () => {
      const adapted = await loadModel(state.results.adapt!.modelDir as string);
      const collect = dirOf(workDir, 'collect');
      const entries = await spreadEntries(collect, 'train', settings.calibrationFrames);
      const frames: Uint8Array[] = [];
      for (const e of entries) frames.push((await readModelFrame(collect, e)).pixels);
      progress('quantize', 0.1, `calibrating on ${frames.length} frames of the site`);
      const quantized = await quantizeModel(adapted, {
        config: quantizeConfig(),
        siteFrames: { frames, set: siteFramesOf(site, entries) },
        name: `${adapted.descriptor.name}-int8`,
        ...(signal ? { signal } : {}),
      });
      await writeDerivedModel(dirOf(workDir, 'quantize'), quantized);
      return {
        modelDir: dirOf(workDir, 'quantize'),
        calibrationFrames: frames.length,
        bytes: quantized.bytes.length,
      };
    },

    gate: async () => {
      const base = await baseline();
      const candidate = await loadModel(state.results.quantize!.modelDir as string);
      const trainedFrames = JSON.parse(
        await readFile(join(dirOf(workDir, 'adapt'), 'trained-frames.json'), 'utf8'),
      ) as string[];
      progress('gate', 0.1, 'decoding the annotated frames');
      const verdict = await gateAdapted({
        baseline: base,
        candidate,
        heldOut: labelledFrames(workDir, 'held-out'),
        annotated: await annotatedFrames(settings.annotated, base, signal),
        trainedFrames,
        gate: settings.gate,
        threads,
        ...(signal ? { signal } : {}),
      });
      await mkdir(dirOf(workDir, 'gate'), { recursive: true });
      await writeFileAtomic(
        join(dirOf(workDir, 'gate'), 'verdict.json'),
        `${JSON.stringify(verdict, null, 2)}\n`,
      );
      return { ...verdict };
    },

    sign: async () => {
      const verdict = state.results.gate!;
      if (!verdict.passed) return { skipped: 'the gate refused the candidate' };
      const candidate = await loadModel(state.results.quantize!.modelDir as string);
      const adapted = await loadModel(state.results.adapt!.modelDir as string);
      const collect = dirOf(workDir, 'collect');
      const held = await spreadEntries(collect, 'held-out', 64);
      const modelFrames: ModelFrame[] = [];
      for (const e of held) modelFrames.push(await readModelFrame(collect, e));
      progress('sign', 0.1, `evaluating the int8 candidate on ${held.length} held-out frames`);
      const agreement = await measureAgreement(adapted, candidate, {
        frames: siteFramesOf(site, held),
        modelFrames,
        threads: Math.max(1, threads),
        candidateScoreThreshold: 0.05,
        minTruths: 5,
        ...(signal ? { signal } : {}),
      });
      // one thread: the ratio of the two models' cost, which a busy neighbour on a 2-core host
      // cannot skew as it does two sessions' spinning worker threads (0.80 against 0.39 idle)
      const report = await reportLatency(agreement, {
        threads: 1,
        latencyRuns: 40,
        ...(signal ? { signal } : {}),
      });
      const quantizationGate = checkGate(report, settings.quantizationGate ?? DEFAULT_GATE);
      if (!quantizationGate.passed) {
        return {
          refused: quantizationGate.failures.map((f) => `the int8 candidate against its float model: ${f}`),
          map50VsFloat: report.map50,
          latencyRatio: report.latency.ratio,
        };
      }
      const dir = dirOf(workDir, 'sign');
      const lineage = await readLineage(candidate.dir);
      const step: LoopLineageStep = {
        kind: 'loop',
        at: new Date().toISOString(),
        site,
        teacher: {
          configSha256: state.results.teacher!.configSha256 as string,
          members: teacherSettings.members.map((m) => m.model),
        },
        trainFrames: collected().trainFrames,
        heldOutFrames: collected().heldOutFrames,
        gate: verdict.metrics as LoopLineageStep['gate'],
        wallMs: { ...state.wallMs },
      };
      const name = settings.bundleName ?? candidate.descriptor.name;
      const version = settings.bundleVersion;
      let bundlePath = '';
      await buildDirAtomic(dir, async (staged) => {
        await writeDerivedModel(join(staged, 'model'), {
          bytes: candidate.bytes,
          descriptor: candidate.descriptor,
          lineage: { ...lineage, steps: [...lineage.steps, step] },
        });
        await writeEvaluationReport(join(staged, 'evaluation.json'), report);
        await buildBundle({
          modelDir: join(staged, 'model'),
          out: join(staged, `${name}-v${version}.bundle`),
          version,
          name,
          evaluations: [report],
          gate: settings.quantizationGate ?? DEFAULT_GATE,
          expiresInDays: settings.expiresInDays,
          ...(signingKey ? { signWith: signingKey } : {}),
        });
        bundlePath = join(dir, `${name}-v${version}.bundle`);
      });
      return {
        bundlePath,
        signed: signingKey !== undefined,
        map50VsFloat: report.map50,
        latencyRatio: report.latency.ratio,
      };
    },
  };

  for (const step of LOOP_STEPS.slice(LOOP_STEPS.indexOf(state.step === 'done' ? 'sign' : state.step))) {
    if (state.step === 'done') break;
    if (signal?.aborted) throw signal.reason;
    progress(step, 0, 'started');
    const started = performance.now();
    const result = await steps[step]();
    state.results[step] = result;
    state.wallMs[step] = performance.now() - started;
    const next = LOOP_STEPS[LOOP_STEPS.indexOf(step) + 1];
    state.step = next ?? 'done';
    await writeLoopState(workDir, state);
    progress(step, 1, 'done');
    if (step === 'gate' && !result.passed) failures.push(...(result.failures as string[]));
  }
  const gate = state.results.gate;
  if (gate && !gate.passed && failures.length === 0) failures.push(...(gate.failures as string[]));
  failures.push(...((state.results.sign?.refused as string[] | undefined) ?? []));
  const bundlePath = state.results.sign?.bundlePath as string | undefined;
  const passed = gate?.passed === true && bundlePath !== undefined && (await exists(bundlePath));
  return {
    ...(bundlePath ? { bundlePath } : {}),
    passed,
    report: { site, workDir, steps: state.results, wallMs: state.wallMs, failures },
  };
}
