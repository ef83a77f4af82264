import { iou } from '../../inference/nms.ts';
import type { Box } from '../../inference/rect.ts';
import { assign } from '../tracking/assignment.ts';

/**
 * Event-level accuracy measures, each with its textbook definition:
 * - crossings: a found crossing matches an annotated one of the same line and direction within
 *   a tolerance, one to one (the most matches; among those, the smallest total time difference);
 *   recall = matched / annotated, precision = matched / found, count error = |found − annotated| / annotated;
 * - occupancy: mean absolute error of the count inside a zone at the annotated frames;
 * - identity: IDF1 (Ristani et al. 2016: the one-to-one matching of annotated and found
 *   trajectories that maximises the frames where both are present and overlap at IoU ≥ 0.5;
 *   IDF1 = 2·IDTP / (annotated boxes + found boxes)) and ID switches (CLEAR MOT, Bernardin and
 *   Stiefelhagen 2008: per frame, an annotated object keeps its previous match while it still
 *   overlaps, the rest are matched optimally; a switch is a match to another id than its last one).
 */

export type Direction = 'in' | 'out';

export interface Crossing {
  /** seconds */
  t: number;
  direction: Direction;
}

export interface CrossingScore {
  truth: number;
  found: number;
  matched: number;
  recall: number;
  precision: number;
  /** |found − truth| / truth (found when truth is 0) */
  countError: number;
}

/** one-to-one matching of found to annotated times within ±tolerance: for each annotated time, the found index or -1 */
export function matchTimePairs(
  truth: readonly number[],
  found: readonly number[],
  tolerance: number,
): number[] {
  if (truth.length === 0 || found.length === 0) return truth.map(() => -1);
  const limit = tolerance + 1e-9;
  const cost = truth.map((a) => found.map((b) => Math.abs(a - b)));
  return assign(cost, limit).map((j, i) => (j >= 0 && cost[i]![j]! < limit ? j : -1));
}

/** the number of annotated times matched one to one by found times within ±tolerance */
export function matchTimes(truth: readonly number[], found: readonly number[], tolerance: number): number {
  return matchTimePairs(truth, found, tolerance).filter((j) => j >= 0).length;
}

function ratio(num: number, den: number, empty: number): number {
  return den === 0 ? empty : num / den;
}

export function scoreCrossings(
  truth: readonly Crossing[],
  found: readonly Crossing[],
  tolerance: number,
): CrossingScore {
  let matched = 0;
  for (const direction of ['in', 'out'] as const) {
    matched += matchTimes(
      truth.filter((c) => c.direction === direction).map((c) => c.t),
      found.filter((c) => c.direction === direction).map((c) => c.t),
      tolerance,
    );
  }
  return {
    truth: truth.length,
    found: found.length,
    matched,
    recall: ratio(matched, truth.length, 1),
    precision: ratio(matched, found.length, 1),
    countError: truth.length === 0 ? found.length : Math.abs(found.length - truth.length) / truth.length,
  };
}

/** mean absolute difference of found and annotated counts, pair by pair */
export function meanAbsoluteError(pairs: readonly { truth: number; found: number }[]): number {
  if (pairs.length === 0) return 0;
  return pairs.reduce((s, p) => s + Math.abs(p.found - p.truth), 0) / pairs.length;
}

export interface IdentifiedBox {
  id: number;
  box: Box;
}

/** boxes with identities on the frames of a segment; a frame missing from `found` has no found box */
export type TrackFrames = ReadonlyMap<number, readonly IdentifiedBox[]>;

export interface IdentityScore {
  idf1: number;
  idp: number;
  idr: number;
  idtp: number;
  /** annotated and found boxes on the annotated frames */
  truthBoxes: number;
  foundBoxes: number;
  idSwitches: number;
  /** where each switch happened: frame, annotated id, found id before and after */
  switches: { frame: number; truth: number; from: number; to: number }[];
}

/** IDF1 and ID switches of `found` tracks against `truth` on the frames of `truth` */
export function scoreIdentities(truth: TrackFrames, found: TrackFrames, minIou = 0.5): IdentityScore {
  const frames = [...truth.keys()].sort((a, b) => a - b);
  const gtIds = new Map<number, number>();
  const prIds = new Map<number, number>();
  const index = (m: Map<number, number>, id: number) => {
    if (!m.has(id)) m.set(id, m.size);
    return m.get(id)!;
  };
  const overlap = new Map<string, number>();
  let truthBoxes = 0;
  let foundBoxes = 0;
  let idSwitches = 0;
  const switches: IdentityScore['switches'] = [];
  const last = new Map<number, number>();
  for (const f of frames) {
    const gts = truth.get(f) ?? [];
    const prs = found.get(f) ?? [];
    truthBoxes += gts.length;
    foundBoxes += prs.length;
    for (const g of gts) index(gtIds, g.id);
    for (const p of prs) index(prIds, p.id);
    // IDF1: every overlapping pair counts towards its trajectories' pair, whatever this frame's matching
    for (const g of gts) {
      for (const p of prs) {
        if (iou(g.box, p.box) < minIou) continue;
        const key = `${g.id}:${p.id}`;
        overlap.set(key, (overlap.get(key) ?? 0) + 1);
      }
    }
    // CLEAR MOT: keep last frame's correspondences that still overlap, match the rest optimally
    const taken = new Set<number>();
    const open: IdentifiedBox[] = [];
    for (const g of gts) {
      const prev = last.get(g.id);
      const p = prev === undefined ? undefined : prs.find((x) => x.id === prev);
      if (p && !taken.has(p.id) && iou(g.box, p.box) >= minIou) taken.add(p.id);
      else open.push(g);
    }
    const free = prs.filter((p) => !taken.has(p.id));
    if (open.length > 0 && free.length > 0) {
      const cost = open.map((g) => free.map((p) => 1 - iou(g.box, p.box)));
      const limit = 1 - minIou + 1e-9;
      assign(cost, limit).forEach((j, i) => {
        if (j < 0 || cost[i]![j]! >= limit) return;
        const g = open[i]!;
        const p = free[j]!;
        const prev = last.get(g.id);
        if (prev !== undefined && prev !== p.id) {
          idSwitches++;
          if (switches.length < 100) switches.push({ frame: f, truth: g.id, from: prev, to: p.id });
        }
        last.set(g.id, p.id);
      });
    }
  }
  // IDF1's trajectory matching: maximise the summed overlap frames
  const g = [...gtIds.keys()];
  const p = [...prIds.keys()];
  let idtp = 0;
  if (g.length > 0 && p.length > 0) {
    const cost = g.map((a) => p.map((b) => -(overlap.get(`${a}:${b}`) ?? 0)));
    assign(cost, 1).forEach((j, i) => {
      if (j >= 0) idtp -= cost[i]![j]!;
    });
  }
  return {
    idf1: ratio(2 * idtp, truthBoxes + foundBoxes, 1),
    idp: ratio(idtp, foundBoxes, 1),
    idr: ratio(idtp, truthBoxes, 1),
    idtp,
    truthBoxes,
    foundBoxes,
    idSwitches,
    switches,
  };
}
