import { iou } from './nms.ts';
import type { Box } from './rect.ts';

/**
 * Average precision of detections against ground truth, VOC style: detections of all frames ranked
 * by score, each matched greedily to the unmatched ground-truth box of its frame with the highest
 * IoU (at least the threshold); AP is the area under the precision/recall curve with precision
 * made monotonically decreasing ("all-point interpolation").
 */

export interface LabelledBox {
  label: string;
  box: Readonly<Box>;
}

export interface ScoredBox extends LabelledBox {
  score: number;
}

/** one frame: the boxes taken as truth and the boxes the candidate found */
export interface FrameMatch {
  truth: readonly LabelledBox[];
  found: readonly ScoredBox[];
}

export interface ClassAp {
  label: string;
  /** undefined when the class has no ground truth (it then only counts false positives) */
  ap: number | undefined;
  truths: number;
  detections: number;
  truePositives: number;
}

export interface MapResult {
  /** mean of the per-class AP over the classes with at least `minTruths` ground-truth boxes (NaN if none) */
  map: number;
  perClass: ClassAp[];
}

function classAp(frames: readonly FrameMatch[], label: string, iouThreshold: number): ClassAp {
  const truths = frames.map((f) => f.truth.filter((t) => t.label === label).map((t) => t.box));
  const totalTruths = truths.reduce((a, t) => a + t.length, 0);
  const ranked = frames
    .flatMap((f, frame) => f.found.filter((d) => d.label === label).map((d) => ({ frame, d })))
    .sort((a, b) => b.d.score - a.d.score);
  const used = truths.map((t) => new Array<boolean>(t.length).fill(false));
  const tp: number[] = [];
  for (const { frame, d } of ranked) {
    let best = -1;
    let bestIou = iouThreshold;
    truths[frame]!.forEach((t, i) => {
      if (used[frame]![i]) return;
      const overlap = iou(d.box, t);
      if (overlap >= bestIou) {
        bestIou = overlap;
        best = i;
      }
    });
    if (best >= 0) used[frame]![best] = true;
    tp.push(best >= 0 ? 1 : 0);
  }
  const truePositives = tp.reduce((a, b) => a + b, 0);
  if (totalTruths === 0) {
    return { label, ap: undefined, truths: 0, detections: ranked.length, truePositives };
  }
  const recall: number[] = [];
  const precision: number[] = [];
  let cumulative = 0;
  tp.forEach((hit, i) => {
    cumulative += hit;
    recall.push(cumulative / totalTruths);
    precision.push(cumulative / (i + 1));
  });
  for (let i = precision.length - 2; i >= 0; i--) precision[i] = Math.max(precision[i]!, precision[i + 1]!);
  let ap = 0;
  let previousRecall = 0;
  recall.forEach((r, i) => {
    ap += (r - previousRecall) * precision[i]!;
    previousRecall = r;
  });
  return { label, ap, truths: totalTruths, detections: ranked.length, truePositives };
}

/**
 * Per-class AP at the IoU threshold for the classes in `labels`, and their mean over the classes
 * with at least `minTruths` ground-truth boxes: a class seen once or twice would otherwise swing
 * the mean by itself.
 */
export function meanAveragePrecision(
  frames: readonly FrameMatch[],
  labels: readonly string[],
  options: { iouThreshold: number; minTruths: number } = { iouThreshold: 0.5, minTruths: 1 },
): MapResult {
  const perClass = labels.map((l) => classAp(frames, l, options.iouThreshold));
  const counted = perClass.filter((c) => c.ap !== undefined && c.truths >= options.minTruths);
  const map = counted.length > 0 ? counted.reduce((a, c) => a + c.ap!, 0) / counted.length : Number.NaN;
  return { map, perClass };
}
