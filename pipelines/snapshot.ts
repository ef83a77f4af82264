import sharp from 'sharp';
import { ArgusError } from '../common/errors.ts';
import { type Box, clipBox, isEmptyBox } from '../inference/rect.ts';
import type { FullFrame } from '../video/frame-source.ts';

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
  /** `#rgb` or `#rrggbb` (the box is drawn into the pixels directly, which reads no other CSS colour) */
  color?: string;
}

const DEFAULT_COLOR = '#ffd400';

/**
 * JPEG Huffman tables computed per image take a second pass over the coefficients: measured on
 * vtest.avi frames (768×576, quality 80), 4.7 ms per encode with them and 2.2 ms with the standard
 * tables, for files 2.7 % larger. A box encoding dozens of snapshots a second takes the CPU.
 */
const OPTIMISE_HUFFMAN = false;

/** stroke and font size in proportion to the frame width, so a snapshot reads the same at any resolution */
interface Style {
  stroke: number;
  font: number;
}

function styleFor(frameWidth: number): Style {
  return {
    stroke: Math.max(2, Math.round(frameWidth / 320)),
    font: Math.max(12, Math.round(frameWidth / 48)),
  };
}

/** packed RGB pixels, row-major, as i420ToRgb returns them */
interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

type Rgb = readonly [number, number, number];

function parseHexColor(color: string): Rgb {
  const digits = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(color)?.[1];
  if (digits === undefined) throw new ArgusError(`annotation colour ${color}: expected #rgb or #rrggbb`);
  const n = Number.parseInt(digits.length === 3 ? digits.replace(/./g, '$&$&') : digits, 16);
  return [n >> 16, (n >> 8) & 255, n & 255];
}

/** paints the part of `r` that lies inside the image */
function fillRect(image: RgbImage, r: Box, [red, green, blue]: Rgb): void {
  const { data, width, height } = image;
  const c = clipBox(r, width, height);
  if (isEmptyBox(c)) return;
  const [left, top, right, bottom] = c;
  for (let y = top; y < bottom; y++) {
    const end = (y * width + right) * 3;
    for (let o = (y * width + left) * 3; o < end; o += 3) {
      data[o] = red;
      data[o + 1] = green;
      data[o + 2] = blue;
    }
  }
}

/**
 * the outline an SVG rect with this stroke draws around the (rounded) box: a band `stroke` pixels wide
 * centred on each edge, the box at least one pixel wide and high as the SVG rect made it. An even stroke
 * covers exactly the pixels the SVG renderer filled; an odd one, whose SVG edges fall mid-pixel and were
 * anti-aliased, is drawn solid half a pixel further right and down.
 */
