import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import { createLogger } from '../../common/logger.ts';
import { type Detection, Detector } from '../../inference/detector.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import { iou } from '../../inference/nms.ts';
import type { Box, Rect } from '../../inference/rect.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { type MotionDecision, MotionGate } from '../../pipelines/motion.ts';
import { Mosaic } from '../../pipelines/runtime/mosaic.ts';
import { DetectionScheduler } from '../../pipelines/runtime/scheduler.ts';
import type { MotionSettings } from '../../pipelines/scene/schema.ts';
import { readModelFrames } from '../helpers/frames.ts';
import { groundTruthPersons } from '../helpers/ground-truth.ts';
import { ensureCatalogModels } from '../helpers/models.ts';
import { recordingDetector } from '../helpers/recording-detector.ts';

const log = createLogger('test-motion-regions');
const SIDE = 416;
const MOTION: MotionSettings = {
  enabled: true,
  pixelThreshold: 20,
  minAreaShare: 0.0015,
  refreshSeconds: 1,
  wholeFrameSeconds: 5,
  regions: true,
  maxRegionShare: 0.5,
};

/** a grey model frame with bright blocks [x, y, width, height] */
function frameWith(...blocks: [number, number, number, number][]): Uint8Array {
  const pixels = new Uint8Array(SIDE * SIDE * 3).fill(100);
  for (const [x, y, w, h] of blocks)
    for (let row = y; row < y + h; row++) pixels.fill(220, (row * SIDE + x) * 3, (row * SIDE + x + w) * 3);
  return pixels;
}

const contains = (r: Rect, [x, y, w, h]: [number, number, number, number]) =>
  r.x <= x && r.y <= y && r.x + r.width >= x + w && r.y + r.height >= y + h;

