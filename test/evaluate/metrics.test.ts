import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Box } from '../../inference/rect.ts';
import {
  type IdentifiedBox,
  matchTimes,
  meanAbsoluteError,
  scoreCrossings,
  scoreIdentities,
} from '../../pipelines/evaluate/metrics.ts';

const box = (x: number, y = 0, w = 40, h = 100): Box => [x, y, x + w, y + h];
const frames = (rows: [number, IdentifiedBox[]][]) => new Map(rows);

describe('crossing scores', () => {
  it('matches one to one within the tolerance, direction by direction', () => {
    const truth = [
      { t: 1, direction: 'in' as const },
      { t: 5, direction: 'in' as const },
      { t: 9, direction: 'out' as const },
    ];
    // 1.8 is 0.8 s from 1; 5.2 and 5.4 both near 5 (one of them extra); 9 found as "in" does not match the "out"
    const found = [
      { t: 1.8, direction: 'in' as const },
      { t: 5.2, direction: 'in' as const },
      { t: 5.4, direction: 'in' as const },
      { t: 9, direction: 'in' as const },
    ];
    const s = scoreCrossings(truth, found, 1);
    assert.deepEqual(
      { matched: s.matched, recall: s.recall, precision: s.precision, countError: s.countError },
      { matched: 2, recall: 2 / 3, precision: 2 / 4, countError: 1 / 3 },
    );
  });

  it('finds the most matches, not the nearest first (greedy would match 1.0–1.9 and lose 2.6)', () => {
    assert.equal(matchTimes([1, 2], [1.9, 2.6], 1), 2);
    assert.equal(matchTimes([1], [2.0001], 1), 0);
    assert.equal(matchTimes([1], [2], 1), 1);
  });

  it('property: a found list equal to the truth scores 1, and recall never exceeds 1', () => {
    const times = fc.array(
      fc.integer({ min: 0, max: 8000 }).map((v) => v / 10),
      { maxLength: 40 },
    );
    fc.assert(
      fc.property(times, times, (a, b) => {
        const t = a.map((x) => ({ t: x, direction: 'in' as const }));
        const f = b.map((x) => ({ t: x, direction: 'in' as const }));
        const same = scoreCrossings(t, t, 1);
        assert.equal(same.recall, 1);
        assert.equal(same.precision, 1);
        const s = scoreCrossings(t, f, 1);
        assert.ok(s.matched <= Math.min(a.length, b.length));
        assert.ok(s.recall <= 1 && s.precision <= 1);
        // symmetric: swapping truth and found swaps recall and precision
        const r = scoreCrossings(f, t, 1);
        assert.equal(r.matched, s.matched);
      }),
    );
  });
});

describe('occupancy error', () => {
  it('is the mean absolute difference', () => {
    assert.equal(
      meanAbsoluteError([
        { truth: 2, found: 3 },
        { truth: 0, found: 0 },
        { truth: 4, found: 1 },
      ]),
      4 / 3,
    );
  });
});

