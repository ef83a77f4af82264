import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import ort from 'onnxruntime-node';
import { sha256Hex } from '../../common/hash.ts';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import { type LoadedModel, loadModel } from '../../inference/model-dir.ts';
import type { Box } from '../../inference/rect.ts';
import { type AdaptResult, adaptStudent } from '../../models/adapt/adapt.ts';
import type { LabelledFrame } from '../../models/adapt/features.ts';
import { type AnnotatedFrames, gateAdapted } from '../../models/adapt/gate.ts';
import { readHead, writeHead } from '../../models/adapt/head.ts';
import { readLineage, writeDerivedModel } from '../../models/bundle/lineage.ts';
import { pruneClasses, TRAFFIC_LABELS } from '../../models/prune/prune.ts';
import { quantizeConfig } from '../../models/quant/config.ts';
import { type FrameRange, frameIndices } from '../../models/quant/frames.ts';
import { quantizeModel } from '../../models/quant/quantize.ts';
import { readVideoImages } from '../../models/teacher/annotated.ts';
import { teacherConfig } from '../../models/teacher/config.ts';
import { modelFrameOf } from '../../models/teacher/image.ts';
import { Teacher } from '../../models/teacher/teacher.ts';
import { vtestAnnotatedPersons } from '../helpers/annotated.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

/**
 * Adaptation of the class-pruned NanoDet student to vtest.avi on a teacher's labels, end to end on
 * real frames and onnxruntime: the student's head trained on a few frames of the first two thirds,
 * gated on frames of the last third held out and on the hand-annotated frames; poisoned labels
 * refused; the adapted model quantized on site frames. Few frames and epochs keep it fast.
 */

/** none of them hand-annotated (0, 300, 600 and every 5th of 150-300) */
const TRAIN: FrameRange = { video: SAMPLE_VIDEO, first: 7, last: 507, step: 35 };
const HELD_OUT: FrameRange = { video: SAMPLE_VIDEO, first: 545, last: 785, step: 30 };
const CALIBRATION = '12-512/50';
const OPTIONS = { epochs: 8 };

/** the site's frames `range` with the teacher's labels, and as the student takes them */
async function labelled(teacher: Teacher, student: LoadedModel, range: FrameRange): Promise<LabelledFrame[]> {
  const indices = frameIndices(range);
  const images = await readVideoImages(range.video, indices, { width: 768, height: 576 });
  const out: LabelledFrame[] = [];
  for (const index of indices) {
    const image = images.get(index)!;
    out.push({
      id: `vtest@${index}`,
      frame: await modelFrameOf(image, student.descriptor.input),
      labels: await teacher.label(image),
    });
  }
  return out;
}

/** every box moved right by its own width: off the person it was on */
function poisoned(frames: readonly LabelledFrame[]): LabelledFrame[] {
  return frames.map((f) => ({
    ...f,
    labels: f.labels.map((l) => {
      const w = l.box[2] - l.box[0];
      return { ...l, box: [l.box[0] + w, l.box[1], l.box[2] + w, l.box[3]] as Box };
    }),
  }));
}

