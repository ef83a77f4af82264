import type { Logger } from '../../common/logger.ts';
import type { FrameDetector } from '../../inference/detector.ts';
import type { Box } from '../../inference/rect.ts';
import type { SceneEventMessage } from '../events/lifecycle.ts';
import { replayRecording } from '../runtime/replay.ts';
import type { SceneStep } from '../scene/engine.ts';
import type { Scene } from '../scene/schema.ts';
import {
  type CrossingScore,
  type IdentifiedBox,
  type IdentityScore,
  matchTimePairs,
  meanAbsoluteError,
  scoreCrossings,
  scoreIdentities,
} from './metrics.ts';
import type { EventTruth } from './truth.ts';

/** a crossing matches an annotated one within this many seconds */
export const CROSSING_TOLERANCE_S = 1;
/** an event is judged against annotated boxes this many frames away at most */
const BOX_FRAME_SLACK = 2;

/** what one replay of a recording produced: its event messages and every observed frame's state */
export interface Observation {
  events: SceneEventMessage[];
  /**
   * per observed frame (scene time in seconds, ascending): person tracks as the rules saw them
   * with their filtered velocity (source pixels per second), and the rules' counters
   */
  steps: {
    t: number;
    persons: (IdentifiedBox & { velocity: [number, number] })[];
    counters: Record<string, number>;
  }[];
  frames: number;
  motionSearchedShare: number;
}

/** collects what a replay produces into an observation: pass `onEvent` and `onStep` to the camera */
export function observationRecorder(): {
  observation: Observation;
  onEvent: (m: SceneEventMessage) => void;
  onStep: (t: number, step: SceneStep, counters: Record<string, number>) => void;
} {
  const observation: Observation = { events: [], steps: [], frames: 0, motionSearchedShare: 1 };
  return {
    observation,
    onEvent: (m) => {
      observation.events.push(m);
    },
    onStep: (t, step, counters) => {
      const persons = step.tracks
        .filter((tr) => tr.label === 'person')
        .map((tr) => ({
          id: tr.id,
          box: [...(tr.lastSeen === t ? tr.detectionBox : tr.box)] as Box,
          velocity: [...tr.velocity] as [number, number],
        }));
      observation.steps.push({ t, persons, counters: { ...counters } });
    },
  };
}

/** scene time in seconds of an event message of a replay started at time 0 */
const timeOf = (m: SceneEventMessage) => Date.parse(m.at) / 1000;

/**
 * Replays `video` through the real pipeline — GStreamer source, motion gate, the shared detector,
 * tracker, scene rules and event lifecycle — as `argus replay` does, with `detectFps` frames per
 * second of the recording detected, and records what it produced.
 */
export async function observeReplay(o: {
  video: string;
  scene: Scene;
  detector: FrameDetector;
  detectFps: number;
  maxBatch: number;
  log: Logger;
  signal?: AbortSignal;
  /** the camera's id: it sets the moment at which the motion gate looks at the whole frame */
  cameraId: string;
}): Promise<Observation> {
  const recorder = observationRecorder();
  const summary = await replayRecording({
    ...o,
    scene: { ...o.scene, snapshots: { ...o.scene.snapshots, enabled: false } },
    scenePath: 'evaluation',
    // several configurations replay side by side: a frame may wait long for the shared detector
    stallTimeoutS: 30,
    onEvent: (e) => recorder.onEvent(e.message),
    onStep: recorder.onStep,
  });
  recorder.observation.frames = summary.frames;
  recorder.observation.motionSearchedShare = summary.motionSearchedShare;
  return recorder.observation;
}

export interface EventAccuracy {
  lines: Record<
    string,
    {
      all: CrossingScore;
      in: CrossingScore;
      out: CrossingScore;
      /** frames of found crossings no annotated one matched, and of annotated ones none found matched */
      extra: string[];
      missed: string[];
    }
  >;
  zones: Record<string, { mae: number; frames: number }>;
  identity: IdentityScore | undefined;
  falseEvents: { count: number; perMinute: number; examples: string[] };
  /** the figures bench:accuracy reports: worst line, worst zone */
  summary: {
    crossing_recall: number;
    crossing_precision: number;
    count_error_share: number;
    occupancy_mae: number;
    /** null without annotated identities */
    idf1: number | null;
    id_switches: number | null;
    false_events: number;
  };
}

