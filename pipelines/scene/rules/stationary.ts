import { type Point, pointInPolygon } from '../geometry.ts';
import type { StationaryRule } from '../schema.ts';
import type { RuleEvaluator, SceneObject, Transition } from './types.ts';

interface Rest {
  /** where the object came to rest (centre, normalised) */
  at: Point;
  since: number;
  open: boolean;
  lastUpdate: number;
  object: SceneObject;
}

const round = (s: number) => Number(s.toFixed(2));

/**
 * An object that has not moved for longer than `seconds` (a vehicle parked too long): its centre
 * stays within `maxMovement` × its height of where it came to rest. `new` at the limit, updates
 * while it stays, `end` when it drives off or is lost.
 */
export class StationaryEvaluator implements RuleEvaluator {
  private rests = new Map<number, Rest>();

  constructor(
    private readonly rule: StationaryRule,
    private readonly updateSeconds: number,
  ) {}

  get id(): string {
    return this.rule.id;
  }

  private transition(
    id: number,
    r: Rest,
    phase: Transition['phase'],
    t: number,
    extra: Record<string, unknown> = {},
  ): Transition {
    return {
      key: `${this.rule.id}:${id}:${r.since}`,
      phase,
      rule: this.rule.id,
      ruleType: 'stationary',
      label: r.object.track.label,
      trackId: id,
      ...(this.rule.polygon ? { zone: this.rule.id } : {}),
      score: r.object.track.score,
      box: r.object.track.box,
      before: {
        stationary: phase !== 'new',
        stationarySeconds: phase === 'new' ? this.rule.seconds : round(r.lastUpdate - r.since),
      },
      after: { stationary: phase !== 'end', stationarySeconds: round(t - r.since), ...extra },
    };
  }

  evaluate(objects: readonly SceneObject[], t: number): Transition[] {
    const out: Transition[] = [];
    const seen = new Set<number>();
    for (const o of objects) {
      if (this.rule.polygon && !pointInPolygon(o.anchor, this.rule.polygon)) continue;
      const id = o.track.id;
      seen.add(id);
      const rest = this.rests.get(id);
      if (!rest) {
        this.rests.set(id, { at: o.centre, since: t, open: false, lastUpdate: t, object: o });
        continue;
      }
      rest.object = o;
      const moved = Math.hypot(o.centre[0] - rest.at[0], o.centre[1] - rest.at[1]);
      if (moved > this.rule.maxMovement * o.height) {
        if (rest.open) out.push(this.transition(id, rest, 'end', t, { reason: 'moved' }));
        this.rests.set(id, { at: o.centre, since: t, open: false, lastUpdate: t, object: o });
        continue;
      }
      if (!rest.open && t - rest.since > this.rule.seconds) {
        rest.open = true;
        out.push(this.transition(id, rest, 'new', t));
        rest.lastUpdate = t;
      } else if (rest.open && t - rest.lastUpdate >= this.updateSeconds) {
        out.push(this.transition(id, rest, 'update', t));
        rest.lastUpdate = t;
      }
    }
    for (const [id, rest] of [...this.rests]) {
      if (seen.has(id)) continue;
      this.rests.delete(id);
      if (rest.open) out.push(this.transition(id, rest, 'end', t, { reason: 'lost' }));
    }
    return out;
  }

  counters(): Record<string, number> {
    return { [`${this.rule.id}.stationary`]: [...this.rests.values()].filter((r) => r.open).length };
  }

  close(t: number, reason: string): Transition[] {
    const out = [...this.rests]
      .filter(([, r]) => r.open)
      .map(([id, r]) => this.transition(id, r, 'end', t, { reason }));
    this.rests.clear();
    return out;
  }
}
