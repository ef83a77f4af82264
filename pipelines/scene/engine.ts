import { isDeepStrictEqual } from 'node:util';
import type { Detection } from '../../inference/detector.ts';
import { nonMaxSuppression, type RawDetection } from '../../inference/nms.ts';
import type { Box } from '../../inference/rect.ts';
import { type Track, Tracker } from '../tracking/tracker.ts';
import { createEvaluator, type RuleEvaluator, type SceneObject, type Transition } from './rules/index.ts';
import type { Rule, Scene } from './schema.ts';

/** detections of different classes overlapping this much are one object (keeps the best class) */
const CROSS_CLASS_IOU = 0.7;

interface RuleBinding {
  rule: Rule;
  evaluator: RuleEvaluator;
  /** tracks that have reached the rule's minimum score */
  qualified: Set<number>;
}

export interface SceneStep {
  tracks: Track[];
  transitions: Transition[];
}

/**
 * One camera's scene logic: detections of an observed frame → scene filters → tracker → rules →
 * transitions. Pure and synchronous: time comes in as `t` (seconds), so the same engine runs live
 * cameras, replays faster than real time, and unit tests with synthetic tracks.
 */
export class SceneEngine {
  private tracker: Tracker;
  private bindings: RuleBinding[];
  private current: Scene;

  constructor(
    scene: Scene,
    private readonly frameWidth: number,
    private readonly frameHeight: number,
  ) {
    this.current = scene;
    this.tracker = new Tracker(scene.tracker, [0, 0, frameWidth, frameHeight]);
    this.bindings = scene.rules.map((rule) => this.bind(rule));
  }

  get scene(): Scene {
    return this.current;
  }

  private bind(rule: Rule): RuleBinding {
    return {
      rule,
      evaluator: createEvaluator(rule, this.current.updateSeconds),
      qualified: new Set<number>(),
    };
  }

  /** resolution changes (a camera reconfigured) keep the scene, which is in frame fractions */
  resize(width: number, height: number): SceneEngine {
    return width === this.frameWidth && height === this.frameHeight
      ? this
      : new SceneEngine(this.scene, width, height);
  }

  /**
   * Runs `next` from the next frame on, at scene time `t`, and returns the ends of the events it
   * closes. A rule whose id and definition are unchanged keeps its state (its open events, tracks
   * and counts go on). A rule removed or changed ends its open events (`after.reason` "scene
   * changed: rule … removed/changed") and a changed one starts afresh. Tracker settings, the anchor
   * or `updateSeconds` changing restart the tracker and every rule (each open event ends, "scene
   * changed: …"), as the tracks and rule states of the old settings mean nothing under the new
   * ones. The scene filters (`classes`, `minScore`) apply from the next frame on.
   */
  reconfigure(next: Scene, t: number): Transition[] {
    const prev = this.current;
    const whole = !isDeepStrictEqual(prev.tracker, next.tracker)
      ? 'tracker settings changed'
      : prev.anchor !== next.anchor
        ? 'anchor changed'
        : prev.updateSeconds !== next.updateSeconds
          ? 'updateSeconds changed'
          : undefined;
    const ended: Transition[] = [];
    const kept = new Map<string, RuleBinding>();
    for (const binding of this.bindings) {
      const rule = next.rules.find((r) => r.id === binding.rule.id);
      if (!whole && rule && isDeepStrictEqual(rule, binding.rule)) {
        kept.set(rule.id, binding);
        continue;
      }
      const why = whole ?? `rule ${binding.rule.id} ${rule ? 'changed' : 'removed'}`;
      ended.push(...binding.evaluator.close(t, `scene changed: ${why}`));
    }
    this.current = next;
    if (whole) this.tracker = new Tracker(next.tracker, [0, 0, this.frameWidth, this.frameHeight]);
    this.bindings = next.rules.map((rule) => kept.get(rule.id) ?? this.bind(rule));
    return ended;
  }

  private wanted(d: Detection): boolean {
    return (
      d.score >= Math.min(this.scene.minScore, this.scene.tracker.lowScore) &&
      (!this.scene.classes || this.scene.classes.includes(d.label))
    );
  }

  /**
   * advances the scene with the detections of the frame observed at time `t`, in only the
   * `searched` boxes of the frame when given (its moving regions)
   */
  observe(detections: readonly Detection[], t: number, searched?: readonly Box[]): SceneStep {
    const wanted = detections.filter((d) => this.wanted(d));
    const kept = nonMaxSuppression<RawDetection & { index: number }>(
      wanted.map((d, i) => ({ box: d.box, score: d.score, classId: 0, index: i })),
      CROSS_CLASS_IOU,
      Number.POSITIVE_INFINITY,
    );
    const candidates = kept.map((k) => wanted[k.index]!);
    const tracks = this.tracker.update(candidates, t, searched);
    const objects = tracks.map((track) => this.toObject(track, t));
    const transitions: Transition[] = [];
    const live = new Set(tracks.map((tr) => tr.id));
    for (const binding of this.bindings) {
      const { rule, evaluator, qualified } = binding;
      const minScore = rule.minScore ?? this.scene.minScore;
      for (const id of qualified) if (!live.has(id)) qualified.delete(id);
      // a track qualifies once it reaches the rule's score and stays qualified while its score dips (occlusion)
      const eligible = objects.filter((o) => {
        if (rule.classes && !rule.classes.includes(o.track.label)) return false;
        if (o.track.score >= minScore) qualified.add(o.track.id);
        return qualified.has(o.track.id);
      });
      transitions.push(...evaluator.evaluate(eligible, t));
    }
    return { tracks, transitions };
  }

  /** rules see the box detected in this frame; a track not matched in this frame is at its predicted box */
  private toObject(track: Track, t: number): SceneObject {
    const [x1, y1, x2, y2] = track.lastSeen === t ? track.detectionBox : track.box;
    const cx = (x1 + x2) / 2 / this.frameWidth;
    const cy = (y1 + y2) / 2 / this.frameHeight;
    const anchor: [number, number] = this.scene.anchor === 'center' ? [cx, cy] : [cx, y2 / this.frameHeight];
    return {
      track,
      anchor,
      centre: [cx, cy],
      height: (y2 - y1) / this.frameHeight,
      velocity: [track.velocity[0] / this.frameWidth, track.velocity[1] / this.frameHeight],
    };
  }

  /** the boxes of the objects tracked so far, tentative ones included (source pixels) */
  trackedBoxes(): Box[] {
    return this.tracker.boxes();
  }

  counters(): Record<string, number> {
    return Object.assign({}, ...this.bindings.map((b) => b.evaluator.counters()));
  }

  /** ends every open event (the camera stopping or gone offline), with `reason` */
  close(t: number, reason: string): Transition[] {
    return this.bindings.flatMap((b) => b.evaluator.close(t, reason));
  }
}
