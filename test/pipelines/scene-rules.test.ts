import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Detection } from '../../inference/detector.ts';
import type { Box } from '../../inference/rect.ts';
import { SceneEngine } from '../../pipelines/scene/engine.ts';
import { parseScene } from '../../pipelines/scene/load.ts';
import type { Transition } from '../../pipelines/scene/rules/index.ts';

/**
 * Scene rules on synthetic tracks: detections are generated along known paths on a 1000×1000
 * frame (so a pixel is 0.001 of the frame), run through the real tracker and rules, and the
 * transitions are compared exactly.
 */

const W = 1000;
const H = 1000;
const FPS = 5;

function person(cx: number, feetY: number, label = 'person', score = 0.9, w = 40, h = 100): Detection {
  return { label, classId: 0, score, box: [cx - w / 2, feetY - h, cx + w / 2, feetY] as Box };
}

/** positions of one object from `from` to `to` (feet point, pixels) over `seconds` at FPS */
function path(from: [number, number], to: [number, number], seconds: number): [number, number][] {
  const n = Math.round(seconds * FPS);
  return Array.from({ length: n + 1 }, (_, i) => [
    from[0] + ((to[0] - from[0]) * i) / n,
    from[1] + ((to[1] - from[1]) * i) / n,
  ]);
}

function sceneYaml(rules: string, extra = ''): string {
  const tracker = extra.includes('tracker:') ? '' : 'tracker:\n  minHits: 1\n';
  return `name: test\n${tracker}${extra}rules:\n${rules}`;
}

/** the scene engine of a test scene with `rules` (and `extra` top-level settings) on the W×H frame */
function sceneEngine(rules: string, extra = ''): SceneEngine {
  return new SceneEngine(parseScene(sceneYaml(rules, extra), 's.yaml'), W, H);
}

/** runs frames (each a list of detections) through the engine; returns transitions with their times */
function run(engine: SceneEngine, frames: Detection[][], t0 = 0): (Transition & { t: number })[] {
  const out: (Transition & { t: number })[] = [];
  frames.forEach((dets, i) => {
    const t = Number((t0 + i / FPS).toFixed(3));
    for (const tr of engine.observe(dets, t).transitions) out.push({ ...tr, t });
  });
  return out;
}

const summary = (ts: (Transition & { t: number })[]) =>
  ts.map((t) => ({
    t: t.t,
    phase: t.phase,
    rule: t.rule,
    trackId: t.trackId,
    direction: t.direction,
    before: t.before,
    after: t.after,
  }));

