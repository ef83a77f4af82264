import type { Box, Detection } from '../detector/detector.ts';
import type { InputSize, ModelFrame } from '../detector/model-frame.ts';
import { holdsPoint, type Rect } from '../motion.ts';

/** pixels left between regions, so that a region's neighbour does not reach into its detections */
const GAP = 8;

interface Shelf {
  y: number;
  height: number;
  /** where the next region on this shelf starts */
  x: number;
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
 * frame's own scale (objects keep the size they have in a whole frame), placed shelf by shelf.
 * For a model that takes smaller inputs (`sizeStep`), the input is only as large as the regions
 * placed, rounded up to the step: inference costs what the regions cover, not the whole size.
 * Detections in the mosaic go back to the frame whose region holds their centre, clipped to that
 * region and in that frame's source pixels.
 */
export class Mosaic<T> {
  private shelves: Shelf[] = [];
  private readonly placed: Placed<T>[] = [];
  private readonly owners: T[] = [];

  /** at most `width` × `height`; a multiple of `sizeStep` as small as the regions allow when given */
  constructor(
    readonly width: number,
    readonly height: number,
    private readonly sizeStep?: number,
  ) {}

  /** the owners of the regions placed, in the order they were placed */
  get members(): readonly T[] {
    return this.owners;
  }

  /** places all of `regions` (rectangles of `frame`, which has the mosaic's size) or, when they do not fit, none */
  tryPlace(owner: T, frame: ModelFrame, regions: readonly Rect[]): boolean {
    const shelves = this.shelves.map((s) => ({ ...s }));
    const placed: Placed<T>[] = [];
    for (const region of [...regions].sort((a, b) => b.height - a.height)) {
      const spot = this.spot(shelves, region);
      if (!spot) return false;
      placed.push({ owner, frame, region, at: { ...spot, width: region.width, height: region.height } });
    }
    this.shelves = shelves;
    this.placed.push(...placed);
    this.owners.push(owner);
    return true;
  }

  /** the lowest shelf with room, else a new shelf below the last; undefined when the mosaic is full */
  private spot(shelves: Shelf[], r: Rect): { x: number; y: number } | undefined {
    let best: Shelf | undefined;
    for (const s of shelves)
      if (r.height <= s.height && s.x + r.width <= this.width && (!best || s.height < best.height)) best = s;
    if (!best) {
      const last = shelves.at(-1);
      const y = last ? last.y + last.height + GAP : 0;
      if (y + r.height > this.height || r.width > this.width) return undefined;
      best = { y, height: r.height, x: 0 };
      shelves.push(best);
    }
    const spot = { x: best.x, y: best.y };
    best.x += r.width + GAP;
    return spot;
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
      const cx = (d.box[0] + d.box[2]) / 2;
      const cy = (d.box[1] + d.box[3]) / 2;
      const p = this.placed.find((q) => holdsPoint(q.at, cx, cy));
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
