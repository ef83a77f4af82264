import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileSchema } from '../../common/schema.ts';
import type { Detection } from '../../inference/detector.ts';
import type { Box } from '../../inference/rect.ts';
import {
  agreementShare,
  DEFAULT_HARVEST_CONFIG,
  frameHash,
  type HarvestConfig,
  HarvestConfigSchema,
  type HarvestInput,
  HarvestSelector,
  hashDistance,
  layoutOf,
} from '../../pipelines/harvest/index.ts';
import { Tracker } from '../../pipelines/tracking/tracker.ts';

const W = 768;
const H = 576;
const MiB = 1024 * 1024;
/** every test's selector: no minimum interval unless it says so */
const CONFIG: HarvestConfig = { ...DEFAULT_HARVEST_CONFIG, minIntervalS: 0 };

const person = (x: number, score = 0.9, y = 300): Detection => ({
  label: 'person',
  classId: 0,
  score,
  box: [x, y - 80, x + 30, y],
});

/** a clock the test moves */
function testClock(start = Date.UTC(2026, 0, 1)) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

let nextHash = 1n;
/** hashes far apart from each other (no two frames are near-duplicates unless a test says so) */
const freshHash = () => {
  nextHash = (nextHash * 6364136223846793005n + 1442695040888963407n) & 0xffff_ffff_ffff_ffffn;
  return nextHash;
};

const frame = ({
  hash,
  ...over
}: Partial<Omit<HarvestInput, 'hash'>> & { hash?: bigint } = {}): HarvestInput => {
  const h = hash ?? freshHash();
  return { camera: 'cam-1', t: 0, width: W, height: H, detections: [], tracks: [], hash: () => h, ...over };
};

/** a grey gradient with a dark block at `blockX`, plus ±`noise` of pseudo-random noise */
function picture(
  blockX: number,
  noise: number,
  seed = 1,
): { pixels: Uint8Array; width: number; height: number; channels: 3 } {
  const width = 320;
  const height = 240;
  const pixels = new Uint8Array(width * height * 3);
  let s = seed;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      s = (s * 1103515245 + 12345) & 0x7fffffff;
      const inBlock = x >= blockX && x < blockX + 80 && y >= 60 && y < 180;
      const v = (inBlock ? 30 : 60 + (x * 150) / width) + ((s % (2 * noise + 1)) - noise);
      const b = Math.max(0, Math.min(255, Math.round(v)));
      pixels.set([b, b, b], (y * width + x) * 3);
    }
  }
  return { pixels, width, height, channels: 3 };
}

