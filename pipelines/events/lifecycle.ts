import { timeOrderedId } from '../../common/ids.ts';
import type { EventMessage } from '../../contract/payloads.ts';
import type { Box } from '../../inference/rect.ts';
import type { FullFrame } from '../../video/frame-source.ts';
import type { Transition } from '../scene/rules/index.ts';
import type { Track } from '../tracking/tracker.ts';

/** an event message as the pipeline produces it; the device agent adds `v`, `device`, `cameraSeq` and the snapshot reference */
export type SceneEventMessage = Omit<EventMessage, 'v' | 'device' | 'cameraSeq' | 'snapshot'>;

/** a frame to turn into the event's JPEG snapshot, with the subject's box drawn */
export interface SnapshotRequest {
  frame: FullFrame;
  box: Box | undefined;
  caption: string;
}

export interface PipelineEvent {
  message: SceneEventMessage;
  snapshot?: SnapshotRequest;
}

interface OpenEvent {
  id: string;
  seq: number;
  startedAt: Date;
  trackId: number;
  best: { score: number; frame: FullFrame; box: Box | undefined; caption: string } | undefined;
  sentFrame: FullFrame | undefined;
}

const iso = (d: Date) => d.toISOString();

/**
 * Turns rule transitions into event messages with a stable id per event, `seq` numbering, start
 * and end times, before/after state and the camera's counters. While an event is open it keeps
 * the frame where its subject was detected best; `new` carries a snapshot of the triggering frame,
 * `end` one of the best frame (when that is a different frame).
 */
export class EventLifecycle {
  private open = new Map<string, OpenEvent>();

  constructor(
    private readonly camera: string,
    /** wall-clock time of scene time `t` (seconds) */
    private readonly clock: (t: number) => Date,
    /** whether events carry snapshots (a scene applied to a running camera may change it) */
    public snapshots: boolean,
  ) {}

  /** number of events currently open */
  get openCount(): number {
    return this.open.size;
  }

  /**
   * Processes the transitions of one observed frame. `tracks` are that frame's tracks (to keep the
   * best frame of open events), `frame` its full-resolution pixels.
   */
  process(
    transitions: readonly Transition[],
    t: number,
    tracks: readonly Track[],
    frame: FullFrame | undefined,
    counters: Record<string, number>,
  ): PipelineEvent[] {
    if (frame && this.snapshots) this.keepBest(tracks, frame);
    const out: PipelineEvent[] = [];
    for (const tr of transitions) {
      const at = this.clock(t);
      let ev = this.open.get(tr.key);
      if (!ev || tr.phase === 'new') {
        ev = {
          id: timeOrderedId(),
          seq: -1,
          startedAt: at,
          trackId: tr.trackId,
          best: undefined,
          sentFrame: undefined,
        };
        this.open.set(tr.key, ev);
      }
      ev.seq++;
      const caption = `${tr.rule}: ${tr.label}${tr.direction ? ` ${tr.direction}` : ''}`;
      if (frame && this.snapshots && (!ev.best || tr.score > ev.best.score)) {
        ev.best = { score: tr.score, frame, box: tr.box, caption };
      }
      const message: SceneEventMessage = {
        id: ev.id,
        seq: ev.seq,
        phase: tr.phase,
        camera: this.camera,
        rule: tr.rule,
        ruleType: tr.ruleType,
        label: tr.label,
        trackId: tr.trackId,
        ...(tr.zone ? { zone: tr.zone } : {}),
        ...(tr.line ? { line: tr.line } : {}),
        ...(tr.direction ? { direction: tr.direction } : {}),
        startedAt: iso(ev.startedAt),
        at: iso(at),
        ...(tr.phase === 'end' ? { endedAt: iso(at) } : {}),
        score: Math.min(1, Math.max(0, Number(tr.score.toFixed(4)))),
        ...(tr.box ? { box: tr.box.map((v) => Number(v.toFixed(1))) } : {}),
        before: tr.before,
        after: tr.after,
        counters,
      };
      let snapshot: SnapshotRequest | undefined;
      if (this.snapshots && ev.best) {
        if (tr.phase === 'new' || (tr.phase === 'end' && ev.best.frame !== ev.sentFrame)) {
          snapshot = { frame: ev.best.frame, box: ev.best.box, caption: ev.best.caption };
          ev.sentFrame = ev.best.frame;
        }
      }
      out.push(snapshot ? { message, snapshot } : { message });
      if (tr.phase === 'end') this.open.delete(tr.key);
    }
    return out;
  }

  private keepBest(tracks: readonly Track[], frame: FullFrame): void {
    for (const ev of this.open.values()) {
      if (ev.trackId < 0 || !ev.best) continue;
      const track = tracks.find((tr) => tr.id === ev.trackId && tr.lastSeen === tracks[0]?.lastSeen);
      if (track && track.score > ev.best.score)
        ev.best = { ...ev.best, score: track.score, frame, box: track.detectionBox };
    }
  }
}
