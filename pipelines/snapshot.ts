import sharp from 'sharp';
import type { Box } from './detector/detector.ts';
import type { FullFrame } from './video/frame-source.ts';

/** I420 (BT.601, limited range, as decoders emit it) → packed RGB */
export function i420ToRgb(frame: FullFrame): Uint8Array {
  const { width: w, height: h, data } = frame;
  const out = new Uint8ClampedArray(w * h * 3);
  const ySize = w * h;
  const cw = Math.ceil(w / 2);
  const uOff = ySize;
  const vOff = ySize + cw * Math.ceil(h / 2);
  for (let y = 0; y < h; y++) {
    const row = y * w;
    const crow = (y >> 1) * cw;
    for (let x = 0; x < w; x++) {
      const c = 1.164 * (data[row + x]! - 16);
      const u = data[uOff + crow + (x >> 1)]! - 128;
      const v = data[vOff + crow + (x >> 1)]! - 128;
      const o = (row + x) * 3;
      out[o] = c + 1.596 * v;
      out[o + 1] = c - 0.392 * u - 0.813 * v;
      out[o + 2] = c + 2.017 * u;
    }
  }
  return new Uint8Array(out.buffer);
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
