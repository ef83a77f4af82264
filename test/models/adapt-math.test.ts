import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ArgusError } from '../../common/errors.ts';
import { iou } from '../../inference/nms.ts';
import type { Box } from '../../inference/rect.ts';
import {
  assignCells,
  cellCentre,
  isUsableBox,
  type LevelGrid,
  levelGrids,
} from '../../models/adapt/assign.ts';
import {
  concatFrames,
  decodeFrameCells,
  encodeFrameCells,
  type FrameCells,
  selectCells,
  trainingBoxes,
} from '../../models/adapt/features.ts';
import {
  type Batch,
  cloneParams,
  computeTargets,
  type HeadParams,
  type HeadShape,
  headLoss,
  type LossWeights,
  type Targets,
  type TrainingBox,
} from '../../models/adapt/loss.ts';
import { adaptOptions } from '../../models/adapt/options.ts';
import { seededRandom } from '../../models/adapt/trainer.ts';

/**
 * The adaptation's arithmetic without a model: the loss gradients against finite differences (each
 * term on its own, and a wrong gradient caught), the ATSS assignment, the cell selection and cache
 * file, and finite losses for any teacher boxes.
 */

const SHAPE: HeadShape = {
  classes: 2,
  bins: 4,
  classOffset: 0,
  boxOffset: 2,
  cout: 18,
  cin: [3, 5],
  strides: [8, 16],
};
const INPUT = { width: 64, height: 48 };

function randomParams(shape: HeadShape, random: () => number, scale: number): HeadParams {
  return {
    weights: shape.cin.map((c) =>
      Float64Array.from({ length: shape.cout * c }, () => (random() - 0.5) * scale),
    ),
    biases: shape.cin.map(() => Float64Array.from({ length: shape.cout }, () => (random() - 0.5) * scale)),
  };
}

/** a batch of cells on both levels: some assigned to hard boxes, some to a soft one, some negatives */
function randomBatch(random: () => number): Batch {
  const boxes: TrainingBox[] = [
    { box: [10, 8, 30, 40], classId: 0, score: 0.9, hard: true },
    { box: [36, 4, 60, 28], classId: 1, score: 0.7, hard: true },
    { box: [2, 20, 14, 44], classId: 1, score: 0.25, hard: false },
  ];
  const grids = levelGrids(SHAPE.strides, INPUT.width, INPUT.height);
  const levels = grids.map((grid, level) => {
    const cin = SHAPE.cin[level]!;
    const count = grid.cols * grid.rows;
    const centres = new Float32Array(2 * count);
    const box = new Int32Array(count).fill(-1);
    for (let cell = 0; cell < count; cell++) {
      const [cx, cy] = cellCentre(grid, cell);
      centres[2 * cell] = cx;
      centres[2 * cell + 1] = cy;
      const inside = boxes.findIndex((b) => cx > b.box[0] && cx < b.box[2] && cy > b.box[1] && cy < b.box[3]);
      box[cell] = inside >= 0 && random() < 0.7 ? inside : -1;
    }
    return {
      count,
      centres,
      box,
      weight: Float32Array.from({ length: count }, () => (random() < 0.3 ? 4 : 1)),
      features: Float32Array.from({ length: count * cin }, () => random() * 2 - 0.5),
    };
  });
  return { boxes, levels, ...{ inputWidth: INPUT.width, inputHeight: INPUT.height } };
}

const ONLY = (term: 'quality' | 'box' | 'distill' | 'decay', beta = 2): LossWeights => ({
  quality: term === 'quality' ? 1 : 0,
  box: term === 'box' ? 1 : 0,
  distill: term === 'distill' ? 1 : 0,
  decay: term === 'decay' ? 1 : 0,
  beta,
  trainBox: true,
});

/**
 * the largest error of `analytic` against central differences of the loss, relative to the
 * gradient's size, over every weight and bias
 */