/** the last observed step at or before time `t` (the state the box holds at that moment) */
function stepAt(obs: Observation, t: number): Observation['steps'][number] | undefined {
  let lo = 0;
  let hi = obs.steps.length - 1;
  let found: Observation['steps'][number] | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const s = obs.steps[mid]!;
    if (s.t <= t + 1e-6) {
      found = s;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/**
 * the person boxes the box's tracker holds at time `t`, between two detected frames: those of
 * the last observed step moved on by their velocity to `t` (the tracker's own prediction)
 */
function trackedAt(obs: Observation, t: number): IdentifiedBox[] {
  const step = stepAt(obs, t);
  if (!step) return [];
  const dt = t - step.t;
  return step.persons.map(({ id, box, velocity: [vx, vy] }) => ({
    id,
    box: [box[0] + vx * dt, box[1] + vy * dt, box[2] + vx * dt, box[3] + vy * dt],
  }));
}

const round = (v: number) => Number(v.toFixed(4));

/** scores what a replay produced against the ground truth of its recording */
export function scoreObservation(truth: EventTruth, obs: Observation): EventAccuracy {
  const fps = truth.fps;
  const lines: EventAccuracy['lines'] = {};
  const falseExamples: string[] = [];
  let falseEvents = 0;
  const crossings = obs.events.filter((m) => m.ruleType === 'line' && m.phase === 'new' && m.direction);
  for (const line of truth.lines) {
    const annotated = line.crossings.map((c) => ({ t: c.frame / fps, direction: c.direction }));
    const found = crossings
      .filter((m) => m.rule === line.rule)
      .map((m) => ({ t: timeOf(m), direction: m.direction! }));
    const score = (d?: 'in' | 'out') =>
      scoreCrossings(
        annotated.filter((c) => !d || c.direction === d),
        found.filter((c) => !d || c.direction === d),
        CROSSING_TOLERANCE_S,
      );
    const extra: string[] = [];
    const missed: string[] = [];
    for (const d of ['in', 'out'] as const) {
      const a = annotated.filter((c) => c.direction === d);
      const f = found.filter((c) => c.direction === d);
      const pairs = matchTimePairs(
        a.map((c) => c.t),
        f.map((c) => c.t),
        CROSSING_TOLERANCE_S,
      );
      const used = new Set(pairs);
      a.forEach((c, i) => {
        if (pairs[i]! < 0) missed.push(`${d}@${Math.round(c.t * fps)}`);
      });
      f.forEach((c, j) => {
        if (!used.has(j)) extra.push(`${d}@${Math.round(c.t * fps)}`);
      });
    }
    lines[line.rule] = { all: score(), in: score('in'), out: score('out'), extra, missed };
    // a crossing with no person crossing that line (either way) within the tolerance: raised where no one crossed
    for (const f of found) {
      if (annotated.some((a) => Math.abs(a.t - f.t) <= CROSSING_TOLERANCE_S + 1e-9)) continue;
      falseEvents++;
      if (falseExamples.length < 20)
        falseExamples.push(`${line.rule} ${f.direction} at frame ${Math.round(f.t * fps)}`);
    }
  }
  // any other event with a box next to an annotated frame: false when its box holds no annotated person
  const boxFrames = new Map((truth.identities?.frames ?? []).map((f) => [f.frame, f.persons]));
  const judgedLines = new Set(truth.lines.map((l) => l.rule));
  for (const m of obs.events) {
    if (m.phase !== 'new' || !m.box || m.label !== 'person' || judgedLines.has(m.rule)) continue;
    const frame = Math.round(timeOf(m) * fps);
    let persons: { box: readonly number[] }[] | undefined;
    for (let d = 0; d <= BOX_FRAME_SLACK && !persons; d++)
      persons = boxFrames.get(frame - d) ?? boxFrames.get(frame + d);
    if (!persons) continue;
    const [x1, y1, x2, y2] = m.box;
    const holds = persons.some(({ box: b }) => {
      const cx = (b[0]! + b[2]!) / 2;
      const cy = (b[1]! + b[3]!) / 2;
      return cx >= x1! && cx <= x2! && cy >= y1! && cy <= y2!;
    });
    if (holds) continue;
    falseEvents++;
    if (falseExamples.length < 20) falseExamples.push(`${m.rule} ${m.ruleType} at frame ${frame}`);
  }
  const zones: EventAccuracy['zones'] = {};
  for (const zone of truth.zones) {
    const pairs = zone.counts.map((c) => ({
      truth: c.count,
      found: stepAt(obs, c.frame / fps)?.counters[`${zone.rule}.occupancy`] ?? 0,
    }));
    zones[zone.rule] = { mae: round(meanAbsoluteError(pairs)), frames: pairs.length };
  }
  let identity: IdentityScore | undefined;
  if (truth.identities) {
    const minFeet = (truth.identities.minFeetY ?? 0) * truth.height;
    const scored = (ps: readonly IdentifiedBox[]) => ps.filter((p) => p.box[3] >= minFeet);
    const annotated = new Map(
      truth.identities.frames.map((f) => [f.frame, scored(f.persons as IdentifiedBox[])]),
    );
    const found = new Map(
      truth.identities.frames.map((f) => [f.frame, scored(trackedAt(obs, f.frame / fps))]),
    );
    identity = scoreIdentities(annotated, found);
  }
  const all = Object.values(lines);
  const minutes = truth.frames / fps / 60;
  return {
    lines,
    zones,
    identity,
    falseEvents: { count: falseEvents, perMinute: round(falseEvents / minutes), examples: falseExamples },
    summary: {
      crossing_recall: round(Math.min(1, ...all.map((l) => l.all.recall))),
      crossing_precision: round(Math.min(1, ...all.map((l) => l.all.precision))),
      count_error_share: round(Math.max(0, ...all.flatMap((l) => [l.in.countError, l.out.countError]))),
      occupancy_mae: round(Math.max(0, ...Object.values(zones).map((z) => z.mae))),
      idf1: identity ? round(identity.idf1) : null,
      id_switches: identity ? identity.idSwitches : null,
      false_events: falseEvents,
    },
  };
}

/** the report `argus replay --truth` prints */
export function describeAccuracy(a: EventAccuracy): string {
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  const out: string[] = [];
  for (const [rule, l] of Object.entries(a.lines)) {
    for (const d of ['in', 'out'] as const) {
      const s = l[d];
      out.push(
        `line ${rule} ${d.padEnd(3)}: ${s.found} found / ${s.truth} annotated, recall ${s.recall.toFixed(3)}, precision ${s.precision.toFixed(3)}, count error ${pct(s.countError)}`,
      );
    }
  }
  for (const [rule, l] of Object.entries(a.lines)) {
    if (l.extra.length || l.missed.length)
      out.push(
        `line ${rule}: extra ${l.extra.join(' ') || '-'}; missed ${l.missed.join(' ') || '-'} (direction@frame)`,
      );
  }
  for (const [rule, z] of Object.entries(a.zones)) {
    out.push(
      `zone ${rule}: occupancy mean absolute error ${z.mae.toFixed(2)} persons over ${z.frames} frames`,
    );
  }
  if (a.identity) {
    const i = a.identity;
    out.push(
      `identities: IDF1 ${i.idf1.toFixed(3)} (IDP ${i.idp.toFixed(3)}, IDR ${i.idr.toFixed(3)}), ${i.idSwitches} ID switches, ${i.foundBoxes} found / ${i.truthBoxes} annotated boxes${i.switches.length ? `; switches (frame: person found-id→found-id) ${i.switches.map((w) => `${w.frame}: ${w.truth} ${w.from}→${w.to}`).join(', ')}` : ''}`,
    );
  }
  out.push(
    `false events: ${a.falseEvents.count} (${a.falseEvents.perMinute.toFixed(2)} per minute)${a.falseEvents.examples.length ? `: ${a.falseEvents.examples.join(', ')}` : ''}`,
  );
  return out.join('\n');
}
