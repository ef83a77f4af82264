import type { RuleType } from '../../../contract/payloads.ts';
import type { Box } from '../../../inference/rect.ts';
import type { Track } from '../../tracking/tracker.ts';
import type { Point } from '../geometry.ts';

/** a tracked object as the rules see it: anchor and centre in normalised frame coordinates */
export interface SceneObject {
  track: Track;
  /** the point zones and lines test (feet or centre, per the scene) */
  anchor: Point;
  centre: Point;
  /** box height as a fraction of the frame height */
  height: number;
  /** the track's filtered velocity of its box centre, frame fractions per second */
  velocity: Point;
}

/** a change of a rule's state that becomes an event message */
export interface Transition {
  /** identifies the event this transition belongs to within the camera (rule + subject) */
  key: string;
  phase: 'new' | 'update' | 'end';
  rule: string;
  ruleType: RuleType;
  label: string;
  /** -1 for rules about many objects */
  trackId: number;
  zone?: string;
  line?: string;
  direction?: 'in' | 'out';
  score: number;
  /** the subject's box in source pixels, when the event is about one object */
  box?: Box;
  before: Record<string, unknown>;
  after: Record<string, unknown>;
}

/** one scene rule: consumes the tracked objects of each observed frame, emits transitions */
export interface RuleEvaluator {
  readonly id: string;
  /** `objects` are the confirmed tracks passing the rule's class and score filters */
  evaluate(objects: readonly SceneObject[], t: number): Transition[];
  /** counters the rule keeps, e.g. occupancy or in/out counts, keyed `<rule id>.<name>` */
  counters(): Record<string, number>;
  /** ends every open event (the camera stopped or went offline), `reason` in each end's `after` */
  close(t: number, reason: string): Transition[];
}
