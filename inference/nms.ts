/** A detection in some pixel space: [x1, y1, x2, y2] box, class index and score. */
export interface RawDetection {
  box: [number, number, number, number];
  classId: number;
  score: number;
}

export function iou(a: readonly number[], b: readonly number[]): number {
  const ix = Math.max(0, Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!));
  const iy = Math.max(0, Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!));
  const inter = ix * iy;
  if (inter <= 0) return 0;
  const areaA = (a[2]! - a[0]!) * (a[3]! - a[1]!);
  const areaB = (b[2]! - b[0]!) * (b[3]! - b[1]!);
  return inter / (areaA + areaB - inter);
}

/**
 * Class-aware greedy non-maximum suppression: within each class, a box is dropped when it overlaps
 * a higher-scoring kept box by more than `iouThreshold`. Returns at most `limit` detections, best first.
 */
export function nonMaxSuppression<T extends RawDetection>(
  candidates: readonly T[],
  iouThreshold: number,
  limit: number,
): T[] {
  const sorted = [...candidates].sort((a, b) => b.score - a.score);
  const keptByClass = new Map<number, T[]>();
  const kept: T[] = [];
  for (const c of sorted) {
    const same = keptByClass.get(c.classId) ?? [];
    if (same.some((k) => iou(k.box, c.box) > iouThreshold)) continue;
    same.push(c);
    keptByClass.set(c.classId, same);
    kept.push(c);
    if (kept.length >= limit) break;
  }
  return kept;
}
