import { areaOf, type Rect, rectHolds, rectsOverlap, rectUnion } from '../inference/rect.ts';
import type { MotionSettings } from './scene/schema.ts';

const GRID = 64;
/**
 * weight of the newest frame in the background: high enough that a moving object leaves no long
 * trail of changed cells behind it (at 5 frames/s, 0.5 halves a trail every frame)
 */
const BACKGROUND_ALPHA = 0.5;
/** changed cells grow by this many cells on every side before they are grouped into regions */
const MARGIN_CELLS = 1;

/** what to detect of a frame: nothing, the whole frame, or only regions of it */
export type MotionDecision = { detect: false } | { detect: true; regions?: Rect[] };

/** merges overlapping rectangles until none overlap */
function mergeOverlapping(rects: Rect[]): Rect[] {
  const out = [...rects];
  for (let merged = true; merged; ) {
    merged = false;
    for (let i = 0; i < out.length && !merged; i++) {
      for (let j = i + 1; j < out.length; j++) {
        if (!rectsOverlap(out[i]!, out[j]!)) continue;
        out[i] = rectUnion(out[i]!, out[j]!);
        out.splice(j, 1);
        merged = true;
        break;
      }
    }
  }
  return out;
}

/**
 * Cheap motion detection on a 64×64 grey thumbnail sampled from the model frame (2×2 pixels per
 * cell, no resize in JS), against a running-average background. Decides what of a frame the
 * detector should see:
 * - the whole frame on the first frame, every `wholeFrameSeconds` (what appeared without moving)
 *   and whenever the regions would cover more than `maxRegionShare` of it;
 * - the moving regions — changed cells grown by a margin, grouped into connected regions, their
 *   bounding boxes merged where they overlap and grown to hold whole the tracked objects they
 *   overlap — and, every `refreshSeconds`, the regions of the
 *   tracked objects the moving regions do not hold, so that stationary objects stay tracked (a
 *   refresh that would pass `maxRegionShare` waits for a frame with room: under load the tracks
 *   multiply, and a refresh that made frames whole fed the overload);
 * - nothing when nothing moved and no refresh is due.
 * Without `regions`, the whole frame whenever anything moved or the refresh is due.
 */
export class MotionGate {
  private background: Float32Array | undefined;
  /** when the next whole frame and the next look at the tracked objects are due */
  private nextWhole = Number.NEGATIVE_INFINITY;
  private nextRefresh = Number.NEGATIVE_INFINITY;
  private wholes = 0;
  private readonly offsets: Int32Array;
  private readonly rowBytes: number;
  private readonly changed = new Uint8Array(GRID * GRID);
  /** the changed cells grown by the margin, and the flood fill's stack (reused from frame to frame) */
  private readonly grown = new Uint8Array(GRID * GRID);
  private readonly stack: number[] = [];
  /** this frame's grey cells (reused from frame to frame) */
  private readonly grey = new Float32Array(GRID * GRID);
  /** frames seen and frames skipped, for the skipped share in telemetry */
  seen = 0;
  skipped = 0;
  /** the detected share of the frames seen, counting a whole frame as 1 (a skipped one as 0) */
  private searchedArea = 0;

  /**
   * `phase` (0–1) shifts this camera's periods after the first frame (the first period lasts 0.5–1
   * of its length), so that cameras started together do not send their whole frames to the
   * detector at the same moment
   */
  constructor(
    private readonly settings: MotionSettings,
    private readonly width: number,
    private readonly height: number,
    private readonly phase = 0,
  ) {
    this.offsets = new Int32Array(GRID * GRID);
    for (let gy = 0; gy < GRID; gy++) {
      const y = Math.min(height - 2, Math.floor(((gy + 0.5) * height) / GRID));
      for (let gx = 0; gx < GRID; gx++) {
        const x = Math.min(width - 2, Math.floor(((gx + 0.5) * width) / GRID));
        this.offsets[gy * GRID + gx] = (y * width + x) * 3;
      }
    }
    this.rowBytes = width * 3;
  }

