import { ArgusError } from '../common/errors.ts';
import type { ModelDescriptor } from './descriptor.ts';

/** What a detector is fed: frames prepared for a model, and the sizes a model takes. */

export interface InputSize {
  width: number;
  height: number;
}

/** one frame prepared for the model: pixels in its colour order (HWC, uint8) */
export interface ModelFrame {
  pixels: Uint8Array;
  /**
   * the pixels' size when smaller than the model's input size (a model with a `sizeStep` takes
   * any multiple of it); the model's input size when absent
   */
  size?: InputSize;
  sourceWidth: number;
  sourceHeight: number;
  /** the caller hands `pixels` over: a detector on another thread may take its buffer instead of a copy */
  handedOver?: boolean;
}

/** the bytes of the frames' pixels together */
export function framesBytes(frames: readonly ModelFrame[]): number {
  return frames.reduce((n, f) => n + f.pixels.length, 0);
}

/** the frames' pixels back to back, in `into` (of `framesBytes(frames)` bytes) or a new buffer */
export function packFrames(
  frames: readonly ModelFrame[],
  into = new Uint8Array(framesBytes(frames)),
): Uint8Array {
  const out = into;
  let offset = 0;
  for (const f of frames) {
    out.set(f.pixels, offset);
    offset += f.pixels.length;
  }
  return out;
}

/**
 * the frames' pixels back to back: a view when they already lie so in one buffer (the frames of
 * a request to a detector thread), else a packed copy
 */
export function framesInOneBuffer(frames: readonly ModelFrame[]): Uint8Array {
  const first = frames[0]?.pixels;
  if (!first) return new Uint8Array(0);
  let end = first.byteOffset + first.byteLength;
  for (let i = 1; i < frames.length; i++) {
    const p = frames[i]!.pixels;
    if (p.buffer !== first.buffer || p.byteOffset !== end) return packFrames(frames);
    end += p.byteLength;
  }
  return new Uint8Array(first.buffer, first.byteOffset, end - first.byteOffset);
}

/** the bytes of one HWC uint8 input of `size` */
export function inputBytes(size: InputSize): number {
  return size.width * size.height * 3;
}

/** the model's full input size */
export function modelInputSize(d: ModelDescriptor): InputSize {
  return { width: d.input.width, height: d.input.height };
}

/** the size of a frame's input, checked against what the model takes */
export function inputSizeOf(d: ModelDescriptor, frame: ModelFrame): InputSize {
  const size = frame.size ?? modelInputSize(d);
  const { width, height, sizeStep } = d.input;
  const full = size.width === width && size.height === height;
  const fits = (v: number, max: number) => sizeStep !== undefined && v > 0 && v <= max && v % sizeStep === 0;
  if (!full && !(fits(size.width, width) && fits(size.height, height))) {
    throw new ArgusError(
      sizeStep === undefined
        ? `a ${size.width}×${size.height} input for model ${d.name}, which takes ${width}×${height} only`
        : `a ${size.width}×${size.height} input for model ${d.name}, which takes multiples of ${sizeStep} up to ${width}×${height}`,
    );
  }
  if (frame.pixels.length !== inputBytes(size)) {
    throw new ArgusError(
      `frame of ${frame.pixels.length} bytes does not match its ${size.width}×${size.height} input (${inputBytes(size)} bytes)`,
    );
  }
  return size;
}
