import { HARVEST_REASON_NAMES, type HarvestReasonName } from '../../contract/harvest.ts';
import type { Detection } from '../../inference/detector.ts';
import { iou } from '../../inference/nms.ts';
import { type Box, boxHolds, centreOf } from '../../inference/rect.ts';
import type { HarvestConfig } from './config.ts';
import { hashDistance } from './frame-hash.ts';

/** why a frame is worth learning from (the contract's names: the box uploads them with the frame) */
export type HarvestReason = HarvestReasonName;

export const HARVEST_REASONS: readonly HarvestReason[] = HARVEST_REASON_NAMES;

/** one detected frame of a camera, as the pipeline saw it */
export interface HarvestInput {
  camera: string;
  /** the frame's time on the camera's clock, seconds (the time the tracker was given) */
  t: number;
  /** the source frame's size, pixels */
  width: number;
  height: number;
  /** the running model's detections (source pixels), down to the lowest score the pipeline keeps */
  detections: readonly Detection[];
  /** the tracker's tracks after this frame (Tracker.update's answer): `lastSeen === t` when matched now */
  tracks: readonly { id: number; lastSeen: number }[];
  /** the moving regions the detector was given (source pixels); absent when it saw the whole frame */
  motion?: readonly Box[];
  /** the reference (fp32) model's detections on the same frame at its operating threshold, when it was spot-checked */
  spotCheck?: readonly Detection[];
  /**
   * frameHash of the frame, for skipping near-duplicates: called only when the frame is a
   * candidate (most detected frames are not, and they are not hashed), at most once
   */
  hash: () => bigint;
}

/** a frame the selector would keep; `commit` it with its JPEG's size to spend the budget */
export interface HarvestDecision {
  camera: string;
  t: number;
  reasons: HarvestReason[];
  hash: bigint;
  /** layoutOf the frame's detections */
  layout: string;
  /** what decided each reason, for the frame's metadata and the logs */
  details: {
    uncertain?: number;
    flickers?: number[];
    motionMisses?: number;
    agreement?: number;
  };
}

/** what a restarted selector is told of the frames kept before (from the box's spool) */
export interface HarvestSpent {
  /** when it was kept (ms, epoch, the selector's clock) */
  at: number;
  bytes: number;
}

export interface HarvestCounters {
  considered: number;
  candidates: number;
  duplicates: number;
  /** candidates refused because the hour's frames, the day's bytes or the minimum interval was spent */
  overBudget: number;
  kept: number;
  keptBytes: number;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const MiB = 1024 * 1024;
/** cameras remembered at most (for flicker and duplicates); the least recently seen is forgotten */
const MAX_CAMERAS = 256;
/** tracks remembered at most per camera */
const MAX_TRACKS = 1024;
const AGREEMENT_IOU = 0.5;

interface CameraState {
  /** t of the previous detected frame */
  previousT: number;
  /** each track's lastSeen after the previous frame */
  lastSeen: Map<number, number>;
  /** the last kept frames' hashes and layouts, newest last */
  kept: { hash: bigint; layout: string }[];
}

/** the grid a detection's centre is placed on for a frame's layout (cells per axis) */
const LAYOUT_GRID = 8;

/**
 * What a frame shows, coarsely: each detection's label and the cell of an 8×8 grid its centre
 * lies in, sorted. On a fixed camera the whole-frame hash barely moves when people walk (they are
 * a small part of the picture); two frames are near-duplicates only when their hashes are close
 * and their layouts are the same, so a frame where someone has moved on is not skipped.
 */
export function layoutOf(detections: readonly Detection[], width: number, height: number): string {
  const w = Math.max(1, width);
  const h = Math.max(1, height);
  const cell = (v: number, size: number) =>
    Math.min(LAYOUT_GRID - 1, Math.max(0, Math.floor((v / size) * LAYOUT_GRID)) || 0);
  return detections
    .map((d) => {
      const [x, y] = centreOf(d.box);
      return `${d.label}@${cell(x, w)},${cell(y, h)}`;
    })
    .sort()
    .join(' ');
}

/**
 * Chooses, on the box, the frames worth sending to the teacher, within a budget:
 * - `uncertain`: a detection scored in [uncertain.low, uncertain.high);
 * - `flicker`: a track matched now that was not matched at the previous detected frame and was
 *   last matched at most `flickerWithinS` ago (lost, then found again);
 * - `motion-miss`: a moving region of at least `motionMinShare` of the frame with no detection
 *   (scored `uncertain.low` or more) whose centre lies in it;
 * - `disagreement`: on a spot-checked frame, the share of boxes both models found (greedy match,
 *   same class, IoU ≥ 0.5; the running model's scored `uncertain.high` or more) of the larger of
 *   the two sets is below `disagreementBelow` (two empty sets agree).
 * `consider` answers a decision when the frame is a candidate, not a near-duplicate of one of the
 * camera's last kept frames (hash within `dedupBits` and the same layoutOf), and the budget has room for one more frame: fewer than
 * `framesPerHour` kept in the last hour, the last kept at least `minIntervalS` ago, fewer than
 * `megabytesPerDay` MiB in the last day. `commit(decision, bytes)` then spends it if the JPEG's
 * bytes fit in the day's budget too (and the frame budget still has room), and answers whether
 * the frame is kept. Whatever the sequence of calls, the frames kept in any hour and their bytes
 * in any 24 hours never exceed the budget (the clock is read as never going back).
 * State is bounded: per camera the last `dedupRecent` hashes and the tracks of the last frame
 * (≤ 1024), at most 256 cameras; the spent budget ≤ framesPerHour × 24 entries.
 */
export class HarvestSelector {
  private readonly cameras = new Map<string, CameraState>();
  /** kept frames of the last 24 hours, oldest first */
  private spent: HarvestSpent[] = [];
  private spentBytes = 0;
  private lastNow = Number.NEGATIVE_INFINITY;
  private readonly counters: HarvestCounters = {
    considered: 0,
    candidates: 0,
    duplicates: 0,
    overBudget: 0,
    kept: 0,
    keptBytes: 0,
  };

