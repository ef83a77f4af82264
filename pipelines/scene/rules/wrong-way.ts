import { type Point, pointInPolygon } from '../geometry.ts';
import type { WrongWayRule } from '../schema.ts';
import type { RuleEvaluator, SceneObject, Transition } from './types.ts';

interface History {
  points: { t: number; p: Point }[];
  open: boolean;
  object: SceneObject;
  heading: number;
}

const degrees = (rad: number) => (rad * 180) / Math.PI;

/**
 * An object moving against the allowed direction: over the last `windowSeconds` its anchor moved at
 * least `minDisplacement` and the angle to `direction` exceeds 90° + `toleranceDeg`. The event ends
 * when it moves the allowed way again, leaves the area or is lost.
 */
export class WrongWayEvaluator implements RuleEvaluator {
  private histories = new Map<number, History>();
  private readonly allowed: number;

  constructor(private readonly rule: WrongWayRule) {
    this.allowed = Math.atan2(rule.direction[1], rule.direction[0]);
  }

  get id(): string {
    return this.rule.id;
  }

  private transition(
    id: number,
    h: History,
    phase: Transition['phase'],
    extra: Record<string, unknown> = {},
  ): Transition {
    return {
      key: `${this.rule.id}:${id}`,
      phase,
      rule: this.rule.id,
      ruleType: 'wrong-way',
      label: h.object.track.label,
      trackId: id,
      ...(this.rule.polygon ? { zone: this.rule.id } : {}),
      score: h.object.track.score,
      box: h.object.track.box,
      before: { wrongWay: phase !== 'new' },
      after: { wrongWay: phase !== 'end', headingDeg: Number(h.heading.toFixed(1)), ...extra },
    };
  }

  evaluate(objects: readonly SceneObject[], t: number): Transition[] {
    const out: Transition[] = [];
    const seen = new Set<number>();
    for (const o of objects) {
      if (this.rule.polygon && !pointInPolygon(o.anchor, this.rule.polygon)) continue;
      const id = o.track.id;
      seen.add(id);
      const h = this.histories.get(id) ?? { points: [], open: false, object: o, heading: 0 };
      h.object = o;
      h.points.push({ t, p: o.anchor });
      while (h.points.length > 2 && t - h.points[1]!.t >= this.rule.windowSeconds) h.points.shift();
      this.histories.set(id, h);
      const start = h.points[0]!;
      if (t - start.t < this.rule.windowSeconds * 0.5) continue;
      const dx = o.anchor[0] - start.p[0];
      const dy = o.anchor[1] - start.p[1];
      if (Math.hypot(dx, dy) < this.rule.minDisplacement) continue;
      h.heading = degrees(Math.atan2(dy, dx));
      let off = Math.abs(degrees(Math.atan2(dy, dx) - this.allowed)) % 360;
      if (off > 180) off = 360 - off;
      const wrong = off > 90 + this.rule.toleranceDeg;
      if (wrong && !h.open) {
        h.open = true;
        out.push(this.transition(id, h, 'new'));
      } else if (!wrong && h.open && off < 90) {
        h.open = false;
        out.push(this.transition(id, h, 'end', { reason: 'direction' }));
      }
    }
    for (const [id, h] of [...this.histories]) {
      if (seen.has(id)) continue;
      this.histories.delete(id);
      if (h.open) out.push(this.transition(id, h, 'end', { reason: 'left' }));
    }
    return out;
  }

  counters(): Record<string, number> {
    return { [`${this.rule.id}.wrong_way`]: [...this.histories.values()].filter((h) => h.open).length };
  }

  close(_t: number, reason: string): Transition[] {
    const out = [...this.histories]
      .filter(([, h]) => h.open)
      .map(([id, h]) => this.transition(id, h, 'end', { reason }));
    this.histories.clear();
    return out;
  }
}
