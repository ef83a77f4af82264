import sharp from 'sharp';
import { ArgusError } from '../../common/errors.ts';
import type { ModelDescriptor } from '../../inference/descriptor.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import type { Rect } from '../../inference/rect.ts';

/**
 * Full-resolution RGB frames on the control-plane side (decoded from the JPEGs the boxes harvest)
 * and the views the teacher and the loop cut from them for a model: a region, optionally mirrored,
 * stretched to the model's input size in its colour order.
 */

/** an image in RGB order, HWC uint8 */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** the largest image decoded: 8K UHD; a harvested frame is the box's camera resolution */
export const MAX_IMAGE_PIXELS = 7680 * 4320;

/** decodes a JPEG (or PNG) into RGB, refusing an image larger than MAX_IMAGE_PIXELS before decoding it */
export async function decodeImage(bytes: Uint8Array): Promise<RgbImage> {
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: MAX_IMAGE_PIXELS })
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`${info.channels} channels`);
    return {
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
      width: info.width,
      height: info.height,
    };
  } catch (err) {
    throw new ArgusError(
      `cannot decode the image (${bytes.length} bytes): ${(err as Error).message}`,
      `a frame must be a JPEG or PNG of at most ${MAX_IMAGE_PIXELS} pixels`,
    );
  }
}

export interface View {
  /** the part of the image, in image pixels */
  region: Rect;
  /** mirrored left to right */
  flip: boolean;
  /** the model input size the region is stretched to */
  width: number;
  height: number;
}

/** the view's pixels as a model frame in `colorOrder`; its source size is the region's */
export async function viewFrame(
  image: RgbImage,
  view: View,
  colorOrder: ModelDescriptor['input']['colorOrder'],
): Promise<ModelFrame> {
  const { region } = view;
  let pipeline = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
  const whole =
    region.x === 0 && region.y === 0 && region.width === image.width && region.height === image.height;
  if (!whole)
    pipeline = pipeline.extract({
      left: region.x,
      top: region.y,
      width: region.width,
      height: region.height,
    });
  if (view.flip) pipeline = pipeline.flop();
  if (region.width !== view.width || region.height !== view.height) {
    pipeline = pipeline.resize(view.width, view.height, { fit: 'fill', kernel: 'linear' });
  }
  const buffer = await pipeline.raw().toBuffer();
  const pixels = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.length);
  if (colorOrder === 'BGR') {
    for (let i = 0; i < pixels.length; i += 3) {
      const r = pixels[i]!;
      pixels[i] = pixels[i + 2]!;
      pixels[i + 2] = r;
    }
  }
  return { pixels, sourceWidth: region.width, sourceHeight: region.height };
}

/** the image stretched to a model's whole input, as the box's GStreamer branch does */
export function modelFrameOf(image: RgbImage, input: ModelDescriptor['input']): Promise<ModelFrame> {
  return viewFrame(
    image,
    {
      region: { x: 0, y: 0, width: image.width, height: image.height },
      flip: false,
      width: input.width,
      height: input.height,
    },
    input.colorOrder,
  );
}