describe('motion regions', () => {
  it('skips a still frame, and sends only the moving regions, each holding its mover with a margin', () => {
    const gate = new MotionGate(MOTION, SIDE, SIDE);
    assert.deepEqual(gate.assess(frameWith(), 0), { detect: true }, 'the first frame is whole');
    assert.deepEqual(gate.assess(frameWith(), 0.2), { detect: false });
    const walker: [number, number, number, number] = [60, 100, 30, 70];
    const cyclist: [number, number, number, number] = [300, 250, 50, 40];
    const d = gate.assess(frameWith(walker, cyclist), 0.4);
    assert.ok(d.detect && d.regions, 'regions');
    assert.equal(d.regions.length, 2);
    const [a, b] = [...d.regions].sort((p, q) => p.x - q.x);
    assert.ok(contains(a!, walker) && contains(b!, cyclist), JSON.stringify(d.regions));
    for (const [r, [, , w, h]] of [
      [a!, walker],
      [b!, cyclist],
    ] as const) {
      // a 6.5-pixel grid cell of margin on each side, and no more than a cell of rounding
      assert.ok(r.width >= w + 10 && r.width <= w + 24, `width ${r.width} for ${w}`);
      assert.ok(r.height >= h + 10 && r.height <= h + 24, `height ${r.height} for ${h}`);
    }
    assert.ok(gate.searchedShare > 0.33 && gate.searchedShare < 0.4, `searched ${gate.searchedShare}`);
    assert.equal(gate.skippedShare, 1 / 3);
  });

  it('grows a moving region to hold whole every tracked object it overlaps, wherever it moves', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: SIDE - 60 }),
        fc.integer({ min: 0, max: SIDE - 120 }),
        fc.integer({ min: 24, max: 60 }),
        fc.integer({ min: 40, max: 120 }),
        fc.double({ min: 0, max: 0.8, noNaN: true }),
        fc.double({ min: 0, max: 0.8, noNaN: true }),
        (x, y, w, h, fx, fy) => {
          const gate = new MotionGate(MOTION, SIDE, SIDE);
          gate.assess(frameWith(), 0);
          // a person tracked at [x, y, w, h] moves only an arm: a 20-pixel block inside the box
          const person: Rect = { x, y, width: w, height: h };
          const arm: [number, number, number, number] = [
            x + Math.floor(fx * (w - 20)),
            y + Math.floor(fy * (h - 20)),
            20,
            20,
          ];
          const d = gate.assess(frameWith(arm), 0.2, () => [person]);
          assert.ok(d.detect && d.regions, JSON.stringify(d));
          assert.ok(
            d.regions.some((r) => contains(r, [x, y, w, h])),
            `${JSON.stringify(d.regions)} holds ${JSON.stringify(person)}`,
          );
        },
      ),
      { numRuns: 100 },
    );
  });

  it('sends the whole frame every wholeFrameSeconds, staggered by the phase, and when most of the frame moves', () => {
    const wholes = (phase: number) => {
      const gate = new MotionGate({ ...MOTION, wholeFrameSeconds: 2 }, SIDE, SIDE, phase);
      const out: number[] = [];
      for (let i = 0; i <= 15; i++) {
        const d: MotionDecision = gate.assess(frameWith([(i % 2) * 200, 0, 40, 40]), i * 0.25);
        assert.ok(d.detect, 'something moves in every frame');
        if (!d.regions) out.push(i);
      }
      return out;
    };
    // frames every 0.25 s: whole at the start, then every 2 s, the first period 0.5–1 of it
    assert.deepEqual(wholes(0), [0, 8]);
    assert.deepEqual(wholes(0.8), [0, 5, 13]);
    const gate = new MotionGate(MOTION, SIDE, SIDE);
    gate.assess(frameWith(), 0);
    assert.deepEqual(gate.assess(frameWith([0, 0, 300, 300]), 0.2), { detect: true });
  });

  it('looks at the tracked objects every refreshSeconds, moving or not', () => {
    const gate = new MotionGate(MOTION, SIDE, SIDE);
    const van: Rect = { x: 300, y: 20, width: 60, height: 40 };
    const still = frameWith();
    const at = (t: number, tracked: Rect[] = [van]) => gate.assess(still, t, () => tracked);
    assert.deepEqual(at(0), { detect: true });
    assert.deepEqual([at(0.25), at(0.5), at(0.75)], Array(3).fill({ detect: false }));
    const refresh = at(1);
    assert.ok(refresh.detect && refresh.regions?.length === 1, JSON.stringify(refresh));
    const [r] = refresh.regions;
    // the van's box with half its larger side (30 pixels) around it, cut at the top of the frame
    assert.deepEqual(r, { x: 270, y: 0, width: 120, height: 90 });
    assert.deepEqual(at(1.25), { detect: false });
    assert.deepEqual(at(2, []), { detect: false }, 'nothing tracked, nothing moving');
    // without regions: the whole frame on refresh and on motion
    const whole = new MotionGate({ ...MOTION, regions: false }, SIDE, SIDE);
    whole.assess(still, 0);
    assert.deepEqual(
      whole.assess(still, 0.5, () => [van]),
      { detect: false },
    );
    assert.deepEqual(whole.assess(frameWith([0, 0, 30, 30]), 0.75), { detect: true });
    // the block is gone: changes while the background settles, then still until the refresh a
    // second after the last whole frame
    assert.deepEqual([whole.assess(still, 1), whole.assess(still, 1.25)], Array(2).fill({ detect: true }));
    assert.deepEqual(whole.assess(still, 1.5), { detect: false });
    assert.deepEqual(whole.assess(still, 2.25), { detect: true });
  });

  it('refreshes only the tracked objects outside the moving regions, and waits when they would cover too much', () => {
    const gate = new MotionGate(MOTION, SIDE, SIDE);
    const still = frameWith();
    const walker: [number, number, number, number] = [60, 100, 30, 70];
    const walkerBox: Rect = { x: 60, y: 100, width: 30, height: 70 };
    const van: Rect = { x: 300, y: 20, width: 60, height: 40 };
    gate.assess(still, 0);
    const refresh = gate.assess(frameWith(walker), 1, () => [walkerBox, van]);
    assert.ok(refresh.detect && refresh.regions, JSON.stringify(refresh));
    assert.equal(refresh.regions.length, 2, 'the walker once (its moving region), the van once');
    assert.ok(refresh.regions.some((r) => contains(r, walker)));
    assert.ok(refresh.regions.some((r) => contains(r, [300, 20, 60, 40])));
    // a crowd of resting objects whose regions would pass maxRegionShare: no whole frame, the
    // moving region alone, and the refresh comes on the next frame that has room for it
    const crowded = new MotionGate(MOTION, SIDE, SIDE);
    crowded.assess(still, 0);
    const resting: Rect[] = [0, 140, 280].flatMap((x) =>
      [0, 140, 280].map((y) => ({ x: x + 20, y: y + 20, width: 80, height: 80 })),
    );
    const busy = crowded.assess(frameWith(walker), 1, () => resting);
    assert.ok(
      busy.detect && busy.regions?.length === 1 && contains(busy.regions[0]!, walker),
      JSON.stringify(busy),
    );
    assert.ok(crowded.refreshDue(1.25), 'the refresh is still due');
    const later = crowded.assess(still, 1.25, () => [resting[0]!, resting[8]!]);
    assert.ok(later.detect && later.regions, JSON.stringify(later));
    for (const box of [resting[0]!, resting[8]!])
      assert.ok(
        later.regions.some((r) => contains(r, [box.x, box.y, box.width, box.height])),
        JSON.stringify(later),
      );
    assert.equal(crowded.refreshDue(1.5), false);
  });
});

