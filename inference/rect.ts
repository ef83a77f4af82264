/**
 * The pipeline's rectangles, in two forms, each where its arithmetic is the natural one:
 * - `Box`, the edges [x1, y1, x2, y2]: detections, tracks, event payloads and snapshots, in
 *   source-frame pixels (what a detector emits and what IoU and drawing work on);
 * - `Rect`, origin and size: motion regions and the mosaic they are packed into, in model-frame
 *   pixels (what is copied row by row and packed by size).
 * Both are half-open: the right and bottom edges lie outside.
 */
export type Box = [number, number, number, number];

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** the centre of the box */
export function centreOf([x1, y1, x2, y2]: Readonly<Box>): [number, number] {
  return [(x1 + x2) / 2, (y1 + y2) / 2];
}

/** whether the point (x, y) lies inside the box */
export function boxHolds([x1, y1, x2, y2]: Readonly<Box>, x: number, y: number): boolean {
  return x >= x1 && x < x2 && y >= y1 && y < y2;
}

/** the part of the box inside [0, width) × [0, height) (empty when none is, see `isEmptyBox`) */
export function clipBox([x1, y1, x2, y2]: Readonly<Box>, width: number, height: number): Box {
  return [Math.max(0, x1), Math.max(0, y1), Math.min(width, x2), Math.min(height, y2)];
}

/** whether the box holds no pixel; written as a negation so that a NaN edge counts as empty too */
export function isEmptyBox([x1, y1, x2, y2]: Readonly<Box>): boolean {
  return !(x2 > x1 && y2 > y1);
}

/** whether the point (x, y) lies inside the rectangle */
export function rectHolds(r: Rect, x: number, y: number): boolean {
  return x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height;
}

export function rectsOverlap(a: Rect, b: Rect): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

/** the smallest rectangle holding both */
export function rectUnion(a: Rect, b: Rect): Rect {
  const x = Math.min(a.x, b.x);
  const y = Math.min(a.y, b.y);
  return {
    x,
    y,
    width: Math.max(a.x + a.width, b.x + b.width) - x,
    height: Math.max(a.y + a.height, b.y + b.height) - y,
  };
}

/** the pixels the rectangles cover, counting overlaps once per rectangle */
export function areaOf(rects: readonly Rect[]): number {
  return rects.reduce((sum, r) => sum + r.width * r.height, 0);
}

/** the rectangle as a box, each coordinate scaled (`sx`, `sy`: box units per rectangle unit) */
export function boxOf(r: Rect, sx = 1, sy = 1): Box {
  return [r.x * sx, r.y * sy, (r.x + r.width) * sx, (r.y + r.height) * sy];
}

/** the box as a rectangle, each coordinate divided by `sx`, `sy` (box units per rectangle unit) */
export function rectOf([x1, y1, x2, y2]: Readonly<Box>, sx = 1, sy = 1): Rect {
  return { x: x1 / sx, y: y1 / sy, width: (x2 - x1) / sx, height: (y2 - y1) / sy };
}
