import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import type { EventMessage } from '../../contract/payloads.ts';
import { iou } from '../../inference/nms.ts';
import { parseScene } from '../../pipelines/scene/load.ts';
import { groundTruthPersons } from '../helpers/ground-truth.ts';
import { ensureCatalogModels } from '../helpers/models.ts';

/**
 * The campus scene (scenes/vtest-campus.yaml) replayed over vtest.avi through the real CLI:
 * GStreamer decode, NanoDet on onnxruntime, tracker, rules. Expectations come from looking at the
 * footage (crops around the counting line every 5 frames; the hand-annotated person boxes of
 * frames 0/300/600), not from an earlier run.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const SCENE = resolve(ROOT, 'scenes/vtest-campus.yaml');

let events: (EventMessage & { snapshotFile?: string })[] = [];
let snapshotDir = '';

/** seconds since the start of the recording */
const seconds = (at: string) => (Date.parse(at) - Date.parse('1970-01-01T00:00:00Z')) / 1000;

function crossings(from: number, to: number) {
  const inWindow = events.filter(
    (e) => e.rule === 'road-crossing' && e.phase === 'new' && seconds(e.at) >= from && seconds(e.at) < to,
  );
  return {
    in: inWindow.filter((e) => e.direction === 'in').length,
    out: inWindow.filter((e) => e.direction === 'out').length,
  };
}

/** the left-road occupancy in force shortly after `t` (the tracker confirms a person within 0.5 s) */
function occupancyAt(t: number): number {
  const zone = events.filter((e) => e.rule === 'left-road' && seconds(e.at) <= t + 0.5);
  const last = zone.at(-1);
  assert.ok(last, `no left-road event by ${t} s`);
  return Number(last.after.occupancy);
}

describe('campus scene on vtest.avi', () => {
  before(async () => {
    await ensureCatalogModels();
    snapshotDir = await mkdtemp(join(tmpdir(), 'argus-replay-snapshots-'));
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        resolve(ROOT, 'bin/argus.mjs'),
        'replay',
        SAMPLE_VIDEO,
        '--scene',
        SCENE,
        '--json',
        '--snapshots',
        snapshotDir,
      ],
      { maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ARGUS_LOG_LEVEL: 'warn' } },
    );
    const lines = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const summary = lines.pop();
    assert.ok(summary.summary, 'the replay ends with a summary line');
    events = lines as typeof events;
  });
  after(async () => {
    if (snapshotDir) await rm(snapshotDir, { recursive: true, force: true });
  });

  it('writes one snapshot file per event message with a snapshot, named by its whole id', async () => {
    const referenced = events.filter((e) => e.snapshotFile).map((e) => e.snapshotFile!);
    assert.ok(referenced.length > 20, `${referenced.length} snapshots`);
    assert.equal(new Set(referenced).size, referenced.length, 'no two events share a snapshot file');
    assert.deepEqual(
      (await readdir(snapshotDir)).sort(),
      referenced.map((f) => basename(f)).sort(),
      'every file belongs to one event, and every event names one of them',
    );
    for (const e of events.filter((ev) => ev.snapshotFile)) {
      assert.equal(basename(e.snapshotFile!), `${e.rule}-${e.id}-${e.seq}.jpg`);
      const jpeg = await readFile(e.snapshotFile!);
      assert.deepEqual([...jpeg.subarray(0, 2)], [0xff, 0xd8], `${e.snapshotFile} is a JPEG`);
    }
  });

  it('counts pedestrians crossing the road line, by direction', () => {
    // nobody reaches the line in the first 17 s, nor between 31 s and 52 s
    assert.deepEqual(crossings(0, 17.5), { in: 0, out: 0 });
    assert.deepEqual(crossings(31, 52.5), { in: 0, out: 0 });
    // a woman in light blue (~18.3 s) and a man in black (~20.6 s) walk across towards the left
    assert.deepEqual(crossings(17.5, 22), { in: 2, out: 0 });
    // a man in grey walks across to the left (~25.5 s), turns and comes back (~30 s)
    assert.deepEqual(crossings(24.5, 27), { in: 1, out: 0 });
    assert.deepEqual(crossings(29, 31), { in: 0, out: 1 });
    // the woman in red crosses to the left (~53.2 s), a man in black follows at ~60 s
    assert.deepEqual(crossings(52.5, 55), { in: 1, out: 0 });
    assert.deepEqual(crossings(59.5, 61.5), { in: 1, out: 0 });
    // every crossing is instantaneous: a new and an end message with the same id
    const news = events.filter((e) => e.rule === 'road-crossing' && e.phase === 'new');
    for (const n of news) {
      assert.ok(
        events.some((e) => e.id === n.id && e.phase === 'end'),
        `crossing ${n.id} has its end`,
      );
    }
  });

  it('raises parked-too-long for the white van in the parking bay', () => {
    const parked = events.filter((e) => e.rule === 'parked-too-long' && e.phase === 'new');
    const van = parked.find((e) => e.box && iou(e.box, [650, 42, 725, 98]) >= 0.5);
    assert.ok(van, `no parked-too-long event on the van; got ${JSON.stringify(parked.map((e) => e.box))}`);
    assert.ok(['car', 'truck', 'bus'].includes(van.label), `the van is a vehicle, not a ${van.label}`);
    // it stands there from the first frame; the rule fires after its 20 s
    const t = seconds(van.at);
    assert.ok(t >= 20 && t < 23, `fired at ${t} s`);
    assert.ok(
      !events.some((e) => e.rule === 'parked-too-long' && e.label === 'person'),
      'people are not parked',
    );
  });

  it('counts the people inside the left-road polygon as the hand annotation does', () => {
    const polygon: [number, number][] = [
      [0.0, 0.3],
      [0.45, 0.3],
      [0.45, 0.56],
      [0.0, 0.5],
    ];
    const inside = ([x, y]: [number, number]) => {
      let c = false;
      for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
        const [xi, yi] = polygon[i]!;
        const [xj, yj] = polygon[j]!;
        if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) c = !c;
      }
      return c;
    };
    for (const frame of [0, 300, 600]) {
      const expected = groundTruthPersons(frame).filter((b) =>
        inside([(b[0] + b[2]) / 2 / 768, b[3] / 576]),
      ).length;
      assert.equal(occupancyAt(frame / 10), expected, `occupancy at frame ${frame}`);
    }
  });
});

describe('scene files that are refused', () => {
  it('names the line of an unknown rule type', () => {
    const text =
      'name: s\nrules:\n  - id: a\n    type: zone\n    polygon: [[0,0],[1,0],[1,1]]\n  - id: b\n    type: teleport\n';
    assert.throws(
      () => parseScene(text, 'bad.yaml'),
      (err: Error) => /bad\.yaml:7/.test(err.message) && /teleport/.test(err.message),
    );
  });

  it('names the line of a self-intersecting polygon', () => {
    const text = 'name: s\nrules:\n  - id: bowtie\n    type: zone\n    polygon: [[0,0],[1,1],[1,0],[0,1]]\n';
    assert.throws(
      () => parseScene(text, 'bowtie.yaml'),
      (err: Error) => /bowtie\.yaml:5/.test(err.message) && /crosses itself/.test(err.message),
    );
  });
});
