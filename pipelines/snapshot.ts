import sharp from 'sharp';
import type { Box } from './detector/detector.ts';
import type { FullFrame } from './video/frame-source.ts';

/*
 * i420ToRgb works in 16.16 fixed point: each term of the BT.601 formula comes from an Int32Array indexed
 * by the raw byte, already scaled by 2^16 and rounded. The luma table also carries the rounding bias (½)
 * and CLAMP_OFFSET, so `(luma + chroma terms) >> 16` is a non-negative index into CLAMP, which maps it
 * back to 0..255. Range: the smallest sum is 1.164·(0−16) + 2.017·(0−128) ≈ −277 and the largest
 * 1.164·(255−16) + 2.017·127 ≈ 535, hence the offset 384 and 1024 entries; the largest table sum,
 * ≈ 918·2^16, fits in an int32.
 */
const FIXED_SHIFT = 16;
const FIXED_ONE = 1 << FIXED_SHIFT;
const CLAMP_OFFSET = 384;
/** 1.164·(Y−16), plus ½ for rounding and the clamp offset */
const LUMA = new Int32Array(256);
/** 1.596·(V−128) */
const R_FROM_V = new Int32Array(256);
/** −0.392·(U−128) */
const G_FROM_U = new Int32Array(256);
/** −0.813·(V−128) */
const G_FROM_V = new Int32Array(256);
/** 2.017·(U−128) */
const B_FROM_U = new Int32Array(256);
for (let i = 0; i < 256; i++) {
  LUMA[i] = Math.round(1.164 * (i - 16) * FIXED_ONE) + (FIXED_ONE >> 1) + CLAMP_OFFSET * FIXED_ONE;
  R_FROM_V[i] = Math.round(1.596 * (i - 128) * FIXED_ONE);
  G_FROM_U[i] = -Math.round(0.392 * (i - 128) * FIXED_ONE);
  G_FROM_V[i] = -Math.round(0.813 * (i - 128) * FIXED_ONE);
  B_FROM_U[i] = Math.round(2.017 * (i - 128) * FIXED_ONE);
}
/** CLAMP[n + CLAMP_OFFSET] = n clamped to 0..255 */
const CLAMP = new Uint8Array(1024);
for (let i = 0; i < CLAMP.length; i++) CLAMP[i] = Math.min(255, Math.max(0, i - CLAMP_OFFSET));

/**
 * the four pixels of one row starting at luma index `yi` (output byte yi·3) as three little-endian 32-bit
 * words (RGBR GBRG BRGB); the first two take the chroma terms (r0, g0, b0), the last two (r1, g1, b1)
 */
function putQuad(
  words: DataView,
  data: Uint8Array,
  yi: number,
  r0: number,
  g0: number,
  b0: number,
  r1: number,
  g1: number,
  b1: number,
): void {
  const clamp = CLAMP;
  const a = LUMA[data[yi]!]!;
  const b = LUMA[data[yi + 1]!]!;
  const c = LUMA[data[yi + 2]!]!;
  const d = LUMA[data[yi + 3]!]!;
  const S = FIXED_SHIFT;
  const o = yi * 3;
  words.setUint32(
    o,
    clamp[(a + r0) >> S]! |
      (clamp[(a + g0) >> S]! << 8) |
      (clamp[(a + b0) >> S]! << 16) |
      (clamp[(b + r0) >> S]! << 24),
    true,
  );
  words.setUint32(
    o + 4,
    clamp[(b + g0) >> S]! |
      (clamp[(b + b0) >> S]! << 8) |
      (clamp[(c + r1) >> S]! << 16) |
      (clamp[(c + g1) >> S]! << 24),
    true,
  );
  words.setUint32(
    o + 8,
    clamp[(c + b1) >> S]! |
      (clamp[(d + r1) >> S]! << 8) |
      (clamp[(d + g1) >> S]! << 16) |
      (clamp[(d + b1) >> S]! << 24),
    true,
  );
}

/** one pixel (luma byte `yb`, chroma terms r, g, b) as three bytes at `o` */
function putPixel(out: Uint8Array, o: number, yb: number, r: number, g: number, b: number): void {
  const c = LUMA[yb]!;
  out[o] = CLAMP[(c + r) >> FIXED_SHIFT]!;
  out[o + 1] = CLAMP[(c + g) >> FIXED_SHIFT]!;
  out[o + 2] = CLAMP[(c + b) >> FIXED_SHIFT]!;
}

