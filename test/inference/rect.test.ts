import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  areaOf,
  boxHolds,
  boxOf,
  centreOf,
  clipBox,
  isEmptyBox,
  rectHolds,
  rectOf,
  rectsOverlap,
  rectUnion,
} from '../../inference/rect.ts';

describe('rectangles', () => {
  it('hold the points of their left and top edges, not those of their right and bottom edges', () => {
    assert.ok(boxHolds([10, 20, 30, 40], 10, 20));
    assert.ok(!boxHolds([10, 20, 30, 40], 30, 25));
    assert.ok(!boxHolds([10, 20, 30, 40], 15, 40));
    assert.ok(rectHolds({ x: 10, y: 20, width: 20, height: 20 }, 29.9, 39.9));
    assert.ok(!rectHolds({ x: 10, y: 20, width: 20, height: 20 }, 30, 20));
    assert.deepEqual(centreOf([10, 20, 30, 40]), [20, 30]);
  });

  it('convert between the two forms with a scale, and back', () => {
    const rect = { x: 13, y: 26, width: 52, height: 104 };
    const box = boxOf(rect, 768 / 416, 576 / 416);
    assert.deepEqual(box, [24, 36, 120, 180]);
    const back = rectOf(box, 768 / 416, 576 / 416);
    for (const k of ['x', 'y', 'width', 'height'] as const) assert.ok(Math.abs(back[k] - rect[k]) < 1e-9, k);
  });

  it('clip to an image and tell when nothing is left, NaN edges included', () => {
    assert.deepEqual(clipBox([-5, -5, 20, 900], 640, 480), [0, 0, 20, 480]);
    assert.ok(isEmptyBox(clipBox([700, 10, 800, 20], 640, 480)));
    assert.ok(isEmptyBox([0, 0, Number.NaN, 10]));
    assert.ok(isEmptyBox([5, 5, 5, 10]));
    assert.ok(!isEmptyBox([5, 5, 6, 6]));
  });

  it('overlap only when they share a pixel; a union holds both; areas add up', () => {
    const a = { x: 0, y: 0, width: 10, height: 10 };
    assert.ok(rectsOverlap(a, { x: 9, y: 9, width: 5, height: 5 }));
    assert.ok(!rectsOverlap(a, { x: 10, y: 0, width: 5, height: 5 }));
    assert.deepEqual(rectUnion(a, { x: 20, y: 5, width: 5, height: 10 }), {
      x: 0,
      y: 0,
      width: 25,
      height: 15,
    });
    assert.equal(areaOf([a, a]), 200);
  });
});