  /**
   * marks the grid cells that differ from the background (in `changed`) and updates the
   * background; returns the share of cells changed (1 for the first frame)
   */
  private compare(pixels: Uint8Array): number {
    const n = GRID * GRID;
    const grey = this.grey;
    const row = this.rowBytes;
    // the cell's 2×2 pixels, each weighted B + 2G + R
    const luma = (o: number) => pixels[o]! + 2 * pixels[o + 1]! + pixels[o + 2]!;
    for (let i = 0; i < n; i++) {
      const o = this.offsets[i]!;
      grey[i] = (luma(o) + luma(o + 3) + luma(o + row) + luma(o + row + 3)) / 16;
    }
    const bg = this.background;
    if (!bg) {
      this.background = grey.slice();
      this.changed.fill(1);
      return 1;
    }
    let count = 0;
    const threshold = this.settings.pixelThreshold;
    for (let i = 0; i < n; i++) {
      const moved = Math.abs(grey[i]! - bg[i]!) > threshold;
      this.changed[i] = moved ? 1 : 0;
      if (moved) count++;
      bg[i] = bg[i]! * (1 - BACKGROUND_ALPHA) + grey[i]! * BACKGROUND_ALPHA;
    }
    return count / n;
  }

  /** the changed cells, grown by the margin, as bounding boxes of their connected groups */
  private movingRegions(): Rect[] {
    const { grown, stack } = this;
    grown.fill(0);
    for (let gy = 0; gy < GRID; gy++) {
      for (let gx = 0; gx < GRID; gx++) {
        if (!this.changed[gy * GRID + gx]) continue;
        for (let y = Math.max(0, gy - MARGIN_CELLS); y <= Math.min(GRID - 1, gy + MARGIN_CELLS); y++)
          grown.fill(
            1,
            y * GRID + Math.max(0, gx - MARGIN_CELLS),
            y * GRID + Math.min(GRID, gx + MARGIN_CELLS + 1),
          );
      }
    }
    const boxes: Rect[] = [];
    const visit = (next: number) => {
      if (grown[next] !== 1) return;
      grown[next] = 2;
      stack.push(next);
    };
    for (let start = 0; start < grown.length; start++) {
      if (grown[start] !== 1) continue;
      let [x1, y1, x2, y2] = [GRID, GRID, -1, -1];
      grown[start] = 2;
      stack.push(start);
      while (stack.length > 0) {
        const cell = stack.pop()!;
        const gx = cell % GRID;
        const gy = (cell - gx) / GRID;
        x1 = Math.min(x1, gx);
        y1 = Math.min(y1, gy);
        x2 = Math.max(x2, gx);
        y2 = Math.max(y2, gy);
        if (gx > 0) visit(cell - 1);
        if (gx < GRID - 1) visit(cell + 1);
        if (gy > 0) visit(cell - GRID);
        if (gy < GRID - 1) visit(cell + GRID);
      }
      const x = Math.floor((x1 * this.width) / GRID);
      const y = Math.floor((y1 * this.height) / GRID);
      boxes.push({
        x,
        y,
        width: Math.ceil(((x2 + 1) * this.width) / GRID) - x,
        height: Math.ceil(((y2 + 1) * this.height) / GRID) - y,
      });
    }
    return boxes;
  }

  /**
   * a tracked object's box (model-frame pixels) with context around it — half its larger side, at
   * least the margin — kept inside the frame
   */
  private trackedRegion(r: Rect): Rect {
    const margin = Math.max((MARGIN_CELLS * this.width) / GRID, Math.max(r.width, r.height) / 2);
    const x = Math.max(0, Math.floor(r.x - margin));
    const y = Math.max(0, Math.floor(r.y - margin));
    return {
      x,
      y,
      width: Math.min(this.width, Math.ceil(r.x + r.width + margin)) - x,
      height: Math.min(this.height, Math.ceil(r.y + r.height + margin)) - y,
    };
  }

