import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Detection } from '../../inference/detector.ts';
import { type Box, boxHolds, centreOf } from '../../inference/rect.ts';
import type { TrackerSettings } from '../../pipelines/scene/schema.ts';
import { type Track, Tracker } from '../../pipelines/tracking/tracker.ts';

/** the tracker on its own, on a 768×576 frame at 5 frames/s */
const W = 768;
const H = 576;
const FRAME: Box = [0, 0, W, H];
const SETTINGS: TrackerSettings = {
  highScore: 0.5,
  lowScore: 0.25,
  matchIou: 0.25,
  maxAgeSeconds: 1.5,
  minHits: 2,
};

const person = (cx: number, feetY: number, score = 0.9, w = 30, h = 80): Detection => ({
  label: 'person',
  classId: 0,
  score,
  box: [cx - w / 2, feetY - h, cx + w / 2, feetY],
});

const sizeOf = (b: Box) => [b[2] - b[0], b[3] - b[1]];
const same = (a: readonly number[], b: readonly number[]) => a.every((v, i) => Math.abs(v - b[i]!) < 1e-6);

/** random frames: each a list of people (some at a low score) and, sometimes, the regions searched */
const frames = fc.array(
  fc.record({
    people: fc.array(
      fc.record({
        cx: fc.double({ min: 0, max: W, noNaN: true }),
        feet: fc.double({ min: 40, max: H, noNaN: true }),
        w: fc.double({ min: 8, max: 80, noNaN: true }),
        h: fc.double({ min: 20, max: 200, noNaN: true }),
        score: fc.double({ min: 0.1, max: 1, noNaN: true }),
      }),
      { maxLength: 12 },
    ),
    searched: fc.option(
      fc.array(
        fc.tuple(
          fc.integer({ min: 0, max: W }),
          fc.integer({ min: 0, max: H }),
          fc.integer({ min: 10, max: 400 }),
          fc.integer({ min: 10, max: 400 }),
        ),
        { maxLength: 4 },
      ),
      { nil: undefined },
    ),
  }),
  { minLength: 1, maxLength: 40 },
);

