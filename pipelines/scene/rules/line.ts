import { type Point, segmentsIntersect, sideOf } from '../geometry.ts';
import type { LineRule } from '../schema.ts';
import type { RuleEvaluator, SceneObject, Transition } from './types.ts';

/**
 * the dead band grows with the object: this share of its height (a person's feet jitter by a few
 * pixels from frame to frame as legs and box edges move; a bigger, nearer person jitters more)
 */
const BAND_PER_HEIGHT = 0.1;
/** observations in a row beyond the band on the new side that make a crossing */
const CONFIRMATIONS = 2;
/**
 * one observation does when the track was already moving across, towards the new side, at this
 * many bands a second at its previous observation: a person walking over the line and then hidden
 * by another (the crowd at a footway) is counted, where a single misplaced box of an object that
 * stood or moved along the line is not (the velocity it drags along is not looked at)
 */
const MOVING_BANDS_PER_S = 1;

interface LineState {
  /** the side the object is settled on, and its last position clearly on that side */
  side: number;
  p: Point;
  /** observations in a row on the other side since it last stood clearly on `side` */
  pending: number;
  /** the track's filtered velocity at its previous observation (before this frame's box moved it) */
  v: Point;
}

/**
 * Line crossing with direction. The line is directed A→B; on screen, standing at A and looking at
 * B, an object moving from the left of the line to the right crosses "in", the other way "out".
 * A crossing is instantaneous: its event opens and closes at once (`new` then `end`).
 *
 * Decided on the track's history, only from frames where the track was detected (a box the
 * tracker only predicted moves no one over a line): an object crosses once its anchor, having
 * stood clearly on one side (beyond the dead band: `hysteresis` or a share of its height, the
 * larger), is seen beyond the band on the other side in `CONFIRMATIONS` detections in a row (in
 * one when the track was already moving across towards that side), its path from the last
 * clear position passing through the segment. Feet jittering on the line, or a
 * single misplaced box, cross nothing; stepping over and back counts both ways only when the
 * object settled on the far side.
 */
export class LineEvaluator implements RuleEvaluator {
  private state = new Map<number, LineState>();
  private counts = { in: 0, out: 0 };

  constructor(private readonly rule: LineRule) {}

  get id(): string {
    return this.rule.id;
  }

  evaluate(objects: readonly SceneObject[], t: number): Transition[] {
    const [a, b] = this.rule.line;
    const length = Math.hypot(b[0] - a[0], b[1] - a[1]);
    const out: Transition[] = [];
    const present = new Set<number>();
    for (const o of objects) {
      const id = o.track.id;
      present.add(id);
      if (o.track.lastSeen !== t) continue;
      const band = Math.max(this.rule.hysteresis, BAND_PER_HEIGHT * o.height);
      const distance = sideOf(a, b, o.anchor) / length;
      const side = distance > band ? 1 : distance < -band ? -1 : 0;
      const s = this.state.get(id);
      if (!s) {
        if (side !== 0) this.state.set(id, { side, p: o.anchor, pending: 0, v: o.velocity });
        continue;
      }
      const prior = s.v;
      s.v = o.velocity;
      if (side === 0) continue;
      if (side === s.side) {
        s.p = o.anchor;
        s.pending = 0;
        continue;
      }
      if (!segmentsIntersect(s.p, o.anchor, a, b)) {
        // went round the end of the line: now on the other side without crossing it
        this.state.set(id, { side, p: o.anchor, pending: 0, v: o.velocity });
        continue;
      }
      s.pending++;
      // how fast the track was moving across the line, towards the new side, before this box
      const across = (side * sideOf([0, 0], [b[0] - a[0], b[1] - a[1]], prior)) / length;
      if (s.pending < CONFIRMATIONS && across < MOVING_BANDS_PER_S * band) continue;
      const from = s.side;
      this.state.set(id, { side, p: o.anchor, pending: 0, v: o.velocity });
      // sideOf < 0 is the left of A→B on screen (y grows downwards)
      const direction: 'in' | 'out' = from < 0 ? 'in' : 'out';
      this.counts[direction]++;
      if (!this.rule.directions.includes(direction)) continue;
      const base = {
        key: `${this.rule.id}:${id}:${t}`,
        rule: this.rule.id,
        ruleType: 'line' as const,
        label: o.track.label,
        trackId: id,
        line: this.rule.id,
        direction,
        score: o.track.score,
        box: o.track.detectionBox,
        before: { side: from < 0 ? 'left' : 'right', count: this.counts[direction] - 1 },
        after: { side: side < 0 ? 'left' : 'right', count: this.counts[direction] },
      };
      out.push({ ...base, phase: 'new' }, { ...base, phase: 'end' });
    }
    for (const id of [...this.state.keys()]) if (!present.has(id)) this.state.delete(id);
    return out;
  }

  counters(): Record<string, number> {
    return { [`${this.rule.id}.in`]: this.counts.in, [`${this.rule.id}.out`]: this.counts.out };
  }

  close(): Transition[] {
    this.state.clear();
    return [];
  }
}
