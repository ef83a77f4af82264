import type { MotionSettings } from './scene/schema.ts';

const GRID = 64;

/**
 * Cheap motion detection on a 64×64 grey thumbnail sampled from the model frame (2×2 pixels per
 * cell, no resize in JS), against a running-average background. Decides whether a frame is worth
 * running the detector on: when enough of the frame changed, or when the periodic refresh is due
 * so that stationary objects stay tracked.
 */
export class MotionGate {
  private background: Float32Array | undefined;
  private lastDetect = Number.NEGATIVE_INFINITY;
  private readonly offsets: Int32Array;
  private readonly rowBytes: number;
  /** frames seen and frames skipped, for the skipped share in telemetry */
  seen = 0;
  skipped = 0;

  constructor(
    private readonly settings: MotionSettings,
    width: number,
    height: number,
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

  /** share of grid cells that differ from the background; updates the background */
  changedShare(pixels: Uint8Array): number {
    const n = GRID * GRID;
    const grey = new Float32Array(n);
    const row = this.rowBytes;
    for (let i = 0; i < n; i++) {
      const o = this.offsets[i]!;
      let sum = 0;
      for (const d of [0, 3, row, row + 3])
        sum += pixels[o + d]! + 2 * pixels[o + d + 1]! + pixels[o + d + 2]!;
      grey[i] = sum / 16;
    }
    const bg = this.background;
    if (!bg) {
      this.background = grey;
      return 1;
    }
    let changed = 0;
    const threshold = this.settings.pixelThreshold;
    for (let i = 0; i < n; i++) {
      if (Math.abs(grey[i]! - bg[i]!) > threshold) changed++;
      bg[i] = bg[i]! * 0.9 + grey[i]! * 0.1;
    }
    return changed / n;
  }

  /** whether to run detection on this frame (observed at time `t`, seconds) */
  shouldDetect(pixels: Uint8Array, t: number): boolean {
    this.seen++;
    if (!this.settings.enabled) return true;
    const moving = this.changedShare(pixels) >= this.settings.minAreaShare;
    if (moving || t - this.lastDetect >= this.settings.refreshSeconds) {
      this.lastDetect = t;
      return true;
    }
    this.skipped++;
    return false;
  }

  get skippedShare(): number {
    return this.seen === 0 ? 0 : this.skipped / this.seen;
  }
}
