import { type Point, segmentsIntersect, sideOf } from '../geometry.ts';
import type { LineRule } from '../schema.ts';
import type { RuleEvaluator, SceneObject, Transition } from './types.ts';

/**
 * Line crossing with direction. The line is directed A→B; on screen, standing at A and looking at
 * B, an object moving from the left of the line to the right crosses "in", the other way "out".
 * A crossing is instantaneous: its event opens and closes at once (`new` then `end`).
 */
export class LineEvaluator implements RuleEvaluator {
  /** per track: the last anchor position that was clearly (beyond the dead band) on one side, and that side's sign */
  private last = new Map<number, { p: Point; side: number }>();
  private counts = { in: 0, out: 0 };

  constructor(private readonly rule: LineRule) {}

  get id(): string {
    return this.rule.id;
  }

  evaluate(objects: readonly SceneObject[], t: number): Transition[] {
    const [a, b] = this.rule.line;
    const length = Math.hypot(b[0] - a[0], b[1] - a[1]);
    const band = this.rule.hysteresis;
    const out: Transition[] = [];
    const seen = new Set<number>();
    for (const o of objects) {
      const id = o.track.id;
      seen.add(id);
      const distance = sideOf(a, b, o.anchor) / length;
      const side = distance > band ? 1 : distance < -band ? -1 : 0;
      if (side === 0) continue;
      const prev = this.last.get(id);
      this.last.set(id, { p: o.anchor, side });
      if (!prev || prev.side === side || !segmentsIntersect(prev.p, o.anchor, a, b)) continue;
      // sideOf < 0 is the left of A→B on screen (y grows downwards)
      const direction: 'in' | 'out' = prev.side < 0 ? 'in' : 'out';
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
        box: o.track.box,
        before: { side: prev.side < 0 ? 'left' : 'right', count: this.counts[direction] - 1 },
        after: { side: side < 0 ? 'left' : 'right', count: this.counts[direction] },
      };
      out.push({ ...base, phase: 'new' }, { ...base, phase: 'end' });
    }
    for (const id of [...this.last.keys()]) if (!seen.has(id)) this.last.delete(id);
    return out;
  }

  counters(): Record<string, number> {
    return { [`${this.rule.id}.in`]: this.counts.in, [`${this.rule.id}.out`]: this.counts.out };
  }

  close(): Transition[] {
    this.last.clear();
    return [];
  }
}
