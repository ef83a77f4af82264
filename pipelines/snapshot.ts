import sharp from 'sharp';
import { ArgusError } from '../common/errors.ts';
import { type Box, clipBox, isEmptyBox } from '../inference/rect.ts';
import type { FullFrame } from '../video/frame-source.ts';
import { type BlockPlanes, blockLayout, blockPlanes, type I420Layout } from '../video/i420.ts';
import { JpegEncoder } from '../video/jpeg-encoder.ts';

export interface Annotation {
  box: Box;
  label: string;
  /** `#rgb` or `#rrggbb` (the box is drawn into the pixels directly, which reads no other CSS colour) */
  color?: string;
}

const DEFAULT_COLOR = '#ffd400';

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

type Rgb = readonly [number, number, number];

function parseHexColor(color: string): Rgb {
  const digits = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(color)?.[1];
  if (digits === undefined) throw new ArgusError(`annotation colour ${color}: expected #rgb or #rrggbb`);
  const n = Number.parseInt(digits.length === 3 ? digits.replace(/./g, '$&$&') : digits, 16);
  return [n >> 16, (n >> 8) & 255, n & 255];
}

/** a colour as decoders emit it: BT.601 Y, U, V, limited range */
type Yuv = readonly [number, number, number];

const clampByte = (v: number) => Math.min(255, Math.max(0, Math.round(v)));

function toYuv(r: number, g: number, b: number): Yuv {
  return [
    clampByte(16 + 0.256788 * r + 0.504129 * g + 0.097906 * b),
    clampByte(128 - 0.148223 * r - 0.290993 * g + 0.439216 * b),
    clampByte(128 + 0.439216 * r - 0.367788 * g - 0.071427 * b),
  ];
}

/** the planes of a frame being drawn on (see blockPlanes) */
interface Canvas extends BlockPlanes {
  layout: I420Layout;
}

/**
 * The chroma of the pixels drawn on, kept per pixel while the annotations are drawn, then averaged
 * over each 2×2 block they touched, as the JPEG's 4:2:0 subsampling would average pixels drawn in
 * RGB: drawings that share a block (a label over an outline, two outlines) compose per pixel, as in
 * RGB, rather than block by block. Luma is drawn into the planes directly.
 */
class DrawnChroma {
  /** pixel index → Cb << 8 | Cr */
  private readonly pixels = new Map<number, number>();

  constructor(private readonly c: Canvas) {}

  /** `(u, v)` over pixel `(x, y)` with weight `w` (0–255), over what was drawn there before */
  blend(x: number, y: number, w: number, u: number, v: number): void {
    const i = y * this.c.width + x;
    const before = this.pixels.get(i) ?? this.block(x >> 1, y >> 1);
    const mix = (paint: number, under: number) => Math.round((w * paint + (255 - w) * under) / 255);
    this.pixels.set(i, (mix(u, before >> 8) << 8) | mix(v, before & 255));
  }

  /** the chroma of block `(cx, cy)` in the planes, as Cb << 8 | Cr */
  private block(cx: number, cy: number): number {
    const { data, layout } = this.c;
    const at = cy * layout.cStride + cx;
    return (data[layout.uOffset + at]! << 8) | data[layout.vOffset + at]!;
  }

  /** writes the mean chroma of every block a pixel was drawn on into the planes */
  flush(): void {
    const { width, height, data, layout } = this.c;
    const blocks = new Set<number>();
    for (const i of this.pixels.keys()) blocks.add(((Math.floor(i / width) >> 1) << 16) | ((i % width) >> 1));
    for (const key of blocks) {
      const [cx, cy] = [key & 0xffff, key >> 16];
      const own = this.block(cx, cy);
      let n = 0;
      let u = 0;
      let v = 0;
      for (let y = cy * 2; y < Math.min(cy * 2 + 2, height); y++) {
        for (let x = cx * 2; x < Math.min(cx * 2 + 2, width); x++) {
          const chroma = this.pixels.get(y * width + x) ?? own;
          n++;
          u += chroma >> 8;
          v += chroma & 255;
        }
      }
      const at = cy * layout.cStride + cx;
      data[layout.uOffset + at] = Math.round(u / n);
      data[layout.vOffset + at] = Math.round(v / n);
    }
    this.pixels.clear();
  }
}

/**
 * the outline an SVG rect with this stroke draws around the (rounded) box: a band `stroke` pixels wide
 * centred on each edge, the box at least one pixel wide and high as the SVG rect made it. An even stroke
 * covers exactly the pixels the SVG renderer filled; an odd one, whose SVG edges fall mid-pixel and were
 * anti-aliased, is drawn solid half a pixel further right and down. The inside is not visited.
 */