describe('adaptation of the student to a site', () => {
  let dir: string;
  let student: LoadedModel;
  let train: LabelledFrame[];
  let heldOut: LabelledFrame[];
  let annotated: AnnotatedFrames;
  let adapted: AdaptResult;

  before(async () => {
    await ensureCatalogModels();
    dir = await mkdtemp(join(tmpdir(), 'argus-adapt-'));
    const full = await loadModel('nanodet');
    await writeDerivedModel(
      join(dir, 'student'),
      await pruneClasses(full, { keep: [...TRAFFIC_LABELS], name: 'nanodet-traffic' }),
    );
    student = await loadModel(join(dir, 'student'));
    const teacher = await Teacher.load(teacherConfig({ intraOpThreads: 2 }));
    try {
      train = await labelled(teacher, student, TRAIN);
      heldOut = await labelled(teacher, student, HELD_OUT);
    } finally {
      await teacher.close();
    }
    const set = await vtestAnnotatedPersons();
    const images = await readVideoImages(
      set.video,
      set.frames.map((f) => f.index),
      set,
    );
    annotated = {
      set,
      frames: await Promise.all(
        set.frames.map((f) => modelFrameOf(images.get(f.index)!, student.descriptor.input)),
      ),
    };
    adapted = await adaptStudent({
      student,
      frames: train,
      teacher: { name: 'teacher' },
      workDir: join(dir, 'work'),
      options: OPTIONS,
    });
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('trains the head on the teacher’s labels and records it in the lineage', async () => {
    const { losses } = adapted;
    assert.equal(losses.length, OPTIONS.epochs);
    for (const l of losses) for (const v of Object.values(l)) assert.ok(Number.isFinite(v));
    assert.ok(losses.at(-1)!.total < losses[0]!.total, `loss ${losses[0]!.total} → ${losses.at(-1)!.total}`);
    const lineage = await readLineage(adapted.modelDir);
    assert.equal(lineage.derivedFrom?.name, 'nanodet');
    assert.deepEqual(
      lineage.steps.map((s) => s.kind),
      ['prune', 'adapt'],
    );
    const step = lineage.steps[1]!;
    assert.ok(step.kind === 'adapt');
    assert.equal(step.frames, train.length);
    assert.equal(step.teacher.name, 'teacher');
    assert.equal(step.losses.length, OPTIONS.epochs);
    assert.ok(
      step.positives > step.labels && step.labels > 20,
      `${step.labels} labels, ${step.positives} cells`,
    );
    assert.equal(adapted.model.descriptor.name, 'nanodet-traffic-adapted');
    assert.deepEqual(adapted.model.descriptor.labels, student.descriptor.labels);
  });

  it('changes only the head’s last layer', () => {
    const before = readHead(student.bytes, student.descriptor);
    const after = readHead(adapted.model.bytes, adapted.model.descriptor);
    const moved = after.params.weights.map((w, l) => w.some((v, i) => v !== before.params.weights[l]![i]));
    assert.deepEqual(moved, [true, true, true]);
    // the rest of the network computes the same features: the same weights written back give the student's outputs
    const same = writeHead(adapted.model.bytes, adapted.model.descriptor, before.params);
    assert.deepEqual(readHead(same, student.descriptor).params, before.params);
  });

  it('is deterministic: the same frames and options give the same weights, from the cache', async () => {
    const again = await adaptStudent({
      student,
      frames: train,
      teacher: { name: 'teacher' },
      workDir: join(dir, 'work'),
      options: OPTIONS,
    });
    assert.equal(again.model.descriptor.sha256, adapted.model.descriptor.sha256);
  });

  it('agrees better with the teacher on held-out frames and no worse on the hand-annotated ones: the gate passes', async () => {
    const verdict = await gateAdapted({
      baseline: student,
      candidate: adapted.model,
      heldOut,
      annotated,
      trainedFrames: adapted.trainedFrames,
    });
    const m = verdict.metrics;
    process.stderr.write(`adapted: ${JSON.stringify(m)}\n`);
    assert.deepEqual(verdict.failures, []);
    assert.ok(verdict.passed);
    assert.ok(
      m.agreementAfter > m.agreementBefore + 0.02,
      `agreement ${m.agreementBefore} → ${m.agreementAfter}`,
    );
    assert.ok(
      m.annotatedAfter >= m.annotatedBefore - 0.01,
      `annotated ${m.annotatedBefore} → ${m.annotatedAfter}`,
    );
    assert.equal(m.heldOutFrames, heldOut.length);
  });

  it('refuses a candidate trained on labels shifted off the people, saying why', async () => {
    const bad = await adaptStudent({
      student,
      frames: poisoned(train),
      teacher: { name: 'poisoned' },
      workDir: join(dir, 'poisoned'),
      options: OPTIONS,
    });
    const verdict = await gateAdapted({
      baseline: student,
      candidate: bad.model,
      heldOut,
      annotated,
      trainedFrames: bad.trainedFrames,
    });
    process.stderr.write(`poisoned: ${JSON.stringify(verdict.metrics)}\n`);
    assert.equal(verdict.passed, false);
    assert.ok(verdict.metrics.agreementAfter < verdict.metrics.agreementBefore);
    assert.match(
      verdict.failures.join('\n'),
      /agreement with the teacher on \d+ held-out frames went from .* (short of|closing)/,
    );
    assert.match(verdict.failures.join('\n'), /AP@0\.5 of "person" on 33 hand-annotated frames fell from/);
  });

  it('refuses to gate on frames the candidate was trained on', async () => {
    await assert.rejects(
      gateAdapted({
        baseline: student,
        candidate: adapted.model,
        heldOut: train.slice(0, 2),
        annotated,
        trainedFrames: adapted.trainedFrames,
      }),
      /held-out frame vtest@7 is one the candidate was trained on/,
    );
  });

  it('quantizes to int8 calibrated on site frames, and the int8 candidate still passes', async () => {
    const int8 = await quantizeModel(adapted.model, {
      config: quantizeConfig({ calibrationFrames: CALIBRATION }),
      video: SAMPLE_VIDEO,
    });
    await writeDerivedModel(join(dir, 'adapted-int8'), int8);
    const model = await loadModel(join(dir, 'adapted-int8'));
    assert.deepEqual(
      (await readLineage(model.dir)).steps.map((s) => s.kind),
      ['prune', 'adapt', 'quantize'],
    );
    const verdict = await gateAdapted({
      baseline: student,
      candidate: model,
      heldOut,
      annotated,
      trainedFrames: adapted.trainedFrames,
    });
    process.stderr.write(`int8: ${JSON.stringify(verdict.metrics)}\n`);
    assert.deepEqual(verdict.failures, []);
  });

  it('writes weights back exactly: any float32 head round-trips through the ONNX graph', async () => {
    const { shape } = readHead(student.bytes, student.descriptor);
    const float = fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 });
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 2 }),
        fc.integer({ min: 0, max: 1 << 30 }),
        float,
        async (level, seed, v) => {
          const params = readHead(student.bytes, student.descriptor).params;
          const w = params.weights[level]!;
          for (let i = 0; i < 64; i++) w[(seed + i * 7919) % w.length] = Math.fround(v * (i + 1));
          params.biases[level]![seed % shape.cout] = v;
          const bytes = writeHead(student.bytes, student.descriptor, params);
          assert.deepEqual(readHead(bytes, student.descriptor).params, params);
          const session = await ort.InferenceSession.create(bytes);
          await session.release();
        },
      ),
      { numRuns: 4 },
    );
    assert.equal(sha256Hex(student.bytes), student.descriptor.sha256);
  });
});