describe('tracker', () => {
  it('keeps its invariants on any sequence of frames: unique ids never reused, one detection per track, tracks as searched', () => {
    fc.assert(
      fc.property(frames, (seq) => {
        const tracker = new Tracker(SETTINGS, FRAME);
        const ended = new Set<number>();
        let previous: Track[] = [];
        seq.forEach((frame, i) => {
          const t = i / 5;
          const detections = frame.people.map((p) => person(p.cx, p.feet, p.score, p.w, p.h));
          const searched = frame.searched?.map(([x, y, w, h]) => [x, y, x + w, y + h] as Box);
          const tracks = tracker.update(detections, t, searched);
          const ids = tracks.map((tr) => tr.id);
          assert.equal(new Set(ids).size, ids.length, `ids unique at ${t} s: ${ids}`);
          for (const p of previous) if (!ids.includes(p.id)) ended.add(p.id);
          for (const tr of tracks) {
            // an id is one track's for its whole life: an ended one never comes back
            assert.ok(!ended.has(tr.id), `id ${tr.id} reused`);
            assert.ok(tr.confirmed && tr.hits >= SETTINGS.minHits, 'only confirmed tracks are reported');
            assert.ok(tr.box.every(Number.isFinite) && tr.box[2] > tr.box[0] && tr.box[3] > tr.box[1]);
          }
          // a track matched in this frame holds one of its detections (at least the low score),
          // and no detection is held by two tracks
          const matched = tracks.filter((tr) => tr.lastSeen === t);
          const used = new Set<number>();
          for (const tr of matched) {
            const j = detections.findIndex((d, k) => !used.has(k) && same(d.box, tr.detectionBox));
            assert.ok(j >= 0, `track ${tr.id} holds a detection of the frame`);
            assert.ok(detections[j]!.score >= SETTINGS.lowScore);
            used.add(j);
          }
          // a track whose frame area was not searched is held where it was, and kept
          const inside = (b: Box) => searched?.some((r) => boxHolds(r, ...centreOf(b))) ?? true;
          for (const p of previous) {
            if (inside(p.box) || !boxHolds(FRAME, ...centreOf(p.box))) continue;
            const now = tracks.find((tr) => tr.id === p.id);
            assert.ok(now, `track ${p.id}, not looked for, is kept`);
            if (now.lastSeen !== t) assert.ok(same(now.box, p.box), `track ${p.id}, not looked for, is held`);
          }
          previous = tracks;
        });
      }),
      { numRuns: 300 },
    );
  });

  it('coasts an unmatched track at its velocity and its size, and ends it once predicted out of the frame', () => {
    const tracker = new Tracker({ ...SETTINGS, maxAgeSeconds: 10 }, FRAME);
    // walking right at 100 px/s, growing as it nears the camera, then unseen
    let last: Track | undefined;
    for (let i = 0; i <= 10; i++) {
      const t = i / 5;
      [last] = tracker.update([person(400 + 20 * i, 300 + i, 0.9, 30 + i, 80 + i)], t);
    }
    assert.ok(last);
    const size = sizeOf(last.box);
    const x = centreOf(last.box)[0];
    const unseen = (t: number) => tracker.update([], t);
    const [coasting] = unseen(2.4);
    assert.ok(coasting && coasting.id === last.id);
    assert.ok(same(sizeOf(coasting.box), size), `size ${sizeOf(coasting.box)} kept, was ${size}`);
    const dx = centreOf(coasting.box)[0] - x;
    assert.ok(dx > 30 && dx < 50, `moved on by ${dx} px in 0.4 s at ~100 px/s`);
    // its centre passes the right edge (768) about 1.7 s later: the track ends there, not at maxAge
    const times = [2.8, 3.2, 3.6, 4, 4.4, 4.8];
    const alive = times.map((t) => unseen(t).length);
    assert.ok(alive.includes(0), `ended once out of the frame (${alive})`);
    assert.ok(alive[0] === 1, 'still in the frame at 2.8 s');
  });

  it('holds a track where nothing was searched and resumes it when the person moves again', () => {
    const tracker = new Tracker(SETTINGS, FRAME);
    // walks left, stops; while only regions elsewhere are searched, the track stands where it was
    let id = 0;
    for (let i = 0; i <= 5; i++) id = tracker.update([person(300 - 10 * i, 300)], i / 5)[0]?.id ?? id;
    const elsewhere: Box[] = [[600, 0, 768, 200]];
    const held = [1.2, 2, 3, 5].map((t) => tracker.update([], t, elsewhere)[0]!);
    for (const h of held) assert.deepEqual([h.id, ...centreOf(h.box)], [id, ...centreOf(held[0]!.box)]);
    const resumed = tracker.update([person(255, 300)], 5.2, [[200, 200, 320, 320]]);
    assert.deepEqual(
      resumed.map((tr) => tr.id),
      [id],
      'the same person, seen again where they stood',
    );
  });

  it('keeps two identities when people walk past each other, a low-score detection extending a track', () => {
    const tracker = new Tracker(SETTINGS, FRAME);
    // two people walking towards each other along the same row at 50 px/s, 60 px apart at most
    // once; the right one is seen at a low score while they pass
    const ids = new Set<number>();
    for (let i = 0; i <= 20; i++) {
      const t = i / 5;
      const a = person(200 + 10 * i, 300);
      const b = person(500 - 10 * i, 320, i >= 8 && i <= 12 ? 0.3 : 0.9);
      const tracks = tracker.update([a, b], t);
      for (const tr of tracks) ids.add(tr.id);
      if (i >= 1) assert.equal(tracks.length, 2, `both tracked at ${t} s`);
    }
    assert.equal(ids.size, 2, `two identities throughout: ${[...ids]}`);
  });
});
