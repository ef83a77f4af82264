import { ArgusError } from '../../common/errors.ts';

/** an interleaved 8-bit picture (HWC): a model frame (3 channels) or a grey one (1) */
export interface PixelFrame {
  pixels: Uint8Array;
  width: number;
  height: number;
  /** 3 (RGB or BGR, either works) or 1 */
  channels: 1 | 3;
}

const COLS = 9;
const ROWS = 8;
/** at most this many pixels sampled per cell: the hash costs the same on any frame size */
const SAMPLES_PER_AXIS = 8;

/**
 * A 64-bit difference hash of the frame: the picture averaged down to 9×8 grey cells (a few
 * sampled pixels each), one bit per pair of neighbouring cells in a row (left darker than right).
 * Frames that differ only by noise, compression or a small movement are a few bits apart; another
 * scene is about half the bits apart. Used to skip near-duplicate harvested frames.
 */
export function frameHash(frame: PixelFrame): bigint {
  const { pixels, width, height, channels } = frame;
  if (width < COLS || height < ROWS || pixels.length < width * height * channels) {
    throw new ArgusError(
      `a ${width}×${height}×${channels} frame of ${pixels.length} bytes cannot be hashed`,
      `give the whole frame, at least ${COLS}×${ROWS} pixels`,
    );
  }
  const cells = new Float64Array(COLS * ROWS);
  for (let r = 0; r < ROWS; r++) {
    const y0 = Math.floor((r * height) / ROWS);
    const y1 = Math.floor(((r + 1) * height) / ROWS);
    for (let c = 0; c < COLS; c++) {
      const x0 = Math.floor((c * width) / COLS);
      const x1 = Math.floor(((c + 1) * width) / COLS);
      const stepY = Math.max(1, Math.floor((y1 - y0) / SAMPLES_PER_AXIS));
      const stepX = Math.max(1, Math.floor((x1 - x0) / SAMPLES_PER_AXIS));
      let sum = 0;
      let n = 0;
      for (let y = y0; y < y1; y += stepY) {
        for (let x = x0; x < x1; x += stepX) {
          const i = (y * width + x) * channels;
          sum += channels === 3 ? pixels[i]! + pixels[i + 1]! + pixels[i + 2]! : pixels[i]!;
          n++;
        }
      }
      cells[r * COLS + c] = sum / n;
    }
  }
  let hash = 0n;
  for (let r = 0; r < ROWS; r++) {
    for (let c = 0; c < COLS - 1; c++) {
      hash = (hash << 1n) | (cells[r * COLS + c]! < cells[r * COLS + c + 1]! ? 1n : 0n);
    }
  }
  return hash;
}

/** how many bits two hashes differ in */
export function hashDistance(a: bigint, b: bigint): number {
  let x = a ^ b;
  let n = 0;
  while (x > 0n) {
    n += Number(x & 1n);
    x >>= 1n;
  }
  return n;
}
