import { pointInPolygon } from '../geometry.ts';
import type { CrowdingRule } from '../schema.ts';
import type { RuleEvaluator, SceneObject, Transition } from './types.ts';

/**
 * More than `count` objects in a zone for longer than `seconds`: one event for the crowd (track
 * -1) — `new` when it forms, `update` when its size changes, `end` once the count has stayed at or
 * below the limit for `clearSeconds`.
 */
export class CrowdingEvaluator implements RuleEvaluator {
  private aboveSince: number | undefined;
  private belowSince: number | undefined;
  private open = false;
  private opened = 0;
  private serial = 0;
  private current = 0;
  private reported = 0;
  private peak = 0;
  private lastUpdate = 0;

  constructor(
    private readonly rule: CrowdingRule,
    private readonly updateSeconds: number,
  ) {}

  get id(): string {
    return this.rule.id;
  }

  private transition(
    phase: Transition['phase'],
    t: number,
    members: readonly SceneObject[],
    extra: Record<string, unknown> = {},
  ): Transition {
    const best = [...members].sort((a, b) => b.track.score - a.track.score)[0];
    return {
      key: `${this.rule.id}:${this.serial}`,
      phase,
      rule: this.rule.id,
      ruleType: 'crowding',
      label: this.rule.classes?.length === 1 ? this.rule.classes[0]! : '*',
      trackId: -1,
      zone: this.rule.id,
      score: best?.track.score ?? 0,
      ...(best ? { box: best.track.box } : {}),
      before: { crowded: phase !== 'new', count: phase === 'new' ? this.rule.count : this.reported },
      after: {
        crowded: phase !== 'end',
        count: this.current,
        peak: this.peak,
        durationSeconds: Number((t - this.opened).toFixed(2)),
        ...extra,
      },
    };
  }

  evaluate(objects: readonly SceneObject[], t: number): Transition[] {
    const members = objects.filter((o) => pointInPolygon(o.anchor, this.rule.polygon));
    this.current = members.length;
    const out: Transition[] = [];
    if (this.current > this.rule.count) {
      this.belowSince = undefined;
      this.aboveSince ??= t;
      if (!this.open && t - this.aboveSince >= this.rule.seconds) {
        this.open = true;
        this.serial++;
        this.opened = this.aboveSince;
        this.peak = this.current;
        out.push(this.transition('new', t, members));
        this.reported = this.current;
        this.lastUpdate = t;
      } else if (this.open) {
        this.peak = Math.max(this.peak, this.current);
        if (this.current !== this.reported && t - this.lastUpdate >= Math.min(1, this.updateSeconds)) {
          out.push(this.transition('update', t, members));
          this.reported = this.current;
          this.lastUpdate = t;
        }
      }
    } else {
      this.aboveSince = undefined;
      if (this.open) {
        this.belowSince ??= t;
        if (t - this.belowSince >= this.rule.clearSeconds) {
          out.push(this.transition('end', t, members));
          this.open = false;
          this.reported = this.current;
        }
      }
    }
    return out;
  }

  counters(): Record<string, number> {
    return { [`${this.rule.id}.count`]: this.current };
  }

  close(t: number, reason: string): Transition[] {
    if (!this.open) return [];
    this.open = false;
    return [this.transition('end', t, [], { reason })];
  }
}
