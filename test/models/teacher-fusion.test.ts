import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Box } from '../../inference/rect.ts';
import { tileRegions } from '../../models/teacher/teacher.ts';
import { type FusionBox, weightedBoxFusion } from '../../models/teacher/wbf.ts';

const OPTIONS = { iouThreshold: 0.55, skipBelow: 0.05 };
const person = (box: Box, score: number): FusionBox => ({ label: 'person', box, score });

function close(actual: readonly number[], expected: readonly number[], what: string): void {
  for (const [i, v] of actual.entries())
    assert.ok(Math.abs(v - expected[i]!) < 1e-9, `${what}: ${actual} vs ${expected}`);
}

describe('weighted box fusion', () => {
  it('averages overlapping boxes weighted by score and run weight', () => {
    const fused = weightedBoxFusion(
      [
        { weight: 2, boxes: [person([0, 0, 10, 20], 0.9)] },
        { weight: 1, boxes: [person([2, 0, 12, 20], 0.6)] },
      ],
      OPTIONS,
    );
    assert.equal(fused.length, 1);
    // masses 1.8 and 0.6: x1 = (1.8·0 + 0.6·2) / 2.4
    close(fused[0]!.box, [0.5, 0, 10.5, 20], 'box');
    // votes (0.9·2 + 0.6·1) / 3
    assert.ok(Math.abs(fused[0]!.score - 0.8) < 1e-9);
  });

  it('scores a box that only some runs find lower, unless the others did not look there', () => {
    const box: Box = [100, 100, 120, 150];
    const found = { weight: 1, boxes: [person(box, 0.8)] };
    const [missed] = weightedBoxFusion([found, { weight: 1, boxes: [] }], OPTIONS);
    assert.ok(Math.abs(missed!.score - 0.4) < 1e-9);
    const [unseen] = weightedBoxFusion([found, { weight: 1, boxes: [], region: [0, 0, 50, 50] }], OPTIONS);
    assert.ok(Math.abs(unseen!.score - 0.8) < 1e-9);
  });

  it('keeps classes, distant boxes and low scores apart', () => {
    const fused = weightedBoxFusion(
      [
        {
          weight: 1,
          boxes: [
            person([0, 0, 10, 10], 0.9),
            { label: 'car', box: [0, 0, 10, 10], score: 0.7 },
            person([50, 50, 60, 60], 0.5),
            person([0, 0, 10, 10], 0.01),
          ],
        },
      ],
      OPTIONS,
    );
    assert.deepEqual(
      fused.map((f) => [f.label, f.score]),
      [
        ['person', 0.9],
        ['car', 0.7],
        ['person', 0.5],
      ],
    );
  });

  it('counts a run once per cluster: its best box votes, the rest only shape the box', () => {
    const [fused] = weightedBoxFusion(
      [{ weight: 1, boxes: [person([0, 0, 10, 10], 0.9), person([1, 0, 11, 10], 0.9)] }],
      OPTIONS,
    );
    assert.ok(Math.abs(fused!.score - 0.9) < 1e-9);
    close(fused!.box, [0.5, 0, 10.5, 10], 'box');
  });

  it('property: fused boxes lie within the boxes they fuse, scores within [0, 1], one run alone unchanged', () => {
    const coordinate = fc.integer({ min: 0, max: 200 });
    const arbBox = fc
      .tuple(coordinate, coordinate, fc.integer({ min: 1, max: 80 }), fc.integer({ min: 1, max: 80 }))
      .map(([x, y, w, h]): Box => [x, y, x + w, y + h]);
    const arbRun = fc.record({
      weight: fc.double({ min: 0.1, max: 5, noNaN: true }),
      boxes: fc.array(
        fc.record({
          label: fc.constantFrom('person', 'car'),
          box: arbBox,
          score: fc.double({ min: 0, max: 1, noNaN: true }),
        }),
        { maxLength: 8 },
      ),
    });
    fc.assert(
      fc.property(fc.array(arbRun, { minLength: 1, maxLength: 4 }), (runs) => {
        const all = runs.flatMap((r) => r.boxes).filter((b) => b.score >= OPTIONS.skipBelow);
        const fused = weightedBoxFusion(runs, OPTIONS);
        assert.ok(fused.length <= all.length);
        for (const f of fused) {
          assert.ok(f.score >= 0 && f.score <= 1);
          const same = all.filter((b) => b.label === f.label);
          assert.ok(f.box[0] >= Math.min(...same.map((b) => b.box[0])) - 1e-9);
          assert.ok(f.box[2] <= Math.max(...same.map((b) => b.box[2])) + 1e-9);
        }
      }),
    );
    fc.assert(
      fc.property(fc.array(arbBox, { maxLength: 6 }), (boxes) => {
        // boxes far apart (each shifted 1,000 px from the last) never fuse: each comes back as it was
        const apart = boxes.map((b, i): Box => [b[0] + i * 1000, b[1], b[2] + i * 1000, b[3]]);
        const fused = weightedBoxFusion([{ weight: 3, boxes: apart.map((b) => person(b, 0.5)) }], OPTIONS);
        assert.deepEqual(
          fused.map((f) => f.box).sort((a, b) => a[0] - b[0]),
          apart,
        );
      }),
    );
  });
});

describe('teacher tiles', () => {
  it('cover the frame with overlapping tiles of one size', () => {
    const tiles = tileRegions(768, 576, 2, 2, 0.25);
    assert.equal(tiles.length, 4);
    for (const t of tiles) {
      assert.equal(t.width, tiles[0]!.width);
      assert.ok(t.x >= 0 && t.y >= 0 && t.x + t.width <= 768 && t.y + t.height <= 576);
    }
    assert.equal(Math.max(...tiles.map((t) => t.x + t.width)), 768);
    assert.equal(Math.max(...tiles.map((t) => t.y + t.height)), 576);
    const overlap = tiles[0]!.x + tiles[0]!.width - tiles[1]!.x;
    assert.ok(overlap >= 0.25 * tiles[0]!.width - 1, `overlap ${overlap}`);
    assert.deepEqual(tileRegions(768, 576, 1, 1, 0.25), [{ x: 0, y: 0, width: 768, height: 576 }]);
  });
});