describe('scene rules on synthetic tracks', () => {
  it('line: counts a crossing in each direction, one new+end pair per crossing', () => {
    const engine = sceneEngine('  - { id: road, type: line, line: [[0.5, 0.2], [0.5, 0.8]] }\n');
    // A=(500,200) → B=(500,800) points down; on screen its left is +x ... so walking right→left is "in"
    const there = path([710, 500], [310, 500], 4).map(([x, y]) => [person(x, y)]);
    const back = path([310, 500], [710, 500], 4).map(([x, y]) => [person(x, y)]);
    const ts = run(engine, [...there, ...back]);
    assert.deepEqual(
      ts.map((t) => [t.phase, t.direction, t.after.count]),
      [
        ['new', 'in', 1],
        ['end', 'in', 1],
        ['new', 'out', 1],
        ['end', 'out', 1],
      ],
    );
    assert.equal(new Set(ts.map((t) => t.key)).size, 2);
    assert.deepEqual(engine.counters(), { 'road.in': 1, 'road.out': 1 });
    assert.equal(
      ts[0]!.t,
      2.2,
      'walking steadily, the crossing is reported on the first detection beyond the dead band',
    );
  });

  it('line: feet jittering on the line, by any amount, while never settling on the far side cross nothing', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 60 }), { minLength: 4, maxLength: 40 }), (swings) => {
        const engine = sceneEngine('  - { id: road, type: line, line: [[0.5, 0.2], [0.5, 0.8]] }\n');
        // settled left of the line, then every frame alternately far over and back again
        const frames = [
          ...[440, 440, 440].map((x) => [person(x, 500)]),
          ...swings.map((d, i) => [person(i % 2 === 0 ? 500 + d : 440, 500)]),
        ];
        assert.deepEqual(run(engine, frames), []);
      }),
    );
  });

  it('line: one misplaced box over the line of an object standing or moving along it crosses nothing', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 60 }),
        fc.integer({ min: 3, max: 12 }),
        fc.integer({ min: -10, max: 10 }),
        (jump, settled, drift) => {
          const engine = sceneEngine('  - { id: road, type: line, line: [[0.5, 0.2], [0.5, 0.8]] }\n');
          // a wide object (a car: its box overlaps itself much when misplaced across the line, so
          // the tracker keeps it on the same track) just left of the dead band (10 px), still or
          // moving along the line; one box over it, then back where it was
          const car = (x: number, i: number) => [person(x, 400 + drift * i, 'car', 0.9, 200, 100)];
          const frames = [
            ...Array.from({ length: settled }, (_, i) => car(485, i)),
            car(512 + jump, settled),
            ...Array.from({ length: 4 }, (_, i) => car(485, settled + 1 + i)),
          ];
          assert.deepEqual(run(engine, frames), []);
        },
      ),
      { seed: 19_001 },
    );
  });

  it('line: a person walking over the line and hidden at once behind another is counted on one detection', () => {
    const engine = sceneEngine('  - { id: road, type: line, line: [[0.5, 0.2], [0.5, 0.8]] }\n');
    // walking left at 100 px/s, seen once beyond the dead band, then not again (occluded)
    const ts = run(
      engine,
      path([700, 500], [460, 500], 2.4).map(([x, y]) => [person(x, y)]),
    );
    assert.deepEqual(
      ts.map((t) => [t.phase, t.direction]),
      [
        ['new', 'in'],
        ['end', 'in'],
      ],
    );
  });

  it('line: a box the tracker only predicts carries no one over the line; the next detection does', () => {
    const engine = sceneEngine(
      '  - { id: road, type: line, line: [[0.5, 0.2], [0.5, 0.8]] }\n',
      'tracker:\n  minHits: 1\n  maxAgeSeconds: 3\n',
    );
    // walking right at 100 px/s, unseen for 2 s around the line (the prediction goes over it), then seen beyond it
    const seen = path([300, 500], [440, 500], 1.4).map(([x, y]) => [person(x, y)]);
    const unseen = Array.from({ length: 10 }, () => []);
    const after = path([660, 500], [700, 500], 0.4).map(([x, y]) => [person(x, y)]);
    const ts = run(engine, [...seen, ...unseen]);
    assert.deepEqual(ts, [], 'no crossing while the track is only predicted');
    const later = run(engine, after, (seen.length + unseen.length) / FPS);
    assert.deepEqual(
      later.map((t) => [t.phase, t.direction]),
      [
        ['new', 'out'],
        ['end', 'out'],
      ],
    );
    assert.deepEqual(
      later[0]!.box,
      person(660, 500).box,
      'the event box is the detection, not the prediction',
    );
  });

  it('zone: a box the tracker only predicts walks no one into a zone nor out of it; detections do', () => {
    const engine = sceneEngine(
      '  - { id: bay, type: zone, polygon: [[0.5, 0.2], [0.9, 0.2], [0.9, 0.8], [0.5, 0.8]] }\n',
      'tracker:\n  minHits: 1\n  maxAgeSeconds: 3\n',
    );
    // walking right at 100 px/s, unseen for 2 s while the prediction goes into the zone
    const seen = path([300, 500], [440, 500], 1.4).map(([x, y]) => [person(x, y)]);
    const unseen = Array.from({ length: 10 }, () => []);
    assert.deepEqual(run(engine, [...seen, ...unseen]), [], 'no entry while the track is only predicted');
    const inside = path([660, 500], [700, 500], 0.4).map(([x, y]) => [person(x, y)]);
    const entered = run(engine, inside, (seen.length + unseen.length) / FPS);
    assert.deepEqual(
      entered.map((t) => [t.phase, t.after.occupancy]),
      [['new', 1]],
    );
    // unseen again while the prediction walks out of the zone: the visit goes on until it is lost
    const t1 = (seen.length + unseen.length + inside.length) / FPS;
    const lost = run(
      engine,
      Array.from({ length: 20 }, () => []),
      t1,
    );
    assert.deepEqual(
      lost.map((t) => [t.phase, t.after.reason]),
      [['end', 'lost']],
    );
    assert.ok(lost[0]!.t >= t1 + 2.7, `the visit ended at ${lost[0]!.t} s, when the track was lost`);
  });

  it('zone: enter opens the visit, exit closes it with the dwell time; occupancy follows', () => {
    const engine = sceneEngine(
      '  - { id: plaza, type: zone, polygon: [[0.4, 0.4], [0.6, 0.4], [0.6, 0.6], [0.4, 0.6]] }\n',
    );
    const frames = path([310, 500], [710, 500], 4).map(([x, y]) => [person(x, y)]);
    const ts = run(engine, frames);
    assert.deepEqual(summary(ts), [
      {
        t: 1,
        phase: 'new',
        rule: 'plaza',
        trackId: 1,
        direction: undefined,
        before: { inside: false, occupancy: 0 },
        after: { inside: true, occupancy: 1 },
      },
      {
        t: 3,
        phase: 'end',
        rule: 'plaza',
        trackId: 1,
        direction: undefined,
        before: { inside: true, occupancy: 1 },
        after: { inside: false, occupancy: 0, dwellSeconds: 2 },
      },
    ]);
  });

  it('loitering: new once the stay exceeds the limit, updates while staying, end on leaving', () => {
    const engine = sceneEngine(
      '  - { id: bench, type: loitering, seconds: 10, polygon: [[0.4, 0.4], [0.61, 0.4], [0.61, 0.6], [0.4, 0.6]] }\n',
      'updateSeconds: 5\n',
    );
    const stay = Array.from({ length: 16 * FPS }, (_, i) => [person(500 + (i % 2), 500)]);
    const leave = path([500, 500], [900, 500], 4).map(([x, y]) => [person(x, y)]);
    const ts = run(engine, [...stay, ...leave]);
    assert.deepEqual(
      ts.map((t) => [t.t, t.phase, t.after.dwellSeconds]),
      [
        [10.2, 'new', 10.2],
        [15.2, 'update', 15.2],
        [17.2, 'end', 17.2],
      ],
    );
    assert.equal(ts[2]!.after.reason, 'left');
  });

  it('crowding: more than N for T seconds opens one crowd event; it ends after clearSeconds below N', () => {
    const engine = sceneEngine(
      '  - { id: gate, type: crowding, count: 3, seconds: 2, clearSeconds: 1, polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]] }\n',
      'tracker:\n  minHits: 1\n  maxAgeSeconds: 0.5\n',
    );
    const four = (jitter: number) => [200, 350, 500, 650].map((x) => person(x + jitter, 500));
    const crowd = Array.from({ length: 4 * FPS }, (_, i) => four(i % 2));
    const three = Array.from({ length: 3 * FPS }, (_, i) => four(i % 2).slice(0, 3));
    const ts = run(engine, [...crowd, ...three]);
    // the fourth person's track outlives its last detection (3.8 s) by maxAgeSeconds, then 1 s to clear
    assert.deepEqual(
      ts.map((t) => [t.t, t.phase, t.trackId, t.before.count, t.after.count]),
      [
        [2, 'new', -1, 3, 4],
        [5.4, 'end', -1, 4, 3],
      ],
    );
    assert.equal(ts[0]!.key, ts[1]!.key);
  });

  it('wrong-way: movement against the allowed direction opens an event, the allowed way does not', () => {
    const engine = sceneEngine('  - { id: oneway, type: wrong-way, direction: [1, 0], windowSeconds: 1 }\n');
    const allowed = path([100, 300], [400, 300], 3).map(([x, y]) => person(x, y));
    const against = path([900, 700], [600, 700], 3).map(([x, y]) => person(x, y));
    const ts = run(
      engine,
      allowed.map((a, i) => [a, against[i]!]),
    );
    assert.deepEqual(
      ts.map((t) => [t.t, t.phase, t.trackId, t.after.headingDeg]),
      [[0.6, 'new', 2, 180]],
    );
  });

  it('stationary: a vehicle standing still past the limit opens parked-too-long; driving off ends it', () => {
    const engine = sceneEngine(
      '  - { id: parked, type: stationary, seconds: 10, classes: [car, truck] }\n',
      'updateSeconds: 100\n',
    );
    const car = (x: number, label = 'car') => person(x, 300, label, 0.8, 120, 60);
    const parked = Array.from({ length: 12 * FPS }, (_, i) => [
      car(500 + (i % 3), i % 7 === 0 ? 'truck' : 'car'),
    ]);
    const drive = path([500, 300], [900, 300], 2).map(([x]) => [car(x)]);
    const walker = Array.from({ length: 15 * FPS }, (_, i) => person(100, 800 - i));
    const frames = [...parked, ...drive].map((f, i) => [...f, walker[i]!]);
    const ts = run(engine, frames);
    assert.deepEqual(
      ts.map((t) => [t.t, t.phase, t.label, t.after.stationarySeconds, t.after.reason]),
      [
        [10.2, 'new', 'car', 10.2, undefined],
        [12.2, 'end', 'car', 12.2, 'moved'],
      ],
    );
  });

  it('the tracker keeps an id across frames without detections (motion-skipped) and ends it after maxAge', () => {
    const engine = sceneEngine('  - { id: plaza, type: zone, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]] }\n');
    const a = engine.observe([person(500, 500)], 0).tracks;
    const b = engine.observe([person(510, 500)], 1.2).tracks;
    assert.deepEqual([a[0]!.id, b[0]!.id], [1, 1]);
    const gone = engine.observe([], 3);
    assert.equal(gone.tracks.length, 0);
    assert.deepEqual(
      gone.transitions.map((t) => [t.phase, t.after.reason]),
      [['end', 'lost']],
    );
  });

  it('the tracker carries a track the frame’s moving regions did not cover, and ages it where they do', () => {
    const engine = sceneEngine(
      '  - { id: plaza, type: zone, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]] }\n',
      'tracker:\n  minHits: 2\n  maxAgeSeconds: 1.5\n',
    );
    const elsewhere: Box[] = [[0, 0, 200, 200]];
    const over: Box[] = [[400, 300, 600, 600]];
    // tentative after one whole frame; a region elsewhere does not drop it for missing its second hit
    assert.equal(engine.observe([person(500, 500)], 0).tracks.length, 0);
    assert.equal(engine.observe([], 0.2, elsewhere).tracks.length, 0);
    const confirmed = engine.observe([person(502, 500)], 1).tracks;
    assert.deepEqual(
      confirmed.map((t) => t.id),
      [1],
    );
    // confirmed: regions elsewhere for longer than maxAgeSeconds leave it as it is
    for (const t of [1.2, 2, 2.8, 3.4]) {
      const step = engine.observe([], t, elsewhere);
      assert.deepEqual(
        step.tracks.map((tr) => tr.id),
        [1],
        `carried at ${t} s`,
      );
      assert.deepEqual(step.transitions, []);
    }
    // a region over it that finds nothing: it was last seen 2.6 s ago, so it is lost
    const gone = engine.observe([], 3.6, over);
    assert.equal(gone.tracks.length, 0);
    assert.deepEqual(
      gone.transitions.map((t) => [t.phase, t.after.reason]),
      [['end', 'lost']],
    );
  });
});