/**
 * I420 (BT.601, limited range, as decoders emit it) → packed RGB, `width·height·3` bytes, row-major.
 * `frame.data` holds the Y plane (`width×height`), then U and V (`ceil(width/2)×ceil(height/2)` each),
 * so odd sizes work: the last column / row has a chroma sample of its own. With Y' = 1.164(Y−16):
 * R = Y' + 1.596(V−128), G = Y' − 0.392(U−128) − 0.813(V−128), B = Y' + 2.017(U−128), rounded to the
 * nearest integer (halves up) and clamped to 0..255. Integer-only: the terms come from lookup tables in
 * 16.16 fixed point, each chroma sample is looked up once for its 2×2 pixels, and four pixels of a row
 * are written as three 32-bit words. A fresh array per call.
 */
export function i420ToRgb(frame: FullFrame): Uint8Array {
  const { width: w, height: h, data } = frame;
  const out = new Uint8Array(w * h * 3);
  const words = new DataView(out.buffer);
  const cw = (w + 1) >> 1;
  const uOff = w * h;
  const vOff = uOff + cw * ((h + 1) >> 1);
  const quadWidth = w & ~3;
  const rFromV = R_FROM_V;
  const gFromU = G_FROM_U;
  const gFromV = G_FROM_V;
  const bFromU = B_FROM_U;
  // a chroma row covers two luma rows; the last row of an odd height has no second one
  for (let y = 0; y < h; y += 2) {
    const twoRows = y + 1 < h;
    const row = y * w;
    const crow = (y >> 1) * cw;
    // four columns (two chroma samples) at a time
    for (let x = 0; x < quadWidth; x += 4) {
      const ui = uOff + crow + (x >> 1);
      const vi = vOff + crow + (x >> 1);
      const u0 = data[ui]!;
      const v0 = data[vi]!;
      const u1 = data[ui + 1]!;
      const v1 = data[vi + 1]!;
      const r0 = rFromV[v0]!;
      const g0 = gFromU[u0]! + gFromV[v0]!;
      const b0 = bFromU[u0]!;
      const r1 = rFromV[v1]!;
      const g1 = gFromU[u1]! + gFromV[v1]!;
      const b1 = bFromU[u1]!;
      const yi = row + x;
      putQuad(words, data, yi, r0, g0, b0, r1, g1, b1);
      if (twoRows) putQuad(words, data, yi + w, r0, g0, b0, r1, g1, b1);
    }
    // the last width % 4 columns, one pixel at a time
    for (let x = quadWidth; x < w; x++) {
      const u = data[uOff + crow + (x >> 1)]!;
      const v = data[vOff + crow + (x >> 1)]!;
      const r = rFromV[v]!;
      const g = gFromU[u]! + gFromV[v]!;
      const b = bFromU[u]!;
      const yi = row + x;
      putPixel(out, yi * 3, data[yi]!, r, g, b);
      if (twoRows) putPixel(out, (yi + w) * 3, data[yi + w]!, r, g, b);
    }
  }
  return out;
}

export interface Annotation {
  box: Box;
  label: string;
  color?: string;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** the frame as a JPEG with each annotation's box and label drawn on it */
export async function renderAnnotatedJpeg(
  frame: FullFrame,
  annotations: readonly Annotation[],
  quality = 80,
): Promise<Buffer> {
  const { width: w, height: h } = frame;
  const stroke = Math.max(2, Math.round(w / 320));
  const font = Math.max(12, Math.round(w / 48));
  const shapes = annotations
    .map((a) => {
      const [x1, y1, x2, y2] = a.box.map((v) => Math.round(v)) as Box;
      const color = a.color ?? '#ffd400';
      const ty = y1 - font - 4 >= 0 ? y1 - 4 : y2 + font + 2;
      const text = escapeXml(a.label);
      return (
        `<rect x="${x1}" y="${y1}" width="${Math.max(1, x2 - x1)}" height="${Math.max(1, y2 - y1)}" fill="none" stroke="${color}" stroke-width="${stroke}"/>` +
        `<text x="${x1}" y="${ty}" font-family="sans-serif" font-size="${font}" fill="${color}" stroke="black" stroke-width="0.6">${text}</text>`
      );
    })
    .join('');
  const svg = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">${shapes}</svg>`,
  );
  return sharp(i420ToRgb(frame), { raw: { width: w, height: h, channels: 3 } })
    .composite([{ input: svg, top: 0, left: 0 }])
    .jpeg({ quality })
    .toBuffer();
}