function drawOutline(image: RgbImage, [x1, y1, x2, y2]: Box, stroke: number, color: Rgb): void {
  const before = stroke >> 1;
  const left = x1 - before;
  const top = y1 - before;
  const right = x1 + Math.max(1, x2 - x1) - before + stroke;
  const bottom = y1 + Math.max(1, y2 - y1) - before + stroke;
  fillRect(image, [left, top, right, top + stroke], color);
  fillRect(image, [left, bottom - stroke, right, bottom], color);
  fillRect(image, [left, top, left + stroke, bottom], color);
  fillRect(image, [right - stroke, top, right, bottom], color);
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** where the label's baseline starts: above the (rounded) box, or below it when there is no room above */
function labelOrigin([x1, y1, , y2]: Box, font: number): { x: number; y: number } {
  return { x: x1, y: y1 - font - 4 >= 0 ? y1 - 4 : y2 + font + 2 };
}

/**
 * every pixel the label's text can touch, generously, since the label is cut to it: measured on DejaVu Sans
 * (what sans-serif is here), Latin-script glyphs reach at most 1.36 em wide (Ǆ; W is 0.96), 1.05 em above
 * the baseline, 0.26 em below it and 0.14 em left of the origin, the 0.6 px outline stroke included
 */
function labelBounds(origin: { x: number; y: number }, label: string, font: number): Box {
  const margin = Math.ceil(font / 4);
  return [
    origin.x - margin,
    origin.y - Math.ceil(font * 1.2),
    origin.x + Math.ceil([...label].length * font * 1.5) + margin,
    origin.y + Math.ceil(font * 0.4),
  ];
}

/** a label's text as an SVG exactly the size of `at`, the part of the frame it is drawn over */
interface LabelPatch {
  svg: Buffer;
  at: Box;
}

/**
 * the label cut to the frame pixels it can touch: rendering a frame-sized SVG canvas for a few glyphs was
 * most of a snapshot's cost. The viewBox is that part of the frame, so the text sits at the same frame
 * coordinates as on a full-frame canvas and whatever falls outside the frame is cut off. Undefined when
 * nothing of it shows.
 */
function labelPatch(
  annotation: Annotation,
  box: Box,
  color: string,
  font: number,
  frame: { width: number; height: number },
): LabelPatch | undefined {
  if (annotation.label === '') return undefined;
  const origin = labelOrigin(box, font);
  const at = clipBox(labelBounds(origin, annotation.label, font), frame.width, frame.height);
  if (isEmptyBox(at)) return undefined;
  const [left, top, right, bottom] = at;
  const width = right - left;
  const height = bottom - top;
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="${left} ${top} ${width} ${height}">` +
    `<text x="${origin.x}" y="${origin.y}" font-family="sans-serif" font-size="${font}" fill="${color}" stroke="black" stroke-width="0.6">${escapeXml(annotation.label)}</text>` +
    '</svg>';
  return { svg: Buffer.from(svg), at };
}

/** the label's pixels as unpremultiplied RGBA, `at`'s width × height */
function renderPatch(patch: LabelPatch): Promise<Buffer> {
  return sharp(patch.svg).ensureAlpha().raw().toBuffer();
}

/**
 * `rgba` laid over the image at `at`. Blended here rather than with sharp's composite, which premultiplies
 * and unpremultiplies the whole frame in float for a patch of a few thousand pixels (a quarter of the
 * snapshot's CPU time). The Uint8Array store truncates, so the +127 rounds to nearest: within ±1 of libvips.
 */
function blendOver(image: RgbImage, rgba: Uint8Array, [left, top, right, bottom]: Box): void {
  const { data, width } = image;
  const patchWidth = right - left;
  for (let y = top; y < bottom; y++) {
    let s = (y - top) * patchWidth * 4;
    const end = (y * width + right) * 3;
    for (let d = (y * width + left) * 3; d < end; d += 3, s += 4) {
      const alpha = rgba[s + 3]!;
      if (alpha === 0) continue;
      const rest = 255 - alpha;
      data[d] = (rgba[s]! * alpha + data[d]! * rest + 127) / 255;
      data[d + 1] = (rgba[s + 1]! * alpha + data[d + 1]! * rest + 127) / 255;
      data[d + 2] = (rgba[s + 2]! * alpha + data[d + 2]! * rest + 127) / 255;
    }
  }
}

/**
 * the frame as a JPEG with each annotation's box and label drawn on it: the boxes straight into the RGB
 * pixels, then the labels, over every box, from small SVGs rendered side by side and laid over in order
 */
export async function renderAnnotatedJpeg(
  frame: FullFrame,
  annotations: readonly Annotation[],
  quality = 80,
): Promise<Buffer> {
  const { width, height } = frame;
  const image: RgbImage = { data: i420ToRgb(frame), width, height };
  const { stroke, font } = styleFor(width);
  const patches: LabelPatch[] = [];
  for (const a of annotations) {
    const box = a.box.map((v) => Math.round(v)) as Box;
    const color = a.color ?? DEFAULT_COLOR;
    drawOutline(image, box, stroke, parseHexColor(color));
    const patch = labelPatch(a, box, color, font, frame);
    if (patch) patches.push(patch);
  }
  const rendered = await Promise.all(patches.map(renderPatch));
  for (const [i, p] of patches.entries()) blendOver(image, rendered[i]!, p.at);
  return sharp(image.data, { raw: { width, height, channels: 3 } })
    .jpeg({ quality, optimiseCoding: OPTIMISE_HUFFMAN })
    .toBuffer();
}
