import { createReadStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ArgusError } from '../../common/errors.ts';
import { sha256Hex } from '../../common/hash.ts';
import type { ModelDescriptor } from '../../inference/descriptor.ts';
import type { Detection } from '../../inference/detector.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import type { SiteFrames } from '../quant/frames.ts';
import { decodeImage, modelFrameOf, type RgbImage } from '../teacher/image.ts';

/**
 * The loop's frames in its work directory: each harvested JPEG as it came (`jpeg/N.jpg`, for the
 * teacher, which looks at full resolution) and decoded into the student's input (`model/N.raw`,
 * its size and colour order, HWC uint8), with an index line per frame (`frames.jsonl`: id, capture
 * time, split, size, digests). Frames are written one at a time as they stream in and read back
 * one at a time: the set is never held in memory.
 */

/** one harvested frame as the control plane keeps it */
export interface HarvestedFrame {
  id: string;
  /** ISO 8601 */
  capturedAt: string;
  jpeg: Buffer;
}

export interface HarvestedFrames {
  frames(): AsyncIterable<HarvestedFrame>;
}

export type Split = 'train' | 'held-out';

export interface FrameEntry {
  /** the frame's number in the work directory (file names; ids are the source's and untrusted) */
  n: number;
  id: string;
  capturedAt: string;
  split: Split;
  width: number;
  height: number;
  /** sha256 of the JPEG */
  jpegSha256: string;
  /** sha256 of the student's input pixels */
  pixelsSha256: string;
}

export const INDEX_FILE = 'frames.jsonl';
/** the largest harvested JPEG taken */
export const MAX_JPEG_BYTES = 16 << 20;
const MAX_ID = 200;

export interface CollectOptions {
  /** frames captured at or after this instant are held out; default: the latest `heldOutShare` of them */
  heldOutFrom?: string;
  heldOutShare: number;
  maxFrames: number;
  signal?: AbortSignal;
  onFrame?: (count: number) => void;
}

export interface CollectSummary {
  frames: number;
  train: number;
  heldOut: number;
  /** frames refused (undecodable, too large, duplicates) and why, the first few */
  skipped: number;
  skippedReasons: string[];
  trainFrames: SiteFrames;
  heldOutFrames: SiteFrames;
}

const jpegPath = (dir: string, n: number) => join(dir, 'jpeg', `${n}.jpg`);
const rawPath = (dir: string, n: number) => join(dir, 'model', `${n}.raw`);

function timeOf(capturedAt: string): number {
  const t = Date.parse(capturedAt);
  return Number.isFinite(t) ? t : Number.NaN;
}

/** the digest naming a set of frames: sha256 over their pixel digests, in order */
export function framesDigest(entries: readonly FrameEntry[]): string {
  return sha256Hex(entries.map((e) => e.pixelsSha256).join('\n'));
}