  /**
   * the moving regions grown to hold whole every tracked object they overlap (with the margin):
   * a person who only moves an arm or a leg changes some of their cells, and a region cut across
   * them shows the detector part of a person, whose short box the tracker takes for the person
   */
  private holdTracked(regions: Rect[], objects: readonly Rect[]): Rect[] {
    if (objects.length === 0) return regions;
    const m = (MARGIN_CELLS * this.width) / GRID;
    const grown = regions.map((region) =>
      objects.reduce((r, o) => {
        if (!rectsOverlap(r, o)) return r;
        const x = Math.max(0, Math.floor(o.x - m));
        const y = Math.max(0, Math.floor(o.y - m));
        const held = {
          x,
          y,
          width: Math.min(this.width, Math.ceil(o.x + o.width + m)) - x,
          height: Math.min(this.height, Math.ceil(o.y + o.height + m)) - y,
        };
        return held.width > 0 && held.height > 0 ? rectUnion(r, held) : r;
      }, region),
    );
    return mergeOverlapping(grown);
  }

  /**
   * what to detect of this frame (observed at time `t`, seconds); `tracked` gives the boxes of the
   * objects tracked so far (model-frame pixels), asked whenever regions are decided (a moving
   * region holds whole the objects it overlaps; a refresh looks at the others)
   */
  assess(pixels: Uint8Array, t: number, tracked: () => readonly Rect[] = () => []): MotionDecision {
    this.seen++;
    const { settings } = this;
    const first = this.wholes === 0;
    const stagger = (period: number) => (first ? period * (1 - this.phase / 2) : period);
    const whole = (): MotionDecision => {
      this.nextWhole = t + stagger(settings.regions ? settings.wholeFrameSeconds : settings.refreshSeconds);
      this.nextRefresh = t + stagger(settings.refreshSeconds);
      this.wholes++;
      this.searchedArea += 1;
      return { detect: true };
    };
    const skip = (): MotionDecision => {
      this.skipped++;
      return { detect: false };
    };
    if (!settings.enabled) return whole();
    const moving = this.compare(pixels) >= settings.minAreaShare;
    if (!settings.regions) return moving || t >= this.nextRefresh ? whole() : skip();
    if (t >= this.nextWhole) return whole();
    const refresh = this.refreshDue(t);
    if (!moving && !refresh) return skip();
    const objects = tracked();
    const movingRegions = moving ? this.holdTracked(mergeOverlapping(this.movingRegions()), objects) : [];
    // a refresh looks at the tracked objects the moving regions do not already hold
    const resting = refresh
      ? objects
          .filter((r) => !movingRegions.some((m) => rectHolds(m, r.x + r.width / 2, r.y + r.height / 2)))
          .map((r) => this.trackedRegion(r))
          .filter((r) => r.width > 0 && r.height > 0)
      : [];
    const frameArea = this.width * this.height;
    let regions = resting.length > 0 ? mergeOverlapping([...movingRegions, ...resting]) : movingRegions;
    if (refresh && resting.length > 0 && areaOf(regions) / frameArea > settings.maxRegionShare) {
      // too much for one frame: the refresh waits for a quieter frame (or the next whole frame)
      // rather than making this one whole
      regions = movingRegions;
    } else if (refresh) this.nextRefresh = t + settings.refreshSeconds;
    if (regions.length === 0) return skip();
    const share = areaOf(regions) / frameArea;
    if (share > settings.maxRegionShare) return whole();
    this.searchedArea += share;
    return { detect: true, regions };
  }

  /** whether a frame at `t` would look at the tracked objects the moving regions do not hold */
  refreshDue(t: number): boolean {
    const { enabled, regions } = this.settings;
    return enabled && regions && t >= this.nextRefresh && t < this.nextWhole;
  }

  /**
   * whether the decision for a frame at `t` depends on what is tracked: every frame decided by
   * regions (a replay catches up with its detections first)
   */
  readsTracked(t: number): boolean {
    const { enabled, regions } = this.settings;
    return enabled && regions && t < this.nextWhole;
  }

  get skippedShare(): number {
    return this.seen === 0 ? 0 : this.skipped / this.seen;
  }

  /** the share of the pixels seen that went to the detector */
  get searchedShare(): number {
    return this.seen === 0 ? 0 : this.searchedArea / this.seen;
  }
}
