import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { i420ToRgb } from '../../pipelines/snapshot.ts';
import type { FullFrame } from '../../pipelines/video/frame-source.ts';
import { readFrames } from '../helpers/frames.ts';

/**
 * The conversion as i420ToRgb did it before it went to fixed point: float BT.601 per pixel, stored
 * through a Uint8ClampedArray (clamps to 0..255, rounds half to even). `exact` keeps the unrounded values.
 */
function referenceRgb(frame: FullFrame): { bytes: Uint8Array; exact: Float64Array } {
  const { width: w, height: h, data } = frame;
  const exact = new Float64Array(w * h * 3);
  const cw = Math.ceil(w / 2);
  const uOff = w * h;
  const vOff = uOff + cw * Math.ceil(h / 2);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const chroma = Math.floor(y / 2) * cw + Math.floor(x / 2);
      const c = 1.164 * (data[y * w + x]! - 16);
      const u = data[uOff + chroma]! - 128;
      const v = data[vOff + chroma]! - 128;
      const o = (y * w + x) * 3;
      exact[o] = c + 1.596 * v;
      exact[o + 1] = c - 0.392 * u - 0.813 * v;
      exact[o + 2] = c + 2.017 * u;
    }
  }
  return { bytes: new Uint8Array(Uint8ClampedArray.from(exact).buffer), exact };
}

function i420Size(w: number, h: number): number {
  return w * h + 2 * Math.ceil(w / 2) * Math.ceil(h / 2);
}

/** deterministic pseudo-random bytes (LCG), so a failure reproduces */
function pseudoRandomFrame(w: number, h: number, seed: number): FullFrame {
  const data = new Uint8Array(i420Size(w, h));
  let s = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s >>> 24;
  }
  return { data, width: w, height: h, format: 'I420' };
}

const CHANNELS = ['R', 'G', 'B'] as const;

/**
 * every channel of every pixel within ±1 of the reference, and off by 1 only where the reference value
 * is a rounding tie (x.5, which the reference rounds to even), so the ±1 cannot hide a bias such as
 * truncating instead of rounding
 */
function assertCloseToReference(frame: FullFrame): void {
  const { width: w, height: h, data } = frame;
  const actual = i420ToRgb(frame);
  const { bytes: expected, exact } = referenceRgb(frame);
  assert.ok(actual instanceof Uint8Array);
  assert.equal(actual.length, w * h * 3);
  const cw = Math.ceil(w / 2);
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (d === 0) continue;
    const tie = Math.abs(exact[i]! - Math.floor(exact[i]!) - 0.5) < 1e-4;
    if (d > 1 || !tie) {
      const p = Math.floor(i / 3);
      const x = p % w;
      const y = Math.floor(p / w);
      const chroma = Math.floor(y / 2) * cw + Math.floor(x / 2);
      const yuv = [data[p]!, data[w * h + chroma]!, data[w * h + cw * Math.ceil(h / 2) + chroma]!];
      assert.fail(
        `${w}×${h} pixel (${x},${y}) ${CHANNELS[i % 3]}: got ${actual[i]}, reference ${expected[i]} ` +
          `(exactly ${exact[i]}; YUV ${yuv.join(',')})`,
      );
    }
  }
}

describe('i420ToRgb against the float BT.601 reference', () => {
  let decoded: FullFrame;
  before(async () => {
    decoded = (await readFrames([0], { width: 64, height: 48, format: 'RGB' })).get(0)!.full;
  });

  it('a decoded vtest.avi frame (768×576)', () => {
    assert.equal(decoded.width, 768);
    assert.equal(decoded.height, 576);
    assert.equal(decoded.data.length, i420Size(768, 576));
    assertCloseToReference(decoded);
  });

  it('a pseudo-random 768×576 frame (full byte range, so clamping on both ends)', () => {
    assertCloseToReference(pseudoRandomFrame(768, 576, 1));
  });

  // widths cover every width % 4 (the converter writes four columns at a time, the rest one by one)
  for (const [w, h] of [
    [7, 5],
    [1, 1],
    [2, 3],
    [3, 2],
    [5, 3],
    [6, 4],
    [8, 5],
    [33, 17],
  ] as const) {
    it(`${w}×${h} frames (chroma ${Math.ceil(w / 2)}×${Math.ceil(h / 2)})`, () => {
      for (let seed = 1; seed <= 20; seed++) assertCloseToReference(pseudoRandomFrame(w, h, seed));
    });
  }

  it('a 7×5 grey frame with a distinct colour per chroma sample: each lands on its own pixels', () => {
    // 4×3 chroma samples; U and V differ per sample, so a wrong chroma index shows up as a colour error
    const w = 7;
    const h = 5;
    const data = new Uint8Array(i420Size(w, h));
    data.fill(128, 0, w * h);
    for (let k = 0; k < 12; k++) {
      data[w * h + k] = 16 + k * 20;
      data[w * h + 12 + k] = 240 - k * 20;
    }
    assertCloseToReference({ data, width: w, height: h, format: 'I420' });
  });

  it('every U×V pair with extreme and mid luma (Y 0, 16, 128, 235, 255), so every clamp is exercised', () => {
    // chroma plane 256×256 holds every (U, V); each 2×2 block takes four of the luma values in turn
    const w = 512;
    const h = 512;
    const lumas = [0, 16, 128, 235, 255];
    const data = new Uint8Array(i420Size(w, h));
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) data[y * w + x] = lumas[(x + 2 * y + (x >> 1)) % lumas.length]!;
    }
    for (let k = 0; k < 256 * 256; k++) {
      data[w * h + k] = k >> 8;
      data[w * h + 256 * 256 + k] = k & 255;
    }
    const frame: FullFrame = { data, width: w, height: h, format: 'I420' };
    assertCloseToReference(frame);
    const rgb = i420ToRgb(frame);
    assert.ok(rgb.includes(0) && rgb.includes(255));
  });

  it('pure extremes: Y/U/V at 0 and 255 on a 3×3 frame', () => {
    for (const yv of [0, 255]) {
      for (const uv of [0, 255]) {
        for (const vv of [0, 255]) {
          const data = new Uint8Array(i420Size(3, 3));
          data.fill(yv, 0, 9);
          data.fill(uv, 9, 13);
          data.fill(vv, 13, 17);
          assertCloseToReference({ data, width: 3, height: 3, format: 'I420' });
        }
      }
    }
  });
});
