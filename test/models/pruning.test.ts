import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import ort from 'onnxruntime-node';
import { sha256Hex } from '../../common/hash.ts';
import { type Detection, Detector } from '../../inference/detector.ts';
import { type LoadedModel, loadModel } from '../../inference/model-dir.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { readLineage, writeDerivedModel } from '../../models/bundle/lineage.ts';
import { pruneClasses, TRAFFIC_LABELS } from '../../models/prune/prune.ts';
import { readModelFrames } from '../helpers/frames.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

const FRAMES = [300, 600];

async function detectAll(model: LoadedModel): Promise<Detection[][]> {
  const detector = await Detector.fromModel(model, { ...DEFAULT_DETECTOR_SETTINGS, intraOpThreads: 1 });
  try {
    return await detector.detect(await readModelFrames(FRAMES, detector));
  } finally {
    await detector.close();
  }
}

describe('class pruning of NanoDet-g to the traffic classes', () => {
  let dir: string;
  let full: LoadedModel;
  let pruned: LoadedModel;

  before(async () => {
    await ensureCatalogModels();
    dir = await mkdtemp(join(tmpdir(), 'argus-prune-'));
    full = await loadModel('nanodet');
    // what a writer killed outright leaves behind (a process id above Linux's pid_max: never alive)
    // is swept by the next write; what a running writer stages and the user's own files stay
    await mkdir(join(dir, '.4194305-0123456789ab.partial', 'leftover'), { recursive: true });
    await mkdir(join(dir, `.${process.pid}-0123456789ab.partial`), { recursive: true });
    await mkdir(join(dir, 'notes.partial'), { recursive: true });
    await writeDerivedModel(
      join(dir, 'nanodet-traffic'),
      await pruneClasses(full, { keep: [...TRAFFIC_LABELS].reverse(), name: 'nanodet-traffic' }),
    );
    pruned = await loadModel(join(dir, 'nanodet-traffic'));
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps the labels in the model’s class order, with a descriptor of its own and a lineage', async () => {
    const d = pruned.descriptor;
    assert.deepEqual(d.labels, [...TRAFFIC_LABELS]);
    assert.equal(d.name, 'nanodet-traffic');
    assert.equal(d.sha256, sha256Hex(pruned.bytes));
    assert.deepEqual(d.input, full.descriptor.input);
    const lineage = await readLineage(pruned.dir);
    assert.equal(lineage.derivedFrom?.sha256, full.descriptor.sha256);
    assert.deepEqual(lineage.steps[0], { ...lineage.steps[0], kind: 'prune', removedClasses: 74 });
  });

  it('sweeps staging leftovers from the directory it writes into', async () => {
    assert.deepEqual((await readdir(dir)).sort(), [
      `.${process.pid}-0123456789ab.partial`,
      'nanodet-traffic',
      'notes.partial',
    ]);
  });

  it('has one score channel per kept label in every head', async () => {
    const d = pruned.descriptor;
    assert.equal(d.decoder.kind, 'gfl');
    if (d.decoder.kind !== 'gfl') return;
    const session = await ort.InferenceSession.create(pruned.bytes);
    try {
      const { height, width, name } = d.input;
      const frame = new ort.Tensor('uint8', new Uint8Array(height * width * 3), [1, height, width, 3]);
      const out = await session.run({ [name]: frame }, d.decoder.scoreOutputs);
      for (const o of d.decoder.scoreOutputs) assert.equal(out[o]!.dims.at(-1), TRAFFIC_LABELS.length, o);
    } finally {
      await session.release();
    }
  });

  it('finds what the full model finds of the kept classes, and nothing else', async () => {
    const [fromFull, fromPruned] = await Promise.all([detectAll(full), detectAll(pruned)]);
    const kept = new Set<string>(TRAFFIC_LABELS);
    for (const [i, frame] of FRAMES.entries()) {
      const expected = fromFull[i]!.filter((d) => kept.has(d.label));
      const found = fromPruned[i]!;
      assert.ok(expected.filter((d) => d.label === 'person').length >= 5, `frame ${frame} has persons`);
      assert.deepEqual(
        found.map((d) => d.label),
        expected.map((d) => d.label),
        `frame ${frame}`,
      );
      for (const [j, d] of found.entries()) {
        const e = expected[j]!;
        assert.equal(d.classId, TRAFFIC_LABELS.indexOf(d.label as (typeof TRAFFIC_LABELS)[number]));
        assert.ok(Math.abs(d.score - e.score) < 1e-4, `frame ${frame} ${d.label}: score`);
        const shift = Math.max(...d.box.map((v, k) => Math.abs(v - e.box[k]!)));
        assert.ok(shift < 0.01, `frame ${frame} ${d.label}: box moved by ${shift}`);
      }
    }
  });

  it('refuses a class the model does not have, listing the ones it has', async () => {
    await assert.rejects(pruneClasses(full, { keep: ['person', 'tram'] }), (err: Error) => {
      assert.match(err.message, /has no class "tram"/);
      assert.match((err as { hint?: string }).hint ?? '', /person, bicycle, car/);
      return true;
    });
  });
});
