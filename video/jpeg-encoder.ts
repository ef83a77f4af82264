import { ArgusError } from '../common/errors.ts';
import { type GstAppSink, type GstAppSrc, type GstPipeline, gst } from './gst.ts';
import { type BlockPlanes, blockLayout, replicateEdges } from './i420.ts';

/**
 * The planes' BT.601 limited range (16–235, chroma 16–240, as decoders emit it) widened to the full
 * range JFIF stores: a JPEG holds YCbCr, but full range, so the decoder's planes as they are would
 * show black as dark grey and white as light grey. videobalance maps y to (y − 16)·contrast + 16 +
 * 255·brightness and chroma c to (c − 128)·saturation + 128, on the encoder's thread.
 */
const FULL_RANGE = `contrast=${255 / 219} brightness=${-16 / 255} saturation=${255 / 224}`;

/**
 * the JPEG with the picture size its frame header gives set to `width` × `height`, in place: the
 * planes were encoded padded to whole blocks, which a decoder crops to the size the header says
 */
export function setJpegSize(jpeg: Buffer, width: number, height: number): Buffer {
  let at = 2;
  while (at + 9 <= jpeg.length && jpeg[at] === 0xff) {
    const marker = jpeg[at + 1]!;
    // SOF0–SOF3: baseline, extended, progressive, lossless; the start of scan ends the headers
    if (marker >= 0xc0 && marker <= 0xc3) {
      jpeg.writeUInt16BE(height, at + 5);
      jpeg.writeUInt16BE(width, at + 7);
      return jpeg;
    }
    if (marker === 0xda) break;
    at += 2 + jpeg.readUInt16BE(at + 2);
  }
  throw new ArgusError('the JPEG encoder gave a JPEG without a frame header');
}

/** one `appsrc ! jpegenc ! appsink` pipeline for frames of one size; its frames go through one at a time */
interface SizePipeline {
  pipeline: GstPipeline;
  src: GstAppSrc;
  encoder: Record<string, unknown>;
  sink: GstAppSink;
  /** the last frame given to it: the next one goes in once it is out */
  chain: Promise<unknown>;
  busy: number;
  lastUsed: number;
}

export interface JpegEncoderOptions {
  /** frame sizes that keep a pipeline; the one least recently used and idle is stopped for another */
  maxSizes: number;
  /** an encode that takes longer stops its pipeline and fails (a pipeline that failed answers nothing) */
  timeoutMs: number;
}

export const DEFAULT_JPEG_ENCODER_OPTIONS: JpegEncoderOptions = { maxSizes: 4, timeoutMs: 10_000 };

/**
 * I420 planes to JPEG in GStreamer's `jpegenc` (libjpeg-turbo), which takes them as they are: JPEG
 * stores YCbCr 4:2:0 too, so no pixel is converted to RGB and back, and the range conversion and the
 * encode run on a GStreamer thread, not on the event loop. One pipeline per frame size, started on
 * first use and kept.
 */
export class JpegEncoder {
  private readonly pipelines = new Map<string, SizePipeline>();

  constructor(private readonly options: JpegEncoderOptions = DEFAULT_JPEG_ENCODER_OPTIONS) {}

  /**
   * the planes (see `blockPlanes`) as a JPEG of `quality` (1–100); they must not change until it
   * resolves, and their padding is filled in (`replicateEdges`)
   */
  encode(planes: BlockPlanes, quality: number): Promise<Buffer> {
    if (!Number.isInteger(quality) || quality < 1 || quality > 100)
      return Promise.reject(new ArgusError(`JPEG quality ${quality}: expected an integer from 1 to 100`));
    const { data, width, height } = planes;
    const padded = blockLayout(width, height);
    if (data.length !== padded.size)
      return Promise.reject(
        new ArgusError(`JPEG planes of ${width}×${height} take ${padded.size} bytes, not ${data.length}`),
      );
    const key = `${padded.width}x${padded.height}`;
    const p = this.pipelines.get(key) ?? this.start(key, padded.width, padded.height);
    p.busy++;
    p.lastUsed = performance.now();
    const jpeg = p.chain.then(async () => {
      replicateEdges(planes);
      return setJpegSize(await this.run(key, p, data, quality), width, height);
    });
    p.chain = jpeg.catch(() => undefined).finally(() => p.busy--);
    return jpeg;
  }

  private start(key: string, width: number, height: number): SizePipeline {
    this.evict();
    const pipeline = new (gst().Pipeline)(
      `appsrc name=src format=time caps=video/x-raw,format=I420,width=${width},height=${height},framerate=0/1 ` +
        `! videobalance ${FULL_RANGE} ! jpegenc name=enc ! appsink name=sink sync=false max-buffers=1 enable-last-sample=false`,
    );
    const find = (name: string) => {
      const element = pipeline.findChild(name);
      if (!element) throw new ArgusError(`the JPEG encoder pipeline has no element ${name}`);
      return element;
    };
    const p: SizePipeline = {
      pipeline,
      // an appsrc element carries push, which the binding's type does not say
      src: find('src') as unknown as GstAppSrc,
      encoder: find('enc'),
      sink: find('sink'),
      chain: Promise.resolve(),
      busy: 0,
      lastUsed: performance.now(),
    };
    pipeline.play();
    this.pipelines.set(key, p);
    return p;
  }

  /** makes room for one more size: stops the least recently used idle pipeline */
  private evict(): void {
    if (this.pipelines.size < this.options.maxSizes) return;
    const idle = [...this.pipelines]
      .filter(([, p]) => p.busy === 0)
      .sort(([, a], [, b]) => a.lastUsed - b.lastUsed);
    const oldest = idle[0];
    if (!oldest) return;
    this.pipelines.delete(oldest[0]);
    oldest[1].pipeline.stop();
  }

  private run(key: string, p: SizePipeline, data: Uint8Array, quality: number): Promise<Buffer> {
    if (this.pipelines.get(key) !== p)
      return Promise.reject(
        new ArgusError(`the JPEG encoder's pipeline for ${key} was stopped (closed, or an encode timed out)`),
      );
    p.encoder.quality = quality;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pipelines.delete(key);
        // releases the pull with nothing
        p.pipeline.stop();
        reject(new ArgusError(`the JPEG encoder did not answer in ${this.options.timeoutMs} ms`));
      }, this.options.timeoutMs);
      p.sink.pull((jpeg) => {
        clearTimeout(timer);
        if (jpeg) resolve(jpeg);
        else reject(new ArgusError('the JPEG encoder stopped before its frame was encoded'));
      });
      // copies the bytes into a GStreamer buffer
      p.src.push(data);
    });
  }

  /** stops every pipeline once its frames are encoded */
  async close(): Promise<void> {
    const all = [...this.pipelines.values()];
    await Promise.all(all.map((p) => p.chain));
    for (const p of all) p.pipeline.stop();
    this.pipelines.clear();
  }
}
