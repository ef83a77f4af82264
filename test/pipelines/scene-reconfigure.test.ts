import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Detection } from '../../inference/detector.ts';
import type { Box } from '../../inference/rect.ts';
import { SceneEngine } from '../../pipelines/scene/engine.ts';
import { parseScene } from '../../pipelines/scene/load.ts';
import type { Scene } from '../../pipelines/scene/schema.ts';

/**
 * A scene applied to a running scene engine (SceneEngine.reconfigure), for any mix of rules kept,
 * changed, removed and added, with or without new tracker settings: exactly the open events of the
 * rules removed or changed end (all of them when the tracker restarts), with the reason; the rules
 * kept go on with their open events and counts; changed and new rules start afresh and see the
 * objects already there on the next frame.
 */

const W = 1000;
const H = 1000;

function person(cx: number, feetY: number): Detection {
  return { label: 'person', classId: 0, score: 0.9, box: [cx - 20, feetY - 100, cx + 20, feetY] as Box };
}

/** a zone covering the frame but for a margin: `variant` changes its polygon, not what it covers */
function zone(id: string, variant: number): string {
  const m = 0.01 + variant * 0.001;
  return `  - id: ${id}\n    type: zone\n    polygon: [[${m}, ${m}], [${1 - m}, ${m}], [${1 - m}, ${1 - m}], [${m}, ${1 - m}]]\n`;
}

function scene(rules: string, maxAge = 1.5): Scene {
  return parseScene(
    `name: test\ntracker:\n  minHits: 1\n  maxAgeSeconds: ${maxAge}\nrules:\n${rules}`,
    's.yaml',
  );
}

type Fate = 'keep' | 'change' | 'remove';

describe('a scene applied to a running scene engine', () => {
  it('ends the open events of exactly the rules removed or changed, and keeps the others going', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom<Fate>('keep', 'change', 'remove'), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 3 }),
        fc.boolean(),
        fc.boolean(),
        (fates, people, added, newTracker) => {
          const ids = fates.map((_, i) => `z${i}`);
          const engine = new SceneEngine(scene(ids.map((id) => zone(id, 0)).join('')), W, H);
          const frame = Array.from({ length: people }, (_, k) => person(200 + k * 250, 600));
          let t = 0;
          for (let i = 0; i < 3; i++, t += 0.2) engine.observe(frame, t);
          const counters = engine.counters();

          const nextRules = ids
            .map((id, i) => (fates[i] === 'remove' ? '' : zone(id, fates[i] === 'change' ? 1 : 0)))
            .join('');
          const next = scene(
            nextRules + (added || nextRules === '' ? zone('extra', 0) : ''),
            newTracker ? 2 : 1.5,
          );
          const ended = engine.reconfigure(next, t);

          const expectedEnded = ids.filter((_, i) => newTracker || fates[i] !== 'keep');
          assert.deepEqual(
            [...new Set(ended.map((e) => e.rule))].sort(),
            expectedEnded.sort(),
            'the rules whose events end',
          );
          assert.ok(ended.every((e) => e.phase === 'end'));
          for (const e of ended) {
            const i = ids.indexOf(e.rule);
            const why = newTracker
              ? 'tracker settings changed'
              : `rule ${e.rule} ${fates[i] === 'remove' ? 'removed' : 'changed'}`;
            assert.equal(e.after.reason, `scene changed: ${why}`);
          }
          for (const id of expectedEnded)
            assert.equal(
              ended.filter((e) => e.rule === id).length,
              people,
              `${id} ends one event per person`,
            );

          const step = engine.observe(frame, t + 0.2);
          const started = step.transitions.filter((tr) => tr.phase === 'new');
          const fresh = next.rules
            .map((r) => r.id)
            .filter((id) => !ids.includes(id) || expectedEnded.includes(id));
          assert.deepEqual(
            [...new Set(started.map((s) => s.rule))].sort(),
            fresh.sort(),
            'only changed and new rules start events, one per person there',
          );
          for (const id of fresh) assert.equal(started.filter((s) => s.rule === id).length, people);
          for (const [i, id] of ids.entries()) {
            if (fates[i] === 'keep' && !newTracker)
              assert.equal(engine.counters()[`${id}.occupancy`], counters[`${id}.occupancy`]);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