function drawOutline(
  c: Canvas,
  chroma: DrawnChroma,
  [x1, y1, x2, y2]: Box,
  stroke: number,
  [cy, cu, cv]: Yuv,
): void {
  const before = stroke >> 1;
  const left = x1 - before;
  const top = y1 - before;
  const right = x1 + Math.max(1, x2 - x1) - before + stroke;
  const bottom = y1 + Math.max(1, y2 - y1) - before + stroke;
  // the four sides; where they overlap (corners, a box no bigger than two strokes), a pixel is drawn twice alike
  const sides: Box[] = [
    [left, top, right, top + stroke],
    [left, bottom - stroke, right, bottom],
    [left, top, left + stroke, bottom],
    [right - stroke, top, right, bottom],
  ];
  const { data, layout } = c;
  for (const side of sides) {
    const area = clipBox(side, c.width, c.height);
    if (isEmptyBox(area)) continue;
    const [l, t, r, b] = area;
    for (let y = t; y < b; y++) {
      data.fill(cy, y * layout.yStride + l, y * layout.yStride + r);
      for (let x = l; x < r; x++) chroma.blend(x, y, 255, cu, cv);
    }
  }
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

/** a label's text as an SVG exactly the size of `at`, the part of the frame it is drawn over, whose origin it takes as its own */
interface LabelPatch {
  svg: string;
  at: Box;
}

/**
 * the label cut to the frame pixels it can touch: rendering a frame-sized SVG canvas for a few glyphs was
 * most of a snapshot's cost. The SVG is that part of the frame, its text moved by the part's corner (whole
 * pixels, so it renders the same as on a full-frame canvas), and whatever falls outside the frame is cut
 * off. Undefined when nothing of it shows.
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
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
    `<text x="${origin.x - left}" y="${origin.y - top}" font-family="sans-serif" font-size="${font}" fill="${color}" stroke="black" stroke-width="0.6">${escapeXml(annotation.label)}</text>` +
    '</svg>';
  return { svg, at };
}

/** labels rendered lately, by their SVG: a scene's captions repeat, and their place in the frame is not in the SVG */
const renderedLabels = new Map<string, Promise<Buffer>>();
const RENDERED_LABELS_KEPT = 256;

/** the label's pixels as unpremultiplied RGBA, `at`'s width × height */
function renderPatch(patch: LabelPatch): Promise<Buffer> {
  const kept = renderedLabels.get(patch.svg);
  if (kept) {
    // most recently used last
    renderedLabels.delete(patch.svg);
    renderedLabels.set(patch.svg, kept);
    return kept;
  }
  const rendered = sharp(Buffer.from(patch.svg)).ensureAlpha().raw().toBuffer();
  renderedLabels.set(patch.svg, rendered);
  rendered.catch(() => renderedLabels.delete(patch.svg));
  if (renderedLabels.size > RENDERED_LABELS_KEPT) renderedLabels.delete(renderedLabels.keys().next().value!);
  return rendered;
}

/**
 * `rgba` (unpremultiplied, `at`'s width × height) laid over the canvas at `at`. Blended here rather than
 * with sharp's composite, which would need the frame in RGB.
 */
function blendOver(c: Canvas, chroma: DrawnChroma, rgba: Uint8Array, [left, top, right, bottom]: Box): void {
  const patchWidth = right - left;
  const { data, layout } = c;
  for (let y = top; y < bottom; y++) {
    for (let x = left; x < right; x++) {
      const s = ((y - top) * patchWidth + (x - left)) * 4;
      const alpha = rgba[s + 3]!;
      if (alpha === 0) continue;
      const [py, pu, pv] = toYuv(rgba[s]!, rgba[s + 1]!, rgba[s + 2]!);
      const d = y * layout.yStride + x;
      data[d] = (py * alpha + data[d]! * (255 - alpha) + 127) / 255;
      chroma.blend(x, y, alpha, pu, pv);
    }
  }
}

/**
 * a copy of the frame's planes in whole blocks (see blockPlanes) with each annotation's box and label
 * drawn on them: the boxes straight into the planes, then the labels, over every box, from small SVGs
 * rendered side by side and laid over in order
 */
export async function drawAnnotations(
  frame: FullFrame,
  annotations: readonly Annotation[],
): Promise<BlockPlanes> {
  const { width, height } = frame;
  const canvas: Canvas = { ...blockPlanes(frame, true), layout: blockLayout(width, height) };
  const chroma = new DrawnChroma(canvas);
  const { stroke, font } = styleFor(width);
  const patches: LabelPatch[] = [];
  for (const a of annotations) {
    const box = a.box.map((v) => Math.round(v)) as Box;
    const color = a.color ?? DEFAULT_COLOR;
    drawOutline(canvas, chroma, box, stroke, toYuv(...parseHexColor(color)));
    const patch = labelPatch(a, box, color, font, frame);
    if (patch) patches.push(patch);
  }
  const rendered = await Promise.all(patches.map(renderPatch));
  for (const [i, p] of patches.entries()) blendOver(canvas, chroma, rendered[i]!, p.at);
  chroma.flush();
  return { data: canvas.data, width, height };
}

let encoder: JpegEncoder | undefined;

/** the frame as a JPEG with the annotations drawn on it (see drawAnnotations), encoded from I420 by GStreamer */
export async function renderAnnotatedJpeg(
  frame: FullFrame,
  annotations: readonly Annotation[],
  quality = 80,
): Promise<Buffer> {
  encoder ??= new JpegEncoder();
  const planes =
    annotations.length === 0 ? blockPlanes(frame, false) : await drawAnnotations(frame, annotations);
  return encoder.encode(planes, quality);
}