describe('harvest selector', () => {
  it('has the documented defaults in its schema (60 frames an hour, 50 MiB a day)', () => {
    const filled = compileSchema(HarvestConfigSchema).withDefaults({});
    assert.deepEqual(filled, DEFAULT_HARVEST_CONFIG);
    assert.equal(DEFAULT_HARVEST_CONFIG.framesPerHour, 60);
    assert.equal(DEFAULT_HARVEST_CONFIG.megabytesPerDay, 50);
  });

  it('keeps a frame with a detection in the uncertain band, not one with only sure or faint ones', () => {
    const clock = testClock();
    const s = new HarvestSelector(CONFIG, clock.now);
    assert.equal(s.consider(frame({ detections: [person(100, 0.9), person(300, 0.1)] })), undefined);
    const d = s.consider(frame({ t: 0.2, detections: [person(100, 0.9), person(300, 0.4)] }));
    assert.deepEqual(d?.reasons, ['uncertain']);
    assert.equal(d?.details.uncertain, 1);
  });

  it('keeps a frame where a track lost at the previous frame is found again within a second (real tracker)', () => {
    const clock = testClock();
    const s = new HarvestSelector(CONFIG, clock.now);
    const tracker = new Tracker(
      { highScore: 0.5, lowScore: 0.25, matchIou: 0.25, maxAgeSeconds: 1.5, minHits: 2 },
      [0, 0, W, H],
    );
    const reasonsAt: Record<number, string[] | undefined> = {};
    // 5 frames/s: seen in frames 0-4, missed in 5 and 6, seen again in 7 (0.6 s after it was lost)
    for (let i = 0; i < 10; i++) {
      const t = i / 5;
      const detections = i === 5 || i === 6 ? [] : [person(100 + i * 2)];
      const tracks = tracker.update(detections, t);
      reasonsAt[i] = s.consider(frame({ t, detections, tracks }))?.reasons;
    }
    assert.deepEqual(reasonsAt[7], ['flicker']);
    for (const i of [0, 1, 2, 3, 4, 5, 6, 8, 9]) assert.equal(reasonsAt[i], undefined, `frame ${i}`);
  });

  it('does not count a track found again after more than flickerWithinS as a flicker', () => {
    const s = new HarvestSelector(CONFIG, testClock().now);
    const tracks = (t: number, lastSeen: number) => [
      { id: 1, lastSeen },
      { id: 2, lastSeen: t },
    ];
    s.consider(frame({ t: 0, tracks: tracks(0, 0) }));
    s.consider(frame({ t: 0.6, tracks: tracks(0.6, 0) }));
    assert.equal(s.consider(frame({ t: 1.2, tracks: tracks(1.2, 1.2) })), undefined);
  });

  it('judges no flicker on a late frame (a spot check answered after newer frames), nor remembers its tracks', () => {
    const s = new HarvestSelector(CONFIG, testClock().now);
    s.consider(frame({ t: 0, tracks: [{ id: 1, lastSeen: 0 }] }));
    s.consider(frame({ t: 0.2, tracks: [{ id: 1, lastSeen: 0 }] }));
    assert.equal(s.consider(frame({ t: 0.1, tracks: [{ id: 1, lastSeen: 0.1 }] })), undefined, 'late');
    assert.deepEqual(s.consider(frame({ t: 0.4, tracks: [{ id: 1, lastSeen: 0.4 }] }))?.reasons, ['flicker']);
  });

  it('keeps a frame with a moving region where nothing was detected, not one where something was', () => {
    const s = new HarvestSelector(CONFIG, testClock().now);
    const region: Box = [80, 200, 180, 320];
    assert.equal(s.consider(frame({ motion: [region], detections: [person(100)] })), undefined);
    // too small a region (below motionMinShare of the frame) is noise
    assert.equal(s.consider(frame({ t: 0.2, motion: [[10, 10, 20, 20]] })), undefined);
    const d = s.consider(
      frame({ t: 0.4, motion: [region, [400, 200, 500, 320]], detections: [person(100)] }),
    );
    assert.deepEqual(d?.reasons, ['motion-miss']);
    assert.equal(d?.details.motionMisses, 1);
  });

  it('keeps a spot-checked frame where the reference model disagrees with the running one', () => {
    const s = new HarvestSelector(CONFIG, testClock().now);
    const running = [person(100), person(300)];
    assert.equal(
      s.consider(frame({ detections: running, spotCheck: [person(102), person(301)] })),
      undefined,
    );
    const d = s.consider(
      frame({ t: 0.2, detections: running, spotCheck: [person(102), person(500), person(600)] }),
    );
    assert.deepEqual(d?.reasons, ['disagreement']);
    assert.equal(d?.details.agreement, 1 / 3);
    assert.equal(agreementShare([], []), 1);
    // another class at the same place is not agreement
    assert.equal(agreementShare([person(100)], [{ ...person(100), label: 'car', classId: 2 }]), 0);
  });

  it('gives every reason that applies', () => {
    const s = new HarvestSelector(CONFIG, testClock().now);
    const d = s.consider(
      frame({ detections: [person(100, 0.4)], motion: [[400, 200, 500, 320]], spotCheck: [person(600)] }),
    );
    assert.deepEqual(d?.reasons, ['uncertain', 'motion-miss', 'disagreement']);
  });

  it('keeps at most framesPerHour frames in any hour, and at least minIntervalS apart', () => {
    const clock = testClock();
    const s = new HarvestSelector({ ...CONFIG, framesPerHour: 10, minIntervalS: 30 }, clock.now);
    const offer = () => {
      const d = s.consider(frame({ detections: [person(100, 0.4)] }));
      return d !== undefined && s.commit(d, 1000);
    };
    assert.equal(offer(), true);
    clock.advance(10_000);
    assert.equal(offer(), false, 'within minIntervalS of the last');
    let kept = 1;
    for (let i = 0; i < 40; i++) {
      clock.advance(30_000);
      if (offer()) kept++;
    }
    // 20 minutes and 10 s: the hour's 10 frames, then nothing
    assert.equal(kept, 10);
    assert.equal(s.budgetUse().framesLastHour, 10);
    clock.advance(3_600_000);
    assert.equal(offer(), true, 'a new hour');
  });

  it('keeps at most megabytesPerDay MiB in any 24 hours, refusing a JPEG that would pass it', () => {
    const clock = testClock();
    const s = new HarvestSelector({ ...CONFIG, framesPerHour: 3600, megabytesPerDay: 1 }, clock.now);
    const offer = (bytes: number) => {
      clock.advance(1000);
      const d = s.consider(frame({ detections: [person(100, 0.4)] }));
      return d !== undefined && s.commit(d, bytes);
    };
    assert.equal(offer(600 * 1024), true);
    assert.equal(offer(600 * 1024), false, 'would pass 1 MiB');
    assert.equal(offer(424 * 1024), true, 'exactly 1 MiB');
    assert.equal(offer(1), false);
    assert.equal(s.budgetUse().bytesLastDay, MiB);
    clock.advance(24 * 3_600_000);
    assert.equal(offer(600 * 1024), true, 'a new day');
    assert.deepEqual(
      { kept: s.stats().kept, keptBytes: s.stats().keptBytes },
      { kept: 3, keptBytes: 1624 * 1024 },
    );
  });

  it('carries the spent budget over a restart (the history the box kept)', () => {
    const clock = testClock();
    const now = clock.now();
    const history = Array.from({ length: 5 }, (_, i) => ({ at: now - 60_000 * (i + 1), bytes: 1000 }));
    const s = new HarvestSelector({ ...CONFIG, framesPerHour: 5 }, clock.now, history);
    assert.equal(s.consider(frame({ detections: [person(100, 0.4)] })), undefined);
    assert.equal(s.stats().overBudget, 1);
    assert.deepEqual(s.budgetUse(), { framesLastHour: 5, bytesLastDay: 5000 });
  });

  it('skips a near-duplicate of a frame the camera kept, not of another camera, not another scene', () => {
    const a = frameHash(picture(40, 0));
    const aNoisy = frameHash(picture(40, 6, 7));
    const b = frameHash(picture(200, 0));
    assert.ok(
      hashDistance(a, aNoisy) <= DEFAULT_HARVEST_CONFIG.dedupBits,
      `noise: ${hashDistance(a, aNoisy)} bits`,
    );
    assert.ok(
      hashDistance(a, b) > DEFAULT_HARVEST_CONFIG.dedupBits,
      `moved block: ${hashDistance(a, b)} bits`,
    );

    const s = new HarvestSelector(CONFIG, testClock().now);
    const unsure = [person(100, 0.4)];
    const first = s.consider(frame({ detections: unsure, hash: a }));
    assert.ok(first && s.commit(first, 1000));
    assert.equal(s.consider(frame({ t: 0.2, detections: unsure, hash: aNoisy })), undefined);
    assert.equal(s.stats().duplicates, 1);
    assert.ok(s.consider(frame({ t: 0.4, detections: unsure, hash: b })));
    assert.ok(s.consider(frame({ camera: 'cam-2', t: 0.4, detections: unsure, hash: aNoisy })));
  });

  it('on a fixed camera, a frame whose hash barely moved but whose people did is not a duplicate', () => {
    const s = new HarvestSelector(CONFIG, testClock().now);
    const first = s.consider(frame({ detections: [person(100, 0.4)], hash: 9n }));
    assert.ok(first && s.commit(first, 1000));
    // the same picture to the hash (people are a small part of it), the person two cells on
    assert.ok(s.consider(frame({ t: 0.2, detections: [person(300, 0.4)], hash: 9n })));
    // one more person in view
    assert.ok(s.consider(frame({ t: 0.4, detections: [person(100, 0.4), person(600, 0.9)], hash: 9n })));
    // the same layout again: a duplicate
    assert.equal(s.consider(frame({ t: 0.6, detections: [person(110, 0.4)], hash: 9n })), undefined);
    assert.equal(s.stats().duplicates, 1);
  });

  it('a layout does not depend on the order of the detections, and bounds any box to the grid (property)', () => {
    const box = fc.tuple(
      fc.double({ min: -1e6, max: 1e6, noNaN: true }),
      fc.double({ min: -1e6, max: 1e6, noNaN: true }),
      fc.double({ min: -1e6, max: 1e6, noNaN: true }),
      fc.double({ min: -1e6, max: 1e6, noNaN: true }),
    );
    const detection = fc.record({
      label: fc.constantFrom('person', 'car'),
      classId: fc.constant(0),
      score: fc.double({ min: 0, max: 1, noNaN: true }),
      box,
    });
    fc.assert(
      fc.property(fc.array(detection, { maxLength: 20 }), fc.integer({ min: 0, max: 8000 }), (ds, size) => {
        const a = layoutOf(ds, size, size);
        assert.equal(layoutOf([...ds].reverse(), size, size), a);
        for (const cell of a ? a.split(' ') : []) assert.match(cell, /^(person|car)@[0-7],[0-7]$/);
      }),
    );
  });

  it('a decided frame that is never committed does not count as kept for duplicates', () => {
    const s = new HarvestSelector(CONFIG, testClock().now);
    const unsure = [person(100, 0.4)];
    assert.ok(s.consider(frame({ detections: unsure, hash: 5n })));
    assert.ok(s.consider(frame({ t: 0.2, detections: unsure, hash: 5n })));
  });

  it('hashes a frame only when it is a candidate, at most once, whatever the sequence (property)', () => {
    const step = fc.record({
      camera: fc.constantFrom('a', 'b'),
      detections: fc.array(
        fc.record({ x: fc.integer({ min: 0, max: 600 }), score: fc.double({ min: 0, max: 1, noNaN: true }) }),
        { maxLength: 4 },
      ),
      hash: fc.bigInt({ min: 0n, max: 15n }),
      commit: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 80 }), (steps) => {
        const clock = testClock();
        const s = new HarvestSelector({ ...CONFIG, minIntervalS: 0 }, clock.now);
        let t = 0;
        for (const st of steps) {
          clock.advance(200);
          t += 0.2;
          let calls = 0;
          const dets = st.detections.map((d) => person(d.x, d.score));
          const candidate = dets.some(
            (d) => d.score >= CONFIG.uncertain.low && d.score < CONFIG.uncertain.high,
          );
          const d = s.consider({
            ...frame({ camera: st.camera, t, detections: dets }),
            hash: () => {
              calls++;
              return st.hash;
            },
          });
          assert.ok(calls <= 1, `hashed ${calls} times`);
          assert.equal(
            calls,
            candidate ? 1 : 0,
            `${candidate ? 'a candidate' : 'no candidate'} hashed ${calls} times`,
          );
          if (d) assert.equal(d.hash, st.hash);
          if (d && st.commit) s.commit(d, 1000);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('never keeps more than the budget, whatever the sequence of frames, sizes and clock (property)', () => {
    const step = fc.record({
      advanceMs: fc.oneof(fc.integer({ min: 0, max: 120_000 }), fc.integer({ min: -60_000, max: 7_200_000 })),
      camera: fc.constantFrom('a', 'b', 'c'),
      unsure: fc.boolean(),
      hash: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      bytes: fc.oneof(fc.integer({ min: 0, max: 400_000 }), fc.constantFrom(-1, Number.NaN, 5 * MiB)),
      commit: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.record({
          framesPerHour: fc.integer({ min: 1, max: 20 }),
          megabytesPerDay: fc.integer({ min: 1, max: 3 }),
          minIntervalS: fc.constantFrom(0, 5, 60),
        }),
        fc.array(step, { maxLength: 300 }),
        (budget, steps) => {
          const clock = testClock();
          const s = new HarvestSelector({ ...CONFIG, ...budget }, clock.now);
          const kept: { at: number; bytes: number }[] = [];
          let t = 0;
          let monotone = clock.now();
          for (const st of steps) {
            clock.advance(st.advanceMs);
            t += 0.2;
            monotone = Math.max(monotone, clock.now());
            const d = s.consider(
              frame({ camera: st.camera, t, detections: st.unsure ? [person(100, 0.4)] : [], hash: st.hash }),
            );
            if (d && st.commit && s.commit(d, st.bytes)) kept.push({ at: monotone, bytes: st.bytes });
          }
          for (const k of kept) {
            const hour = kept.filter((o) => o.at >= k.at && o.at < k.at + 3_600_000).length;
            assert.ok(hour <= budget.framesPerHour, `${hour} frames in the hour from ${k.at}`);
            const day = kept
              .filter((o) => o.at >= k.at && o.at < k.at + 86_400_000)
              .reduce((n, o) => n + o.bytes, 0);
            assert.ok(day <= budget.megabytesPerDay * MiB, `${day} bytes in the day from ${k.at}`);
          }
          for (let i = 1; i < kept.length; i++)
            assert.ok(kept[i]!.at - kept[i - 1]!.at >= budget.minIntervalS * 1000, 'minIntervalS');
        },
      ),
      { numRuns: 200 },
    );
  });
});
