import { pointInPolygon } from '../geometry.ts';
import type { LoiteringRule } from '../schema.ts';
import type { RuleEvaluator, SceneObject, Transition } from './types.ts';

interface Stay {
  since: number;
  open: boolean;
  lastUpdate: number;
  object: SceneObject;
}

const round = (s: number) => Number(s.toFixed(2));

/** an object staying in a zone longer than the rule's `seconds`: `new` then, updates while it stays, `end` when it leaves */
export class LoiteringEvaluator implements RuleEvaluator {
  private stays = new Map<number, Stay>();

  constructor(
    private readonly rule: LoiteringRule,
    private readonly updateSeconds: number,
  ) {}

  get id(): string {
    return this.rule.id;
  }

  private transition(
    id: number,
    s: Stay,
    phase: Transition['phase'],
    t: number,
    extra: Record<string, unknown> = {},
  ): Transition {
    const dwell = round(t - s.since);
    return {
      key: `${this.rule.id}:${id}`,
      phase,
      rule: this.rule.id,
      ruleType: 'loitering',
      label: s.object.track.label,
      trackId: id,
      zone: this.rule.id,
      score: s.object.track.score,
      box: s.object.track.box,
      before: {
        loitering: phase !== 'new',
        dwellSeconds: phase === 'new' ? this.rule.seconds : round(s.lastUpdate - s.since),
      },
      after: { loitering: phase !== 'end', dwellSeconds: dwell, ...extra },
    };
  }

  evaluate(objects: readonly SceneObject[], t: number): Transition[] {
    const out: Transition[] = [];
    const seen = new Set<number>();
    for (const o of objects) {
      const id = o.track.id;
      if (!pointInPolygon(o.anchor, this.rule.polygon)) continue;
      seen.add(id);
      const stay = this.stays.get(id) ?? { since: t, open: false, lastUpdate: t, object: o };
      stay.object = o;
      this.stays.set(id, stay);
      if (!stay.open && t - stay.since > this.rule.seconds) {
        stay.open = true;
        out.push(this.transition(id, stay, 'new', t));
        stay.lastUpdate = t;
      } else if (stay.open && t - stay.lastUpdate >= this.updateSeconds) {
        out.push(this.transition(id, stay, 'update', t));
        stay.lastUpdate = t;
      }
    }
    for (const [id, stay] of [...this.stays]) {
      if (seen.has(id)) continue;
      this.stays.delete(id);
      if (stay.open)
        out.push(
          this.transition(id, stay, 'end', t, {
            reason: objects.some((o) => o.track.id === id) ? 'left' : 'lost',
          }),
        );
    }
    return out;
  }

  counters(): Record<string, number> {
    return { [`${this.rule.id}.loitering`]: [...this.stays.values()].filter((s) => s.open).length };
  }

  close(t: number, reason: string): Transition[] {
    const out = [...this.stays]
      .filter(([, s]) => s.open)
      .map(([id, s]) => this.transition(id, s, 'end', t, { reason }));
    this.stays.clear();
    return out;
  }
}