describe('identity scores (IDF1, ID switches)', () => {
  it('two people, tracked perfectly: IDF1 1, no switch', () => {
    const truth = frames([
      [
        0,
        [
          { id: 1, box: box(0) },
          { id: 2, box: box(200) },
        ],
      ],
      [
        1,
        [
          { id: 1, box: box(10) },
          { id: 2, box: box(190) },
        ],
      ],
    ]);
    const found = frames([
      [
        0,
        [
          { id: 7, box: box(0) },
          { id: 9, box: box(200) },
        ],
      ],
      [
        1,
        [
          { id: 7, box: box(10) },
          { id: 9, box: box(190) },
        ],
      ],
    ]);
    const s = scoreIdentities(truth, found);
    assert.equal(s.idf1, 1);
    assert.equal(s.idSwitches, 0);
  });

  it('textbook swap: ids exchanged halfway over 4 frames → IDTP 4 of 8, IDF1 0.5, 2 switches', () => {
    const rows: [number, IdentifiedBox[]][] = [];
    const found: [number, IdentifiedBox[]][] = [];
    for (let f = 0; f < 4; f++) {
      rows.push([
        f,
        [
          { id: 1, box: box(0, f * 300) },
          { id: 2, box: box(500, f * 300) },
        ],
      ]);
      const swap = f >= 2;
      found.push([
        f,
        [
          { id: swap ? 20 : 10, box: box(0, f * 300) },
          { id: swap ? 10 : 20, box: box(500, f * 300) },
        ],
      ]);
    }
    const s = scoreIdentities(frames(rows), frames(found));
    assert.equal(s.idtp, 4);
    assert.equal(s.idf1, 0.5);
    assert.equal(s.idSwitches, 2);
  });

  it('a track that breaks into two ids: one switch; IDF1 counts the longer piece', () => {
    const truth = frames([0, 1, 2, 3, 4].map((f) => [f, [{ id: 1, box: box(f * 10) }]]));
    const found = frames([0, 1, 2, 3, 4].map((f) => [f, [{ id: f < 3 ? 5 : 6, box: box(f * 10) }]]));
    const s = scoreIdentities(truth, found);
    assert.equal(s.idSwitches, 1);
    assert.equal(s.idtp, 3);
    assert.equal(s.idf1, (2 * 3) / (5 + 5));
  });

  it('a missed person and a false track lower IDR and IDP, not switches', () => {
    const truth = frames([
      [
        0,
        [
          { id: 1, box: box(0) },
          { id: 2, box: box(300) },
        ],
      ],
    ]);
    const found = frames([
      [
        0,
        [
          { id: 1, box: box(0) },
          { id: 3, box: box(600) },
        ],
      ],
    ]);
    const s = scoreIdentities(truth, found);
    assert.equal(s.idr, 0.5);
    assert.equal(s.idp, 0.5);
    assert.equal(s.idSwitches, 0);
  });

  it('a boxes overlap under IoU 0.5 is no match', () => {
    const truth = frames([[0, [{ id: 1, box: box(0) }]]]);
    const found = frames([[0, [{ id: 1, box: box(25) }]]]); // IoU 15/65
    assert.equal(scoreIdentities(truth, found).idtp, 0);
  });

  const scenes = fc.integer({ min: 1, max: 5 }).chain((people) =>
    fc.record({
      people: fc.constant(people),
      length: fc.integer({ min: 2, max: 12 }),
      ids: fc.uniqueArray(fc.integer({ min: 1, max: 1000 }), { minLength: people, maxLength: people }),
    }),
  );
  /** `people` walking side by side, far apart (no two boxes overlap) */
  const walk = (people: number, length: number) =>
    Array.from({ length }, (_, f) => Array.from({ length: people }, (_, p) => box(p * 200, f * 5)));

  it('property: perfect tracks under any renaming → IDF1 1 and no switch', () => {
    fc.assert(
      fc.property(scenes, ({ people, length, ids }) => {
        const w = walk(people, length);
        const truth = frames(w.map((bs, f) => [f, bs.map((b, p) => ({ id: p, box: b }))]));
        const found = frames(w.map((bs, f) => [f, bs.map((b, p) => ({ id: ids[p]!, box: b }))]));
        const s = scoreIdentities(truth, found);
        assert.equal(s.idf1, 1);
        assert.equal(s.idSwitches, 0);
      }),
    );
  });

  it('property: exchanging two ids from frame k on counts 2 switches and IDF1 = 1 − 2·min(k, n−k)/(people·n)', () => {
    fc.assert(
      fc.property(
        scenes.filter((s) => s.people >= 2),
        fc.nat(),
        ({ people, length, ids }, at) => {
          const k = 1 + (at % (length - 1));
          const w = walk(people, length);
          const truth = frames(w.map((bs, f) => [f, bs.map((b, p) => ({ id: p, box: b }))]));
          const name = (p: number, f: number) => (f >= k && p < 2 ? ids[1 - p]! : ids[p]!);
          const found = frames(w.map((bs, f) => [f, bs.map((b, p) => ({ id: name(p, f), box: b }))]));
          const s = scoreIdentities(truth, found);
          assert.equal(s.idSwitches, 2);
          const lost = 2 * Math.min(k, length - k);
          assert.ok(Math.abs(s.idf1 - (1 - lost / (people * length))) < 1e-12);
        },
      ),
    );
  });

  it('property: IDF1 lies in [0, 1] and dropping found boxes never raises IDTP', () => {
    fc.assert(
      fc.property(
        scenes,
        fc.array(fc.boolean(), { minLength: 60, maxLength: 60 }),
        ({ people, length, ids }, keep) => {
          const w = walk(people, length);
          const truth = frames(w.map((bs, f) => [f, bs.map((b, p) => ({ id: p, box: b }))]));
          const full = frames(
            w.map((bs, f) => [f, bs.map((b, p) => ({ id: ids[(p + f) % people]!, box: b }))]),
          );
          const thinned = frames(
            w.map((bs, f) => [
              f,
              bs.flatMap((b, p) =>
                keep[(f * people + p) % 60] ? [{ id: ids[(p + f) % people]!, box: b }] : [],
              ),
            ]),
          );
          const a = scoreIdentities(truth, full);
          const b = scoreIdentities(truth, thinned);
          assert.ok(a.idf1 >= 0 && a.idf1 <= 1 && b.idf1 >= 0 && b.idf1 <= 1);
          assert.ok(b.idtp <= a.idtp);
        },
      ),
    );
  });
});