/** a model frame whose every byte tells the frame, the pixel and the channel apart */
function patterned(seed: number): ModelFrame {
  const pixels = new Uint8Array(SIDE * SIDE * 3);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7 + seed * 31) % 251;
  return { pixels, sourceWidth: 768, sourceHeight: 576 };
}

const det = (box: Box, score = 0.9): Detection => ({ label: 'person', classId: 0, score, box });

describe('mosaic of moving regions', () => {
  it('copies each region at its own scale and sends detections back in its frame’s source pixels', () => {
    const [f1, f2] = [patterned(1), patterned(2)];
    const mosaic = new Mosaic<string>(SIDE, SIDE);
    const r1: Rect = { x: 100, y: 50, width: 120, height: 200 };
    const r2: Rect = { x: 10, y: 300, width: 90, height: 100 };
    const r3: Rect = { x: 250, y: 0, width: 150, height: 180 };
    assert.ok(mosaic.tryPlace('one', f1, [r1]));
    assert.ok(mosaic.tryPlace('two', f2, [r2, r3]));
    const { pixels, sourceWidth, sourceHeight } = mosaic.frame();
    assert.deepEqual([sourceWidth, sourceHeight], [SIDE, SIDE]);
    // find each region in the mosaic by its first row, then compare every row
    const where = (f: ModelFrame, r: Rect) => {
      const first = f.pixels.subarray((r.y * SIDE + r.x) * 3, (r.y * SIDE + r.x + r.width) * 3);
      for (let y = 0; y + r.height <= SIDE; y++)
        for (let x = 0; x + r.width <= SIDE; x++) {
          const at = (y * SIDE + x) * 3;
          if (Buffer.compare(pixels.subarray(at, at + first.length), first) === 0) return [x, y] as const;
        }
      assert.fail(`region ${JSON.stringify(r)} is not in the mosaic`);
    };
    const spots = new Map<Rect, readonly [number, number]>();
    for (const [f, r] of [
      [f1, r1],
      [f2, r2],
      [f2, r3],
    ] as const) {
      const [x, y] = where(f, r);
      spots.set(r, [x, y]);
      for (let row = 0; row < r.height; row++) {
        const from = ((r.y + row) * SIDE + r.x) * 3;
        const to = ((y + row) * SIDE + x) * 3;
        assert.equal(
          Buffer.compare(pixels.subarray(to, to + r.width * 3), f.pixels.subarray(from, from + r.width * 3)),
          0,
          `row ${row} of ${JSON.stringify(r)}`,
        );
      }
    }
    const [x1, y1] = spots.get(r1)!;
    const [x3, y3] = spots.get(r3)!;
    const found = mosaic.distribute([
      det([x1 + 10, y1 + 20, x1 + 50, y1 + 120]),
      // reaches out of its region: clipped to it
      det([x3 - 30, y3 + 10, x3 + 40, y3 + 60]),
      // centred in no region
      det([SIDE - 4, SIDE - 4, SIDE, SIDE]),
    ]);
    const sx = 768 / SIDE;
    const sy = 576 / SIDE;
    const near = (a: Box, b: Box) => a.every((v, i) => Math.abs(v - b[i]!) < 1e-9);
    assert.deepEqual([...found.keys()], ['one', 'two']);
    assert.ok(near(found.get('one')![0]!.box, [110 * sx, 70 * sy, 150 * sx, 170 * sy]));
    assert.equal(found.get('two')!.length, 1);
    assert.ok(near(found.get('two')![0]!.box, [250 * sx, 10 * sy, 290 * sx, 60 * sy]));
  });

  it('places all of a frame’s regions or none of them', () => {
    const mosaic = new Mosaic<number>(SIDE, SIDE);
    const half: Rect = { x: 0, y: 0, width: 200, height: 200 };
    assert.ok(mosaic.tryPlace(1, patterned(1), [half, half, half]));
    assert.equal(
      mosaic.tryPlace(2, patterned(2), [
        { ...half, width: 100 },
        { ...half, width: 300 },
      ]),
      false,
    );
    assert.deepEqual(mosaic.members, [1]);
    assert.ok(mosaic.tryPlace(3, patterned(3), [{ ...half, width: 100 }]));
    assert.deepEqual(mosaic.members, [1, 3]);
  });
});

