import { iou } from '../../inference/nms.ts';
import type { Box } from '../../inference/rect.ts';

/**
 * Weighted box fusion (Solovyev, Wang and Gabruseva, "Weighted boxes fusion: ensembling boxes from
 * different object detection models", 2021). Where NMS keeps the best of overlapping boxes and
 * drops the rest, WBF averages them: the boxes of every run (a model, a test-time view of the
 * frame) are taken best first and each joins the cluster of its label whose fused box it overlaps
 * at the IoU threshold, or opens a new one. A cluster's box is the score × weight weighted mean of
 * its members' edges, and its score the runs' weighted votes: each run gives the best score it has
 * in the cluster, weighted, and the sum is divided by the weight of the runs that could have seen
 * the object (those whose region holds the box's centre), so a box only some runs find scores lower
 * than one all of them agree on, and a tile that never saw a place does not vote against it.
 */

export interface FusionBox {
  label: string;
  score: number;
  /** [x1, y1, x2, y2] in the common pixel space of all runs */
  box: Box;
}

export interface FusionRun {
  boxes: readonly FusionBox[];
  /** how much the run's votes count (> 0) */
  weight: number;
  /** the part of the frame the run looked at (default: everywhere) */
  region?: Box;
}

export interface FusionOptions {
  /** a box joins a cluster whose fused box it overlaps by at least this IoU */
  iouThreshold: number;
  /** boxes scoring below this are ignored */
  skipBelow: number;
}

interface Cluster {
  label: string;
  box: Box;
  /** Σ score × weight of the members, the denominator of the weighted mean box */
  mass: number;
  sums: [number, number, number, number];
  /** the best score of each run in the cluster, by run index */
  best: Map<number, number>;
}

function covers(region: Box | undefined, [x1, y1, x2, y2]: Box): boolean {
  if (!region) return true;
  const cx = (x1 + x2) / 2;
  const cy = (y1 + y2) / 2;
  return cx >= region[0] && cx < region[2] && cy >= region[1] && cy < region[3];
}

/** the fused boxes of all runs, best first */
export function weightedBoxFusion(runs: readonly FusionRun[], options: FusionOptions): FusionBox[] {
  const candidates = runs
    .flatMap((run, r) =>
      run.boxes
        .filter((b) => b.score >= options.skipBelow && b.box[2] > b.box[0] && b.box[3] > b.box[1])
        .map((b) => ({ run: r, b })),
    )
    .sort((a, b) => b.b.score - a.b.score);
  const clusters: Cluster[] = [];
  for (const { run, b } of candidates) {
    let target: Cluster | undefined;
    let bestIou = options.iouThreshold;
    for (const c of clusters) {
      if (c.label !== b.label) continue;
      const overlap = iou(c.box, b.box);
      if (overlap >= bestIou) {
        bestIou = overlap;
        target = c;
      }
    }
    if (!target) {
      target = { label: b.label, box: [...b.box], mass: 0, sums: [0, 0, 0, 0], best: new Map() };
      clusters.push(target);
    }
    const m = b.score * runs[run]!.weight;
    target.mass += m;
    for (let k = 0; k < 4; k++) target.sums[k] = target.sums[k]! + m * b.box[k]!;
    target.box = target.sums.map((s) => s / target.mass) as Box;
    target.best.set(run, Math.max(target.best.get(run) ?? 0, b.score));
  }
  return clusters
    .map((c) => {
      let votes = 0;
      let possible = 0;
      runs.forEach((run, r) => {
        const best = c.best.get(r);
        if (best !== undefined || covers(run.region, c.box)) possible += run.weight;
        if (best !== undefined) votes += best * run.weight;
      });
      return { label: c.label, box: c.box, score: possible > 0 ? Math.min(1, votes / possible) : 0 };
    })
    .sort((a, b) => b.score - a.score);
}