  constructor(
    private readonly config: HarvestConfig,
    /** ms, epoch (Date.now on a box, the video's time in a benchmark) */
    private readonly clock: () => number = Date.now,
    /** frames kept before a restart, so the budget carries over */
    history: readonly HarvestSpent[] = [],
  ) {
    const now = this.now();
    for (const h of [...history].sort((a, b) => a.at - b.at)) {
      if (h.at <= now - DAY_MS || h.at > now || !Number.isFinite(h.bytes) || h.bytes < 0) continue;
      this.spent.push({ at: h.at, bytes: h.bytes });
      this.spentBytes += h.bytes;
    }
  }

  /** counts since this selector was created (telemetry) */
  stats(): HarvestCounters {
    return { ...this.counters };
  }

  /** frames kept in the last hour and their bytes in the last day, as the budget counts them */
  budgetUse(): { framesLastHour: number; bytesLastDay: number } {
    const now = this.now();
    this.expire(now);
    return { framesLastHour: this.framesSince(now - HOUR_MS), bytesLastDay: this.spentBytes };
  }

  /**
   * Looks at one detected frame: a decision when it is worth keeping and the budget has room,
   * undefined otherwise. Nothing is spent until `commit`.
   */
  consider(input: HarvestInput): HarvestDecision | undefined {
    this.counters.considered++;
    const cam = this.camera(input.camera, input.t);
    const details: HarvestDecision['details'] = {};
    const reasons: HarvestReason[] = [];
    const c = this.config;

    const uncertain = input.detections.filter(
      (d) => d.score >= c.uncertain.low && d.score < c.uncertain.high,
    ).length;
    if (uncertain > 0) {
      reasons.push('uncertain');
      details.uncertain = uncertain;
    }

    // a frame older than the camera's last (a spot check answered after newer frames): its tracks
    // are not judged against the newer ones, nor remembered
    const late = input.t < cam.previousT;
    const flickers = (late ? [] : input.tracks)
      .filter((tr) => {
        if (tr.lastSeen !== input.t) return false;
        const before = cam.lastSeen.get(tr.id);
        return before !== undefined && before < cam.previousT && input.t - before <= c.flickerWithinS;
      })
      .map((tr) => tr.id);
    if (flickers.length > 0) {
      reasons.push('flicker');
      details.flickers = flickers;
    }

    const frameArea = Math.max(1, input.width * input.height);
    const seen = input.detections.filter((d) => d.score >= c.uncertain.low).map((d) => centreOf(d.box));
    const misses = (input.motion ?? []).filter(
      (r) => boxArea(r) >= c.motionMinShare * frameArea && !seen.some(([x, y]) => boxHolds(r, x, y)),
    ).length;
    if (misses > 0) {
      reasons.push('motion-miss');
      details.motionMisses = misses;
    }

    if (input.spotCheck) {
      const agreement = agreementShare(
        input.detections.filter((d) => d.score >= c.uncertain.high),
        input.spotCheck,
      );
      details.agreement = agreement;
      if (agreement < c.disagreementBelow) reasons.push('disagreement');
    }

    if (!late) this.remember(cam, input);
    if (reasons.length === 0) return undefined;
    this.counters.candidates++;
    const layout = layoutOf(
      input.detections.filter((d) => d.score >= c.uncertain.low),
      input.width,
      input.height,
    );
    const hash = input.hash();
    if (cam.kept.some((k) => k.layout === layout && hashDistance(k.hash, hash) <= c.dedupBits)) {
      this.counters.duplicates++;
      return undefined;
    }
    if (!this.roomFor(0)) {
      this.counters.overBudget++;
      return undefined;
    }
    return { camera: input.camera, t: input.t, reasons, hash, layout, details };
  }