/** a blank model frame with each region filled with its own grey level (`first`, `first` + 1, …) */
function labelled(regions: readonly Rect[], first = 1): ModelFrame {
  const pixels = new Uint8Array(SIDE * SIDE * 3);
  for (const [i, r] of regions.entries())
    for (let y = r.y; y < r.y + r.height; y++)
      pixels.fill(first + i, (y * SIDE + r.x) * 3, (y * SIDE + r.x + r.width) * 3);
  return { pixels, sourceWidth: SIDE, sourceHeight: SIDE };
}

/** where each grey level of `labelled` lies in a mosaic: its bounding box and its pixel count */
function layout(mosaic: ModelFrame, levels: number): { box: Rect; count: number }[] {
  const { width, height } = mosaic.size!;
  const seen = Array.from({ length: levels }, () => ({ x1: width, y1: height, x2: -1, y2: -1, count: 0 }));
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const v = mosaic.pixels[(y * width + x) * 3]!;
      if (v === 0) continue;
      const s = seen[v - 1]!;
      s.count++;
      s.x1 = Math.min(s.x1, x);
      s.y1 = Math.min(s.y1, y);
      s.x2 = Math.max(s.x2, x);
      s.y2 = Math.max(s.y2, y);
    }
  return seen.map((s) => ({
    box: { x: s.x1, y: s.y1, width: s.x2 - s.x1 + 1, height: s.y2 - s.y1 + 1 },
    count: s.count,
  }));
}

describe('mosaic packing', () => {
  it('stacks short regions beside a tall one, so the input stays as small as they allow', () => {
    const tall: Rect = { x: 0, y: 0, width: 100, height: 300 };
    const shorts: Rect[] = [0, 1, 2].map((i) => ({ x: 110 + i * 102, y: 310, width: 100, height: 100 }));
    const regions = [tall, ...shorts];
    const mosaic = new Mosaic<number>(SIDE, SIDE, 32);
    assert.ok(mosaic.tryPlace(1, labelled(regions), regions));
    const input = mosaic.frame();
    // shelves would put the third short region under the tall one's shelf: 416 × 416
    assert.deepEqual(input.size, { width: 320, height: 320 });
    const placed = layout(input, regions.length);
    assert.deepEqual(
      placed.map((p) => p.box),
      [
        { x: 0, y: 0, width: 100, height: 300 },
        { x: 108, y: 0, width: 100, height: 100 },
        { x: 216, y: 0, width: 100, height: 100 },
        { x: 108, y: 108, width: 100, height: 100 },
      ],
    );
  });

  it('keeps every region whole, inside the input and apart from the others, for many frames of random regions', () => {
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 40; round++) {
      const mosaic = new Mosaic<number>(SIDE, SIDE, 32);
      const all: Rect[] = [];
      for (let frame = 0; frame < 12; frame++) {
        // a frame's regions lie side by side in it (each in a column of its own), each in its own grey
        const regions = Array.from({ length: 1 + random(3) }, (_, column) => {
          const width = 16 + random(120);
          const height = 16 + random(200);
          return { x: column * 138, y: random(SIDE - height), width, height };
        });
        const image = labelled(regions, all.length + 1);
        if (mosaic.tryPlace(frame, image, regions)) all.push(...regions);
      }
      assert.ok(all.length > 0);
      const placed = layout(mosaic.frame(), all.length);
      for (const [i, p] of placed.entries()) {
        const r = all[i]!;
        assert.equal(p.count, r.width * r.height, `round ${round}: region ${i} is whole`);
        assert.deepEqual([p.box.width, p.box.height], [r.width, r.height], `round ${round}: region ${i}`);
        for (const q of placed.slice(0, i)) {
          const apart =
            p.box.x >= q.box.x + q.box.width + 8 ||
            q.box.x >= p.box.x + p.box.width + 8 ||
            p.box.y >= q.box.y + q.box.height + 8 ||
            q.box.y >= p.box.y + p.box.height + 8;
          assert.ok(
            apart,
            `round ${round}: regions ${JSON.stringify(p.box)} and ${JSON.stringify(q.box)} are 8 px apart`,
          );
        }
      }
    }
  });
});