/** streams the source's frames into `dir` (a staging directory), then splits them by capture time */
export async function collectFrames(
  source: HarvestedFrames,
  dir: string,
  site: string,
  input: ModelDescriptor['input'],
  options: CollectOptions,
): Promise<CollectSummary> {
  await mkdir(join(dir, 'jpeg'), { recursive: true });
  await mkdir(join(dir, 'model'), { recursive: true });
  const entries: Omit<FrameEntry, 'split'>[] = [];
  const seen = new Set<string>();
  const skippedReasons: string[] = [];
  let skipped = 0;
  const skip = (why: string) => {
    skipped++;
    if (skippedReasons.length < 10) skippedReasons.push(why);
  };
  for await (const frame of source.frames()) {
    if (options.signal?.aborted) throw options.signal.reason;
    const id = typeof frame.id === 'string' ? frame.id.slice(0, MAX_ID) : '';
    if (!id || !Buffer.isBuffer(frame.jpeg) || !Number.isFinite(timeOf(frame.capturedAt))) {
      skip(`frame ${JSON.stringify(id)}: needs an id, a capture time and JPEG bytes`);
      continue;
    }
    if (frame.jpeg.length > MAX_JPEG_BYTES) {
      skip(`frame ${id}: ${frame.jpeg.length} bytes, more than ${MAX_JPEG_BYTES}`);
      continue;
    }
    const jpegSha256 = sha256Hex(frame.jpeg);
    if (seen.has(jpegSha256) || seen.has(`id:${id}`)) {
      skip(`frame ${id}: a duplicate`);
      continue;
    }
    let image: RgbImage;
    try {
      image = await decodeImage(frame.jpeg);
    } catch (err) {
      skip(`frame ${id}: ${(err as Error).message}`);
      continue;
    }
    if (entries.length >= options.maxFrames) {
      throw new ArgusError(
        `the site gave more than ${options.maxFrames} frames`,
        'raise the loop’s maxFrames or give it fewer frames (a time window)',
      );
    }
    seen.add(jpegSha256);
    seen.add(`id:${id}`);
    const n = entries.length;
    const model = await modelFrameOf(image, input);
    await writeFile(jpegPath(dir, n), frame.jpeg);
    await writeFile(rawPath(dir, n), model.pixels);
    entries.push({
      n,
      id,
      capturedAt: new Date(timeOf(frame.capturedAt)).toISOString(),
      width: image.width,
      height: image.height,
      jpegSha256,
      pixelsSha256: sha256Hex(model.pixels),
    });
    options.onFrame?.(entries.length);
  }
  const order = [...entries].sort((a, b) => timeOf(a.capturedAt) - timeOf(b.capturedAt) || a.n - b.n);
  const from = options.heldOutFrom !== undefined ? timeOf(options.heldOutFrom) : Number.NaN;
  const firstHeld = Number.isFinite(from)
    ? order.findIndex((e) => timeOf(e.capturedAt) >= from)
    : order.length - Math.ceil(order.length * options.heldOutShare);
  const cut = firstHeld < 0 ? order.length : firstHeld;
  const split: FrameEntry[] = order.map((e, i) => ({ ...e, split: i < cut ? 'train' : 'held-out' }));
  const train = split.filter((e) => e.split === 'train');
  const heldOut = split.filter((e) => e.split === 'held-out');
  if (train.length === 0 || heldOut.length === 0) {
    throw new ArgusError(
      `${entries.length} usable frames of site ${site} give ${train.length} to train on and ${heldOut.length} to hold out${skipped ? ` (${skipped} skipped: ${skippedReasons.slice(0, 3).join('; ')})` : ''}`,
      'the loop needs frames on both sides of the split: harvest longer, or move heldOutFrom',
    );
  }
  await writeFile(join(dir, INDEX_FILE), `${split.map((e) => JSON.stringify(e)).join('\n')}\n`);
  return {
    frames: split.length,
    train: train.length,
    heldOut: heldOut.length,
    skipped,
    skippedReasons,
    trainFrames: { site, count: train.length, sha256: framesDigest(train) },
    heldOutFrames: { site, count: heldOut.length, sha256: framesDigest(heldOut) },
  };
}

/** the index of a collected work directory, one entry at a time, in capture order */
export async function* readIndex(dir: string, split?: Split): AsyncIterable<FrameEntry> {
  const lines = createInterface({
    input: createReadStream(join(dir, INDEX_FILE)),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  for await (const line of lines) {
    if (!line) continue;
    const entry = JSON.parse(line) as FrameEntry;
    if (!split || entry.split === split) yield entry;
  }
}

export async function readJpeg(dir: string, entry: FrameEntry): Promise<Buffer> {
  return readFile(jpegPath(dir, entry.n));
}

/** the frame as the student takes it; its source size is the harvested frame's */
export async function readModelFrame(dir: string, entry: FrameEntry): Promise<ModelFrame> {
  const pixels = await readFile(rawPath(dir, entry.n));
  return {
    pixels: new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.length),
    sourceWidth: entry.width,
    sourceHeight: entry.height,
  };
}

/** one line of the teacher's labels file */
export interface LabelLine {
  n: number;
  labels: Detection[];
}

export const LABELS_FILE = 'labels.jsonl';

/** the teacher's labels, one frame at a time, in the order they were written (the index's) */
export async function* readLabels(dir: string): AsyncIterable<LabelLine> {
  const lines = createInterface({
    input: createReadStream(join(dir, LABELS_FILE)),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  for await (const line of lines) if (line) yield JSON.parse(line) as LabelLine;
}