function gradientError(
  p: HeadParams,
  initial: HeadParams,
  batch: Batch,
  targets: Targets,
  weights: LossWeights,
  analytic: HeadParams,
): number {
  const h = 1e-6;
  let worst = 0;
  let norm = 0;
  const all = (q: HeadParams) => [...q.weights, ...q.biases];
  for (const g of all(analytic)) for (const v of g) norm = Math.max(norm, Math.abs(v));
  all(p).forEach((values, a) => {
    const g = all(analytic)[a]!;
    for (let i = 0; i < values.length; i++) {
      const keep = values[i]!;
      values[i] = keep + h;
      const up = headLoss(SHAPE, p, initial, batch, targets, weights).total;
      values[i] = keep - h;
      const down = headLoss(SHAPE, p, initial, batch, targets, weights).total;
      values[i] = keep;
      const numeric = (up - down) / (2 * h);
      worst = Math.max(worst, Math.abs(numeric - g[i]!) / Math.max(norm, 1e-12));
    }
  });
  return worst;
}

function setUp(seed: number) {
  const random = seededRandom(seed);
  const initial = randomParams(SHAPE, random, 1);
  const p = cloneParams(initial);
  // away from the pretrained weights, so that the decay has a gradient
  for (const w of [...p.weights, ...p.biases])
    for (let i = 0; i < w.length; i++) w[i] = w[i]! + (random() - 0.5) * 0.4;
  const batch = randomBatch(random);
  return { initial, p, batch, targets: computeTargets(SHAPE, p, batch) };
}

describe('adaptation loss gradients', () => {
  for (const term of ['quality', 'box', 'distill', 'decay'] as const) {
    for (const beta of term === 'quality' || term === 'distill' ? [2, 1.5] : [2]) {
      it(`${term}${beta !== 2 ? ` (β ${beta})` : ''}: the gradient matches central differences`, () => {
        for (const seed of [1, 2, 3]) {
          const { initial, p, batch, targets } = setUp(seed);
          const weights = ONLY(term, beta);
          const grad = cloneParams(initial);
          const parts = headLoss(SHAPE, p, initial, batch, targets, weights, grad);
          assert.ok(parts[term] > 0, `${term} loss ${parts[term]} is not trivially zero`);
          const error = gradientError(p, initial, batch, targets, weights, grad);
          assert.ok(error < 1e-6, `${term}, seed ${seed}: relative gradient error ${error.toExponential(2)}`);
        }
      });
    }
  }

  it('all terms together, and the box rows frozen when boxes are not trained', () => {
    const { initial, p, batch, targets } = setUp(4);
    const weights: LossWeights = { quality: 1, box: 0.25, distill: 0.5, decay: 0.3, beta: 2, trainBox: true };
    const grad = cloneParams(initial);
    headLoss(SHAPE, p, initial, batch, targets, weights, grad);
    assert.ok(gradientError(p, initial, batch, targets, weights, grad) < 1e-6);

    const classesOnly = { ...weights, trainBox: false };
    headLoss(SHAPE, p, initial, batch, targets, classesOnly, grad);
    const cin = SHAPE.cin[0]!;
    const boxRows = grad.weights[0]!.subarray(
      SHAPE.boxOffset * cin,
      (SHAPE.boxOffset + 4 * SHAPE.bins) * cin,
    );
    assert.ok(
      boxRows.every((v) => v === 0),
      'box rows get no gradient',
    );
    assert.ok(grad.weights[0]!.subarray(0, SHAPE.classes * cin).some((v) => v !== 0));
  });

  it('the check fails on a gradient that is slightly wrong', () => {
    const { initial, p, batch, targets } = setUp(5);
    for (const term of ['quality', 'box', 'distill', 'decay'] as const) {
      const weights = ONLY(term);
      const grad = cloneParams(initial);
      headLoss(SHAPE, p, initial, batch, targets, weights, grad);
      // one partial derivative off by 1 % of the gradient's largest one
      const g = grad.weights[1]!;
      let at = 0;
      for (let i = 0; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[at]!)) at = i;
      g[at] = g[at]! * 1.01;
      assert.ok(
        gradientError(p, initial, batch, targets, weights, grad) > 1e-3,
        `${term}: the error is seen`,
      );
    }
  });
});