describe('detection in a mosaic', () => {
  let detector: Detector;
  let frames: ModelFrame[];
  before(async () => {
    await ensureCatalogModels();
    detector = await Detector.load({ ...DEFAULT_DETECTOR_SETTINGS, intraOpThreads: 1 }, log);
    frames = await readModelFrames([300, 600], detector);
  });

  /** a region of each frame around some of its annotated people (model-frame pixels) */
  const REGIONS: Rect[] = [
    { x: 85, y: 100, width: 115, height: 130 },
    { x: 295, y: 130, width: 100, height: 100 },
  ];

  /** the annotated people of frame `index` standing well inside `region` */
  function peopleIn(index: number, region: Rect): Box[] {
    const sx = 768 / SIDE;
    const sy = 576 / SIDE;
    return groundTruthPersons(index).filter(
      ([x1, y1, x2, y2]) =>
        x1 >= (region.x + 8) * sx &&
        x2 <= (region.x + region.width - 8) * sx &&
        y1 >= (region.y + 8) * sy &&
        y2 <= (region.y + region.height - 8) * sy,
    );
  }

  for (const sizeStep of [undefined, 32]) {
    it(`finds the people of regions of two frames packed into one input${sizeStep ? ' only as large as the regions' : ''}, in each frame’s coordinates`, async () => {
      const mosaic = new Mosaic<number>(SIDE, SIDE, sizeStep);
      const people = [300, 600].map((index, i) => peopleIn(index, REGIONS[i]!));
      assert.deepEqual(
        people.map((p) => p.length),
        [4, 2],
        'people in each region',
      );
      for (const [i, region] of REGIONS.entries()) assert.ok(mosaic.tryPlace(i, frames[i]!, [region]));
      const input = mosaic.frame();
      // side by side: 115 + 8 + 100 wide, 130 high, rounded up to the step
      assert.deepEqual(input.size, sizeStep ? { width: 224, height: 160 } : { width: SIDE, height: SIDE });
      const [found] = await detector.detect([input]);
      const byFrame = mosaic.distribute(found!);
      for (const [i, truths] of people.entries()) {
        const persons = byFrame.get(i)!.filter((d) => d.label === 'person');
        for (const truth of truths) {
          const best = Math.max(0, ...persons.map((p) => iou(p.box, truth)));
          assert.ok(best >= 0.5, `frame ${[300, 600][i]}: person at [${truth}], best IoU ${best.toFixed(2)}`);
        }
      }
    });
  }

  it('packs the regions of live cameras into shared inputs; a replay’s regions and whole frames get their own', async () => {
    const recording = recordingDetector(detector);
    // a batch waits up to a second for its inputs: submitting six frames on a loaded machine takes more than a few ms
    const scheduler = new DetectionScheduler(recording.detector, { maxBatch: 4, maxWaitMs: 1000 }, log);
    for (const camera of ['a', 'b', 'c', 'd']) scheduler.register(camera, 'newest');
    scheduler.register('replay', 'ordered');
    const results = await Promise.all([
      ...['a', 'b', 'c', 'd'].map((c, i) => scheduler.submit(c, frames[i % 2]!, [REGIONS[i % 2]!])),
      scheduler.submit('replay', frames[0]!, [REGIONS[0]!]),
      scheduler.submit('replay', frames[1]!),
    ]);
    scheduler.close();
    // the four cameras' regions fit one input; the replay's region and its whole frame get one each;
    // the model takes smaller inputs, so the region inputs are only as large as their regions
    assert.deepEqual(recording.calls.inputs, [3]);
    assert.ok(recording.calls.pixels[0]! < 2 * SIDE * SIDE, `${recording.calls.pixels[0]} pixels`);
    assert.ok(results.every((r) => r?.some((d) => d.label === 'person')));
    // the same region alone and packed with others: the same people
    const alone = results[4]!.filter((d) => d.label === 'person').map((d) => d.box);
    for (const box of alone)
      assert.ok(
        results[0]!.some((d) => iou(d.box, box) >= 0.9),
        `person at [${box}] in the shared input`,
      );
  });
});