  /**
   * Spends the budget on a decided frame whose JPEG is `bytes` long: true when it fits (the frame
   * is kept: upload it), false when it does not (drop it). Counts it against near-duplicates.
   */
  commit(decision: HarvestDecision, bytes: number): boolean {
    if (!Number.isFinite(bytes) || bytes < 0 || !this.roomFor(bytes)) {
      this.counters.overBudget++;
      return false;
    }
    const now = this.now();
    this.spent.push({ at: now, bytes });
    this.spentBytes += bytes;
    this.counters.kept++;
    this.counters.keptBytes += bytes;
    const cam = this.camera(decision.camera, decision.t);
    cam.kept.push({ hash: decision.hash, layout: decision.layout });
    if (cam.kept.length > this.config.dedupRecent)
      cam.kept.splice(0, cam.kept.length - this.config.dedupRecent);
    return true;
  }

  private roomFor(bytes: number): boolean {
    const now = this.now();
    this.expire(now);
    const c = this.config;
    const last = this.spent.at(-1);
    if (last && now - last.at < c.minIntervalS * 1000) return false;
    if (this.framesSince(now - HOUR_MS) >= c.framesPerHour) return false;
    const dayBytes = c.megabytesPerDay * MiB;
    return bytes === 0 ? this.spentBytes < dayBytes : this.spentBytes + bytes <= dayBytes;
  }

  /** the clock, never going back */
  private now(): number {
    const t = this.clock();
    if (Number.isFinite(t) && t > this.lastNow) this.lastNow = t;
    return this.lastNow;
  }

  private expire(now: number): void {
    let drop = 0;
    while (drop < this.spent.length && this.spent[drop]!.at <= now - DAY_MS) {
      this.spentBytes -= this.spent[drop]!.bytes;
      drop++;
    }
    if (drop > 0) this.spent.splice(0, drop);
  }

  /** kept frames after `since` (the newest are last: counted from the end) */
  private framesSince(since: number): number {
    let n = 0;
    for (let i = this.spent.length - 1; i >= 0 && this.spent[i]!.at > since; i--) n++;
    return n;
  }

  private camera(id: string, t: number): CameraState {
    let cam = this.cameras.get(id);
    if (cam) {
      this.cameras.delete(id);
    } else {
      cam = { previousT: t, lastSeen: new Map(), kept: [] };
      if (this.cameras.size >= MAX_CAMERAS) this.cameras.delete(this.cameras.keys().next().value!);
    }
    this.cameras.set(id, cam);
    return cam;
  }

  private remember(cam: CameraState, input: HarvestInput): void {
    cam.previousT = input.t;
    cam.lastSeen = new Map(input.tracks.slice(0, MAX_TRACKS).map((tr) => [tr.id, tr.lastSeen]));
  }
}

function boxArea([x1, y1, x2, y2]: Readonly<Box>): number {
  return Math.max(0, x2 - x1) * Math.max(0, y2 - y1);
}

/**
 * The share of boxes two models agree on: pairs of the same class with IoU ≥ 0.5 (matched greedily,
 * best IoU first) over the larger of the two sets; 1 when both are empty.
 */
export function agreementShare(running: readonly Detection[], reference: readonly Detection[]): number {
  const larger = Math.max(running.length, reference.length);
  if (larger === 0) return 1;
  const pairs: { i: number; j: number; iou: number }[] = [];
  running.forEach((a, i) => {
    reference.forEach((b, j) => {
      if (a.label !== b.label) return;
      const o = iou(a.box, b.box);
      if (o >= AGREEMENT_IOU) pairs.push({ i, j, iou: o });
    });
  });
  pairs.sort((p, q) => q.iou - p.iou);
  const usedA = new Set<number>();
  const usedB = new Set<number>();
  for (const p of pairs) {
    if (usedA.has(p.i) || usedB.has(p.j)) continue;
    usedA.add(p.i);
    usedB.add(p.j);
  }
  return usedA.size / larger;
}
