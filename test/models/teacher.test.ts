import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Detection, Detector } from '../../inference/detector.ts';
import { loadModel } from '../../inference/model-dir.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { writeDerivedModel } from '../../models/bundle/lineage.ts';
import { pruneClasses, TRAFFIC_LABELS } from '../../models/prune/prune.ts';
import { type AnnotatedSet, readVideoImages, scoreOnAnnotated } from '../../models/teacher/annotated.ts';
import { teacherConfig } from '../../models/teacher/config.ts';
import { modelFrameOf, type RgbImage } from '../../models/teacher/image.ts';
import { Teacher } from '../../models/teacher/teacher.ts';
import { vtestAnnotatedPersons } from '../helpers/annotated.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

/**
 * The teacher is measured before it may teach: on every hand-annotated person of vtest.avi (frames
 * 0, 300, 600 and every 5th of 150-300), at both models' operating thresholds, it must find more
 * of them than the student the boxes run (NanoDet-g pruned to the street classes, 416×416) and be
 * at least as precise.
 */
describe('the teacher against the student on the hand-annotated frames of vtest.avi', () => {
  let dir: string;
  let set: AnnotatedSet;
  let images: Map<number, RgbImage>;
  let teacher: Teacher;
  let taught: Detection[][];

  before(async () => {
    await ensureCatalogModels();
    dir = await mkdtemp(join(tmpdir(), 'argus-teacher-'));
    set = await vtestAnnotatedPersons();
    images = await readVideoImages(
      set.video,
      set.frames.map((f) => f.index),
      set,
    );
    teacher = await Teacher.load(teacherConfig({ intraOpThreads: 2 }));
    taught = [];
    for (const f of set.frames) taught.push(await teacher.label(images.get(f.index)!));
  });

  after(async () => {
    await teacher?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('finds more annotated persons than the student, at equal or better precision', async () => {
    await writeDerivedModel(
      join(dir, 'student'),
      await pruneClasses(await loadModel('nanodet'), { keep: TRAFFIC_LABELS, name: 'nanodet-traffic' }),
    );
    const studentModel = await loadModel(join(dir, 'student'));
    const student = await Detector.fromModel(studentModel, {
      ...DEFAULT_DETECTOR_SETTINGS,
      maxBatch: 1,
      intraOpThreads: 2,
    });
    const found: Detection[][] = [];
    try {
      for (const f of set.frames)
        found.push(
          (
            (await student.detect([await modelFrameOf(images.get(f.index)!, student.descriptor.input)])) as [
              Detection[],
            ]
          )[0],
        );
    } finally {
      await student.close();
    }
    const s = scoreOnAnnotated(set, found, studentModel.descriptor.thresholds.score);
    const t = scoreOnAnnotated(set, taught, teacher.config.scoreThreshold);
    const line = (x: typeof s) =>
      `recall ${x.recall.toFixed(3)} (${x.truePositives}/${x.truths}), precision ${x.precision.toFixed(3)} (${x.found} found)`;
    assert.ok(t.truths > 150, `${t.truths} annotated persons`);
    assert.ok(t.recall > s.recall && t.precision >= s.precision, `teacher ${line(t)}; student ${line(s)}`);
  });

  it('labels in source pixels with Detections of its classes, classId in its label order', () => {
    let persons = 0;
    for (const labels of taught) {
      for (const d of labels) {
        assert.equal(d.label, teacher.labels[d.classId]);
        assert.ok(d.score >= teacher.config.scoreThreshold && d.score <= 1);
        const [x1, y1, x2, y2] = d.box;
        assert.ok(
          x1 >= 0 && y1 >= 0 && x2 <= set.width && y2 <= set.height && x2 > x1 && y2 > y1,
          `box ${d.box}`,
        );
        if (d.label === 'person') persons++;
      }
    }
    assert.ok(persons > 150, `${persons} persons labelled`);
  });

  it('refuses a member input size its model cannot take, naming what it can', async () => {
    await assert.rejects(
      Teacher.load(teacherConfig({ members: [{ model: 'nanodet', input: { width: 700, height: 576 } }] })),
      /input 700×576 is not possible for model nanodet.*multiples of 32/,
    );
    await assert.rejects(
      Teacher.load(teacherConfig({ members: [{ model: 'centernet', input: { width: 640, height: 640 } }] })),
      /takes 512×512 only/,
    );
  });
});