/** boxes anywhere, of any size, including empty, inverted, infinite and NaN edges */
const anyEdge = fc.oneof(
  { weight: 8, arbitrary: fc.double({ min: -20, max: 120, noNaN: true }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 0, 64),
  },
);
const anyBox = fc.tuple(anyEdge, anyEdge, anyEdge, anyEdge) as fc.Arbitrary<Box>;
const usableBox = fc
  .tuple(
    fc.double({ min: 0, max: 60, noNaN: true }),
    fc.double({ min: 0, max: 44, noNaN: true }),
    fc.double({ min: 0.5, max: 40, noNaN: true }),
    fc.double({ min: 0.5, max: 40, noNaN: true }),
  )
  .map(([x, y, w, h]) => [x, y, x + w, y + h] as Box);
const GRIDS: LevelGrid[] = levelGrids([8, 16, 32], INPUT.width, INPUT.height);

describe('ATSS assignment', () => {
  it('assigns a cell to at most one box: among the boxes it is a positive of alone, the one its anchor overlaps most', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(usableBox, anyBox), { maxLength: 12 }), (boxes) => {
        const together = assignCells(boxes, GRIDS);
        const alone = boxes.map((b) => assignCells([b], GRIDS));
        GRIDS.forEach((grid, level) => {
          for (let cell = 0; cell < grid.cols * grid.rows; cell++) {
            const half = (5 * grid.stride) / 2;
            const [cx, cy] = cellCentre(grid, cell);
            const anchor: Box = [cx - half, cy - half, cx + half, cy + half];
            let expected = -1;
            let best = 0;
            boxes.forEach((b, i) => {
              if (alone[i]!.box[level]![cell] !== 0) return;
              const o = iou(anchor, b);
              if (expected < 0 || o > best) {
                expected = i;
                best = o;
              }
            });
            const got = together.box[level]![cell]!;
            assert.equal(got, expected, `level ${level} cell ${cell}`);
            if (got >= 0) {
              const b = boxes[got]!;
              assert.ok(
                isUsableBox(b) && cx > b[0] && cx < b[2] && cy > b[1] && cy < b[3],
                'its centre is inside',
              );
            }
          }
        });
      }),
      { numRuns: 60 },
    );
  });

  it('gives every box a cell when its centre cell lies well inside it', () => {
    fc.assert(
      fc.property(usableBox, (b) => {
        const [cx, cy] = [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2];
        const finest = GRIDS[0]!;
        const [col, row] = [Math.floor(cx / finest.stride), Math.floor(cy / finest.stride)];
        fc.pre(col < finest.cols && row < finest.rows);
        const [x, y] = cellCentre(finest, row * finest.cols + col);
        fc.pre(x > b[0] + 0.5 && x < b[2] - 0.5 && y > b[1] + 0.5 && y < b[3] - 0.5);
        const a = assignCells([b], GRIDS);
        assert.ok(a.box.some((level) => level.includes(0)));
      }),
    );
  });
});

function frameRun(random: () => number) {
  return {
    features: GRIDS.map((g, level) =>
      Float32Array.from({ length: [3, 5, 2][level]! * g.cols * g.rows }, () => random() * 4 - 2),
    ),
    scores: GRIDS.map((g) => Float32Array.from({ length: 2 * g.cols * g.rows }, () => random() ** 4)),
  };
}
const SHAPE3: HeadShape = { ...SHAPE, cin: [3, 5, 2], strides: [8, 16, 32] };
const descriptor = {
  input: { width: INPUT.width, height: INPUT.height },
  labels: ['person', 'car'],
} as unknown as Parameters<typeof trainingBoxes>[1];

