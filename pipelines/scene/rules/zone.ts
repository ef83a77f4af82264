import { pointInPolygon } from '../geometry.ts';
import type { ZoneRule } from '../schema.ts';
import type { RuleEvaluator, SceneObject, Transition } from './types.ts';

interface Visit {
  since: number;
  label: string;
  score: number;
  box: SceneObject['track']['box'];
}

/**
 * an object's visit of a zone: `new` when its anchor enters, `end` when it leaves or is lost;
 * entering and leaving are decided only on frames where the object was detected (a box the
 * tracker only predicted walks no one into a zone, nor out of it)
 */
export class ZoneEvaluator implements RuleEvaluator {
  private inside = new Map<number, Visit>();

  constructor(private readonly rule: ZoneRule) {}

  get id(): string {
    return this.rule.id;
  }

  private transition(
    trackId: number,
    v: Visit,
    phase: 'new' | 'end',
    t: number,
    reason?: string,
  ): Transition {
    const entering = phase === 'new';
    return {
      key: `${this.rule.id}:${trackId}`,
      phase,
      rule: this.rule.id,
      ruleType: 'zone',
      label: v.label,
      trackId,
      zone: this.rule.id,
      score: v.score,
      box: v.box,
      before: { inside: !entering, occupancy: this.inside.size + (entering ? -1 : 1) },
      after: {
        inside: entering,
        occupancy: this.inside.size,
        ...(entering
          ? {}
          : { dwellSeconds: Number((t - v.since).toFixed(2)), ...(reason ? { reason } : {}) }),
      },
    };
  }

  evaluate(objects: readonly SceneObject[], t: number): Transition[] {
    const out: Transition[] = [];
    const seen = new Set<number>();
    for (const o of objects) {
      seen.add(o.track.id);
      if (o.track.lastSeen !== t) continue;
      const isIn = pointInPolygon(o.anchor, this.rule.polygon);
      const visit = this.inside.get(o.track.id);
      if (isIn && !visit) {
        const v = { since: t, label: o.track.label, score: o.track.score, box: o.track.box };
        this.inside.set(o.track.id, v);
        out.push(this.transition(o.track.id, v, 'new', t));
      } else if (!isIn && visit) {
        this.inside.delete(o.track.id);
        out.push(this.transition(o.track.id, { ...visit, box: o.track.box, score: o.track.score }, 'end', t));
      } else if (visit) {
        visit.box = o.track.box;
        visit.score = o.track.score;
        visit.label = o.track.label;
      }
    }
    for (const [id, visit] of [...this.inside]) {
      if (seen.has(id)) continue;
      this.inside.delete(id);
      out.push(this.transition(id, visit, 'end', t, 'lost'));
    }
    return out;
  }

  counters(): Record<string, number> {
    return { [`${this.rule.id}.occupancy`]: this.inside.size };
  }

  close(t: number, reason: string): Transition[] {
    const out = [...this.inside].map(([id, v]) => {
      this.inside.delete(id);
      return this.transition(id, v, 'end', t, reason);
    });
    return out;
  }
}
