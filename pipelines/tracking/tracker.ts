import type { Detection } from '../../inference/detector.ts';
import { iou } from '../../inference/nms.ts';
import { type Box, boxHolds, centreOf } from '../../inference/rect.ts';
import type { TrackerSettings } from '../scene/schema.ts';
import { assign } from './assignment.ts';
import { BoxFilter } from './kalman.ts';

/** an object followed across frames; `box` is the filtered box in source pixels */
export interface Track {
  id: number;
  label: string;
  score: number;
  box: Box;
  /** the detection box of the last match (unfiltered) */
  detectionBox: Box;
  /** velocity of the box centre, pixels per second */
  velocity: [number, number];
  firstSeen: number;
  lastSeen: number;
  hits: number;
  confirmed: boolean;
}

interface TrackState extends Track {
  filter: BoxFilter;
  lastPredicted: number;
  /** cumulative score per label: the track's label is the one with the most evidence */
  evidence: Map<string, number>;
}

/** whether the frame's search covered the box's centre (all of the frame when `searched` is undefined) */
function lookedFor(box: Box, searched: readonly Box[] | undefined): boolean {
  if (!searched) return true;
  const [cx, cy] = centreOf(box);
  return searched.some((r) => boxHolds(r, cx, cy));
}

/**
 * ByteTrack-style multi-object tracker. Each frame: predict every track to the frame time with a
 * constant-velocity Kalman filter, match high-score detections to tracks by IoU (optimal
 * assignment), then give the remaining tracks a second chance with the low-score detections,
 * start tentative tracks from unmatched high-score detections, and end tracks unmatched for longer
 * than `maxAgeSeconds`. Association is class-agnostic (a van flickering between "car" and "truck"
 * stays one track); a track's label is the class with the most accumulated score.
 */
export class Tracker {
  private tracks: TrackState[] = [];
  private nextId = 1;

  /**
   * `frame` is the frame's box (source pixels): a track predicted out of it has left, and ends at
   * once (no region ever covers it, so it would otherwise be carried until the next whole frame)
   */
  constructor(
    private readonly settings: TrackerSettings,
    private readonly frame?: Box,
  ) {}

  /**
   * Updates with the detections of the frame at time `t` (seconds); returns the confirmed tracks.
   * When only `searched` boxes of the frame were looked at (its moving regions), a track whose
   * centre lies outside all of them was not looked for: nothing moved there, so it is held where it
   * was (not predicted on, its velocity zero) and carried as it is, neither aged out nor, while
   * tentative, dropped for missing its confirmation.
   */
  update(detections: readonly Detection[], t: number, searched?: readonly Box[]): Track[] {
    for (const tr of this.tracks) {
      // where the frame was not searched nothing moved: the object there stands where it was
      if (lookedFor(tr.box, searched)) tr.filter.predict(Math.max(0, t - tr.lastPredicted));
      else tr.filter.stop();
      tr.lastPredicted = t;
      tr.box = tr.filter.box();
    }
    const s = this.settings;
    const high = detections.filter((d) => d.score >= s.highScore);
    const low = detections.filter((d) => d.score >= s.lowScore && d.score < s.highScore);

    const unmatchedTracks = this.match(this.tracks, high, t, (d) => high.splice(high.indexOf(d), 1));
    const confirmedLeft = unmatchedTracks.filter((tr) => tr.confirmed);
    this.match(confirmedLeft, low, t, () => undefined);

    for (const d of high) {
      const filter = new BoxFilter(d.box);
      this.tracks.push({
        id: this.nextId++,
        label: d.label,
        score: d.score,
        box: d.box,
        detectionBox: d.box,
        velocity: [0, 0],
        firstSeen: t,
        lastSeen: t,
        lastPredicted: t,
        hits: 1,
        confirmed: s.minHits <= 1,
        filter,
        evidence: new Map([[d.label, d.score]]),
      });
    }
    const inFrame = (box: Box) => !this.frame || lookedFor(box, [this.frame]);
    this.tracks = this.tracks.filter(
      (tr) =>
        tr.lastSeen === t ||
        (inFrame(tr.box) &&
          (!lookedFor(tr.box, searched) || (t - tr.lastSeen <= s.maxAgeSeconds && tr.confirmed))),
    );
    return this.active();
  }

  /** matches `detections` to `tracks`; returns the tracks left unmatched */
  private match(
    tracks: TrackState[],
    detections: Detection[],
    t: number,
    consumed: (d: Detection) => void,
  ): TrackState[] {
    if (tracks.length === 0 || detections.length === 0) return tracks;
    const cost = tracks.map((tr) => detections.map((d) => 1 - iou(tr.box, d.box)));
    const assignment = assign(cost, 1 - this.settings.matchIou);
    const used: Detection[] = [];
    const left: TrackState[] = [];
    tracks.forEach((tr, i) => {
      const j = assignment[i]!;
      if (j < 0) {
        left.push(tr);
        return;
      }
      const d = detections[j]!;
      used.push(d);
      tr.filter.update(d.box);
      tr.box = tr.filter.box();
      tr.detectionBox = d.box;
      tr.velocity = tr.filter.velocity();
      tr.score = d.score;
      tr.lastSeen = t;
      tr.hits++;
      if (tr.hits >= this.settings.minHits) tr.confirmed = true;
      tr.evidence.set(d.label, (tr.evidence.get(d.label) ?? 0) + d.score);
      tr.label = [...tr.evidence.entries()].sort((a, b) => b[1] - a[1])[0]![0];
    });
    for (const d of used) consumed(d);
    return left;
  }

  /** the box of every track, tentative ones included, as of the last update */
  boxes(): Box[] {
    return this.tracks.map((tr) => [...tr.box] as Box);
  }

  /** confirmed tracks, including those briefly unmatched (still within maxAgeSeconds) */
  active(): Track[] {
    return this.tracks
      .filter((tr) => tr.confirmed)
      .map(({ filter: _f, lastPredicted: _p, evidence: _e, ...track }) => ({
        ...track,
        box: [...track.box] as Box,
      }));
  }

  reset(): void {
    this.tracks = [];
  }
}