describe('cells, cache files and losses for any teacher boxes', () => {
  const options = adaptOptions({ negativeRate: 0.25 });

  it('losses and gradients are finite whatever the teacher says, and the cache file round-trips exactly', () => {
    const label = fc.record({
      label: fc.constantFrom('person', 'car', 'tram'),
      box: fc.oneof(
        usableBox.map((b) => b.map((v) => v * 12) as Box),
        anyBox,
      ),
      score: fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), fc.constantFrom(Number.NaN, 2, -1)),
    });
    fc.assert(
      fc.property(fc.array(label, { maxLength: 10 }), fc.integer({ min: 0, max: 1000 }), (labels, seed) => {
        const random = seededRandom(seed);
        const frame = {
          id: 'f',
          frame: { pixels: new Uint8Array(0), sourceWidth: 768, sourceHeight: 576 },
          labels,
        };
        const boxes = trainingBoxes(frame, descriptor, options);
        for (const b of boxes)
          assert.ok(isUsableBox(b.box) && b.box[2] <= INPUT.width && b.box[3] <= INPUT.height);
        const cells = selectCells(SHAPE3, GRIDS, boxes, frameRun(random), options, random);
        // as read from a file: a Buffer that starts at an offset into a larger one
        const file = Buffer.concat([Buffer.alloc(3), encodeFrameCells(cells)]).subarray(3);
        const decoded = decodeFrameCells(file, SHAPE3, 'test');
        assert.deepEqual(decoded, cells);
        const batch = concatFrames([cells, decoded], SHAPE3, INPUT.width, INPUT.height);
        const p = randomParams(SHAPE3, random, 2);
        const grad = cloneParams(p);
        const parts = headLoss(SHAPE3, p, p, batch, computeTargets(SHAPE3, p, batch), ONLY('quality'), grad);
        const all = headLoss(
          SHAPE3,
          p,
          p,
          batch,
          computeTargets(SHAPE3, p, batch),
          { quality: 1, box: 1, distill: 1, decay: 1, beta: 2, trainBox: true },
          grad,
        );
        for (const v of [...Object.values(parts), ...Object.values(all)])
          assert.ok(Number.isFinite(v), `loss ${v}`);
        for (const g of [...grad.weights, ...grad.biases])
          assert.ok(g.every(Number.isFinite), 'gradient finite');
      }),
      { numRuns: 80 },
    );
  });

  it('keeps every assigned and candidate cell, and easy negatives at their rate with their inverse weight', () => {
    const random = seededRandom(7);
    const boxes = trainingBoxes(
      {
        id: 'f',
        frame: { pixels: new Uint8Array(0), sourceWidth: 64, sourceHeight: 48 },
        labels: [{ label: 'person', box: [10, 8, 30, 40], score: 0.9 }],
      },
      descriptor,
      options,
    );
    const run = frameRun(random);
    for (const s of run.scores) s.fill(0);
    const cells = selectCells(SHAPE3, GRIDS, boxes, run, options, random);
    const a = assignCells(
      boxes.map((b) => b.box),
      GRIDS,
    );
    const positives = a.box.reduce((n, l) => n + l.filter((b) => b >= 0).length, 0);
    const kept = cells.levels.reduce((n, l) => n + l.box.filter((b) => b >= 0).length, 0);
    assert.ok(positives > 0);
    assert.equal(kept, positives);
    for (const l of cells.levels)
      for (const w of l.weight) assert.ok(w === 1 || w === 1 / options.negativeRate);
  });

  it('a damaged cache file is refused with an error that says what to do', () => {
    const random = seededRandom(3);
    const boxes: TrainingBox[] = [{ box: [10, 8, 30, 40], classId: 0, score: 0.9, hard: true }];
    const bytes = encodeFrameCells(selectCells(SHAPE3, GRIDS, boxes, frameRun(random), options, random));
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: bytes.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        (at, xor) => {
          const damaged = Uint8Array.from(bytes);
          damaged[at] = damaged[at]! ^ xor;
          try {
            const cells: FrameCells = decodeFrameCells(damaged, SHAPE3, 'x.cells');
            // a flipped feature, centre or weight byte still decodes: the layout is intact
            assert.equal(cells.levels.length, 3);
          } catch (err) {
            assert.ok(err instanceof ArgusError, String(err));
            assert.match((err as ArgusError).hint ?? '', /delete the adaptation work directory/);
          }
          assert.throws(() => decodeFrameCells(bytes.subarray(0, at), SHAPE3, 'x.cells'), ArgusError);
        },
      ),
      { numRuns: 200 },
    );
  });
});
