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

/**
 * The planes of an I420 frame as the JPEG encoder takes them: as decoders emit them (BT.601, limited
 * range), padded to whole 16×16 blocks (JPEG's unit for 4:2:0), in GStreamer's layout of that size
 * (`blockLayout`). `width` and `height` are the picture's; what lies beyond them is filled by
 * `replicateEdges` before encoding.
 */
export interface BlockPlanes {
  data: Uint8Array;
  width: number;
  height: number;
}

/** the padded size and the layout of a picture's planes in whole blocks */
export function blockLayout(width: number, height: number): I420Layout & { width: number; height: number } {
  const padded = { width: roundUp(width, 16), height: roundUp(height, 16) };
  return { ...gstI420Layout(padded.width, padded.height), ...padded };
}

/**
 * the frame's planes in whole blocks (see BlockPlanes): a new array when `copy` asks for one or the
 * frame's layout is not already that (a size that is not a multiple of 16), else the frame's own bytes
 */
export function blockPlanes(frame: FullFrame, copy: boolean): BlockPlanes {
  const from = i420LayoutOf(frame);
  const to = blockLayout(frame.width, frame.height);
  const { data, width, height } = frame;
  if (from.size === to.size) return { data: copy ? new Uint8Array(data) : data, width, height };
  const out = new Uint8Array(to.size);
  for (let y = 0; y < height; y++)
    out.set(data.subarray(y * from.yStride, y * from.yStride + width), y * to.yStride);
  for (let y = 0; y < from.chromaHeight; y++) {
    for (const [f, t] of [
      [from.uOffset, to.uOffset],
      [from.vOffset, to.vOffset],
    ] as const)
      out.set(
        data.subarray(f + y * from.cStride, f + y * from.cStride + from.chromaWidth),
        t + y * to.cStride,
      );
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
export function replicateEdges(planes: BlockPlanes): void {
  const { width, height } = planes;
  const layout = blockLayout(width, height);
  replicatePlane(planes.data, 0, layout.yStride, [width, height], [layout.width, layout.height]);
  const chroma: [number, number] = [Math.ceil(width / 2), Math.ceil(height / 2)];
  const paddedChroma: [number, number] = [layout.width / 2, layout.height / 2];
  for (const offset of [layout.uOffset, layout.vOffset])
    replicatePlane(planes.data, offset, layout.cStride, chroma, paddedChroma);
}
