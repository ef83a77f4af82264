import { ArgusError } from '../common/errors.ts';
import type { FullFrame } from './frame-source.ts';

/** where the planes of an I420 frame lie in its bytes (U and V share a stride and size) */
export interface I420Layout {
  yStride: number;
  /** bytes per row of U and of V */
  cStride: number;
  uOffset: number;
  vOffset: number;
  /** chroma samples across and down: one per 2×2 pixels, an odd last column or row has its own */
  chromaWidth: number;
  chromaHeight: number;
  size: number;
}

const roundUp = (v: number, to: number) => Math.ceil(v / to) * to;

/** GStreamer's default I420 layout, as an appsink delivers it: rows padded to 4 bytes, an even number of rows per plane pair */
export function gstI420Layout(width: number, height: number): I420Layout {
  const yStride = roundUp(width, 4);
  const cStride = roundUp(roundUp(width, 2) / 2, 4);
  const chromaRows = roundUp(height, 2) / 2;
  const uOffset = yStride * roundUp(height, 2);
  const vOffset = uOffset + cStride * chromaRows;
  return {
    yStride,
    cStride,
    uOffset,
    vOffset,
    chromaWidth: Math.ceil(width / 2),
    chromaHeight: Math.ceil(height / 2),
    size: vOffset + cStride * chromaRows,
  };
}

/** the planes back to back without padding: Y `width×height`, then U and V `ceil(width/2)×ceil(height/2)` */
export function packedI420Layout(width: number, height: number): I420Layout {
  const chromaWidth = Math.ceil(width / 2);
  const chromaHeight = Math.ceil(height / 2);
  const uOffset = width * height;
  const vOffset = uOffset + chromaWidth * chromaHeight;
  return {
    yStride: width,
    cStride: chromaWidth,
    uOffset,
    vOffset,
    chromaWidth,
    chromaHeight,
    size: vOffset + chromaWidth * chromaHeight,
  };
}

/**
 * the layout of `frame.data`, told by its length: GStreamer's (frames from a FrameSource) or packed
 * (the two are the same when the width is a multiple of 8 and the height even)
 */
export function i420LayoutOf(frame: FullFrame): I420Layout {
  const { width, height, data } = frame;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new ArgusError(`an I420 frame of ${width}×${height} pixels`);
  const gst = gstI420Layout(width, height);
  if (data.length === gst.size) return gst;
  const packed = packedI420Layout(width, height);
  if (data.length === packed.size) return packed;
  throw new ArgusError(
    `an I420 frame of ${width}×${height} holds ${gst.size} bytes (${packed.size} packed), not ${data.length}`,
  );
}

/** luma from BT.601 limited range (16–235, as decoders emit it) to full range (0–255, as JFIF stores it), clamped */
const FULL_RANGE_LUMA = Uint8Array.from(
  Uint8ClampedArray.from({ length: 256 }, (_, v) => Math.round(((v - 16) * 255) / 219)),
);
/** chroma likewise (16–240 around 128 to 0–255 around 128) */
const FULL_RANGE_CHROMA = Uint8Array.from(
  Uint8ClampedArray.from({ length: 256 }, (_, v) => Math.round(((v - 128) * 255) / 224 + 128)),
);

/**
 * The planes of an I420 frame as a JPEG encoder takes them: full range, and padded to whole 16×16
 * blocks (JPEG's unit for 4:2:0), in GStreamer's layout of that size (`jfifLayout`). `width` and
 * `height` are the picture's; what lies beyond them is filled by `replicateEdges` before encoding.
 */
export interface JfifPlanes {
  data: Uint8Array;
  width: number;
  height: number;
}

/** the padded size and the layout of a picture's JPEG planes */
export function jfifLayout(width: number, height: number): I420Layout & { width: number; height: number } {
  const padded = { width: roundUp(width, 16), height: roundUp(height, 16) };
  return { ...gstI420Layout(padded.width, padded.height), ...padded };
}

/** `count` bytes from `from` through `lut` into `out` at `to` */
function mapBytes(
  lut: Uint8Array,
  data: Uint8Array,
  from: number,
  out: Uint8Array,
  to: number,
  count: number,
): void {
  for (let i = 0; i < count; i++) out[to + i] = lut[data[from + i]!]!;
}

/**
 * the frame's planes as a JPEG encoder takes them (see JfifPlanes): widened from the limited range
 * decoders emit to the full range JFIF stores (the decoder's planes as they are would show black as
 * dark grey and white as light grey). A new array; a frame already in the padded layout goes
 * through in two runs, one per table.
 */
export function jfifPlanes(frame: FullFrame): JfifPlanes {
  const from = i420LayoutOf(frame);
  const to = jfifLayout(frame.width, frame.height);
  const { data, width, height } = frame;
  const out = new Uint8Array(to.size);
  if (from.size === to.size) {
    mapBytes(FULL_RANGE_LUMA, data, 0, out, 0, to.uOffset);
    mapBytes(FULL_RANGE_CHROMA, data, to.uOffset, out, to.uOffset, to.size - to.uOffset);
  } else {
    for (let y = 0; y < height; y++)
      mapBytes(FULL_RANGE_LUMA, data, y * from.yStride, out, y * to.yStride, width);
    for (let y = 0; y < from.chromaHeight; y++) {
      for (const [f, t] of [
        [from.uOffset, to.uOffset],
        [from.vOffset, to.vOffset],
      ] as const)
        mapBytes(FULL_RANGE_CHROMA, data, f + y * from.cStride, out, t + y * to.cStride, from.chromaWidth);
    }
  }
  return { data: out, width, height };
}

/** one plane's last column and row copied over its padding, in place */
function replicatePlane(
  data: Uint8Array,
  offset: number,
  stride: number,
  [width, height]: [number, number],
  [paddedWidth, paddedHeight]: [number, number],
): void {
  for (let y = 0; y < height; y++) {
    const row = offset + y * stride;
    data.fill(data[row + width - 1]!, row + width, row + paddedWidth);
  }
  const last = offset + (height - 1) * stride;
  for (let y = height; y < paddedHeight; y++) data.copyWithin(offset + y * stride, last, last + paddedWidth);
}

/**
 * fills the planes' padding with their last column and row, in place: JPEG encodes whole blocks,
 * and a block that reached into anything else would ring into the picture's edge
 */
export function replicateEdges(planes: JfifPlanes): void {
  const { width, height } = planes;
  const layout = jfifLayout(width, height);
  replicatePlane(planes.data, 0, layout.yStride, [width, height], [layout.width, layout.height]);
  const chroma: [number, number] = [Math.ceil(width / 2), Math.ceil(height / 2)];
  const paddedChroma: [number, number] = [layout.width / 2, layout.height / 2];
  for (const offset of [layout.uOffset, layout.vOffset])
    replicatePlane(planes.data, offset, layout.cStride, chroma, paddedChroma);
}
