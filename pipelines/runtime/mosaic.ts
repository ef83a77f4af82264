import type { Detection } from '../../inference/detector.ts';
import type { InputSize, ModelFrame } from '../../inference/model-frame.ts';
import { type Box, centreOf, type Rect, rectHolds } from '../../inference/rect.ts';

/** pixels left between regions, so that a region's neighbour does not reach into its detections */
const GAP = 8;

/** a stretch of the skyline: the columns from `x`, `width` wide, are free from `y` down */
interface Segment {
  x: number;
  width: number;
  y: number;
}

interface Placed<T> {
  owner: T;
  frame: ModelFrame;
  region: Rect;
  /** where the region sits in the mosaic (the region's size) */
  at: Rect;
}

/**
 * One model input assembled from the moving regions of several frames, each copied at the model
 * frame's own scale (objects keep the size they have in a whole frame), each at the lowest spot
 * where it fits (leftmost among equals) on the skyline of the regions placed before it, so short
 * regions stack beside tall ones instead of leaving the rest of a shelf empty.
 * For a model that takes smaller inputs (`sizeStep`), the input is only as large as the regions
 * placed, rounded up to the step: inference costs what the regions cover, not the whole size.
 * Detections in the mosaic go back to the frame whose region holds their centre, clipped to that
 * region and in that frame's source pixels.
 */
export class Mosaic<T> {
  private skyline: Segment[];
  private readonly placed: Placed<T>[] = [];
  private readonly owners: T[] = [];

  /** at most `width` × `height`; a multiple of `sizeStep` as small as the regions allow when given */
  constructor(
    readonly width: number,
    readonly height: number,
    private readonly sizeStep?: number,
  ) {
    this.skyline = [{ x: 0, width, y: 0 }];
  }

  /** the owners of the regions placed, in the order they were placed */
  get members(): readonly T[] {
    return this.owners;
  }

  /** places all of `regions` (rectangles of `frame`, which has the mosaic's size) or, when they do not fit, none */
  tryPlace(owner: T, frame: ModelFrame, regions: readonly Rect[]): boolean {
    let skyline = this.skyline;
    const placed: Placed<T>[] = [];
    for (const region of [...regions].sort((a, b) => b.height - a.height)) {
      const spot = this.spot(skyline, region);
      if (!spot) return false;
      skyline = raise(
        skyline,
        spot.x,
        Math.min(this.width, spot.x + region.width + GAP),
        spot.y + region.height + GAP,
      );
      placed.push({ owner, frame, region, at: { ...spot, width: region.width, height: region.height } });
    }
    this.skyline = skyline;
    this.placed.push(...placed);
    this.owners.push(owner);
    return true;
  }

  /** the lowest spot on the skyline where `r` fits, leftmost among equals; undefined when none */
  private spot(skyline: readonly Segment[], r: Rect): { x: number; y: number } | undefined {
    let best: { x: number; y: number } | undefined;
    for (let i = 0; i < skyline.length; i++) {
      const x = skyline[i]!.x;
      if (x + r.width > this.width) break;
      let y = 0;
      // the gap on its right must be clear too (each region keeps the gap right of and below it)
      for (let j = i; j < skyline.length && skyline[j]!.x < x + r.width + GAP; j++)
        y = Math.max(y, skyline[j]!.y);
      if (y + r.height <= this.height && (!best || y < best.y)) best = { x, y };
    }
    return best;
  }

  /** the input's size: the whole size, or the regions' extent rounded up to the size step */
  private inputSize(): InputSize {
    const step = this.sizeStep;
    if (step === undefined) return { width: this.width, height: this.height };
    let right = 0;
    let bottom = 0;
    for (const { at } of this.placed) {
      right = Math.max(right, at.x + at.width);
      bottom = Math.max(bottom, at.y + at.height);
    }
    const fit = (extent: number, max: number) =>
      Math.min(max, Math.max(step, Math.ceil(extent / step) * step));
    return { width: fit(right, this.width), height: fit(bottom, this.height) };
  }

  /** the mosaic as a model frame (detections come back in mosaic pixels), its pixels for the detector to keep */
  frame(): ModelFrame {
    const size = this.inputSize();
    const rowBytes = size.width * 3;
    const frameRowBytes = this.width * 3;
    const pixels = new Uint8Array(size.height * rowBytes);
    for (const p of this.placed) {
      const { region: r, frame, at } = p;
      const length = r.width * 3;
      for (let row = 0; row < r.height; row++) {
        const from = (r.y + row) * frameRowBytes + r.x * 3;
        pixels.set(frame.pixels.subarray(from, from + length), (at.y + row) * rowBytes + at.x * 3);
      }
    }
    return { pixels, size, sourceWidth: size.width, sourceHeight: size.height, handedOver: true };
  }

  /** each owner's detections (every owner, none for some), from the detections of `frame()` */
  distribute(detections: readonly Detection[]): Map<T, Detection[]> {
    const out = new Map<T, Detection[]>(this.owners.map((o) => [o, []]));
    for (const d of detections) {
      const [cx, cy] = centreOf(d.box);
      const p = this.placed.find((q) => rectHolds(q.at, cx, cy));
      if (!p) continue;
      const sx = p.frame.sourceWidth / this.width;
      const sy = p.frame.sourceHeight / this.height;
      const toFrameX = (x: number) =>
        (Math.min(Math.max(x, p.at.x), p.at.x + p.at.width) - p.at.x + p.region.x) * sx;
      const toFrameY = (y: number) =>
        (Math.min(Math.max(y, p.at.y), p.at.y + p.at.height) - p.at.y + p.region.y) * sy;
      const box: Box = [toFrameX(d.box[0]), toFrameY(d.box[1]), toFrameX(d.box[2]), toFrameY(d.box[3])];
      out.get(p.owner)!.push({ ...d, box });
    }
    return out;
  }
}

/** the skyline with the columns from `from` to `to` free only from `y` down */
function raise(skyline: readonly Segment[], from: number, to: number, y: number): Segment[] {
  const out: Segment[] = [];
  const push = (x: number, width: number, top: number) => {
    const last = out.at(-1);
    if (last && last.y === top) last.width += width;
    else out.push({ x, width, y: top });
  };
  for (const s of skyline) {
    const end = s.x + s.width;
    if (s.x < from) push(s.x, Math.min(end, from) - s.x, s.y);
    if (s.x <= from && end > from) push(from, to - from, y);
    if (end > to) push(Math.max(s.x, to), end - Math.max(s.x, to), s.y);
  }
  return out;
}
