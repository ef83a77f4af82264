import { resolve } from 'node:path';
import Type from 'typebox';
import { ArgusError } from '../../common/errors.ts';
import { createLogger } from '../../common/logger.ts';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import type { Progress } from '../../common/progress.ts';
import type { ModelDescriptor } from '../../inference/descriptor.ts';
import { FrameSource } from '../../video/frame-source.ts';

/**
 * Frames of a recording used by the model factory: calibration picks one set, evaluation a
 * disjoint one. A set is written `FIRST-LAST/STEP` (frame numbers, 0-based, LAST included).
 */

export const FrameRangeSchema = Type.Object(
  {
    /** recording the frames come from (default: the sample street video vtest.avi) */
    video: Type.String({ minLength: 1 }),
    first: Type.Integer({ minimum: 0 }),
    last: Type.Integer({ minimum: 0 }),
    step: Type.Integer({ minimum: 1 }),
  },
  { additionalProperties: false },
);

export type FrameRange = Type.Static<typeof FrameRangeSchema>;

/**
 * Frames of a site rather than of a recording (the data–model loop's harvested frames): which site,
 * how many, and a digest naming exactly which (sha256 over the frames' own digests, in order).
 */
export const SiteFramesSchema = Type.Object(
  {
    site: Type.String({ minLength: 1, maxLength: 200 }),
    count: Type.Integer({ minimum: 1 }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  },
  { additionalProperties: false },
);

export type SiteFrames = Type.Static<typeof SiteFramesSchema>;

/** the frames a model was calibrated or evaluated on: a range of a recording, or frames of a site */
export const FrameSetSchema = Type.Union([FrameRangeSchema, SiteFramesSchema]);
export type FrameSet = Type.Static<typeof FrameSetSchema>;

export function isSiteFrames(set: FrameSet): set is SiteFrames {
  return 'site' in set;
}

/** `FIRST-LAST/STEP` of a range, `N frames of site S (sha256 …)` of site frames */
export function formatFrameSet(set: FrameSet): string {
  return isSiteFrames(set)
    ? `${set.count} frames of site ${set.site} (${set.sha256.slice(0, 12)}…)`
    : formatFrameRange(set);
}

/** where a frame set comes from: the recording's path, or `site:LABEL` */
export function frameSetSource(set: FrameSet): string {
  return isSiteFrames(set) ? `site:${set.site}` : set.video;
}

/** calibration: every 20th frame of the first half of vtest.avi */
export const DEFAULT_CALIBRATION_FRAMES = '10-390/20';
/** evaluation: every 10th frame of the second half, disjoint from calibration */
export const DEFAULT_EVALUATION_FRAMES = '400-790/10';

export function parseFrameRange(spec: string, video: string = SAMPLE_VIDEO): FrameRange {
  const m = /^(\d+)-(\d+)(?:\/(\d+))?$/.exec(spec.trim());
  if (!m) throw new ArgusError(`frame set "${spec}" is not FIRST-LAST/STEP`, 'e.g. 10-390/20');
  const range = { video: resolve(video), first: Number(m[1]), last: Number(m[2]), step: Number(m[3] ?? 1) };
  if (range.last < range.first || range.step < 1) {
    throw new ArgusError(`frame set "${spec}" is empty`, 'LAST must not be below FIRST and STEP must be ≥ 1');
  }
  return range;
}

export function formatFrameRange(range: FrameRange): string {
  return `${range.first}-${range.last}/${range.step}`;
}

export function frameIndices(range: FrameRange): number[] {
  const out: number[] = [];
  for (let i = range.first; i <= range.last; i += range.step) out.push(i);
  return out;
}

/**
 * frame numbers both sets contain, when they come from the same recording; site frames are checked
 * by their digest (the same digest: every frame shared, numbered from 0)
 */
export function overlappingFrames(a: FrameSet, b: FrameSet): number[] {
  if (isSiteFrames(a) || isSiteFrames(b)) {
    return isSiteFrames(a) && isSiteFrames(b) && a.sha256 === b.sha256
      ? Array.from({ length: a.count }, (_, i) => i)
      : [];
  }
  if (resolve(a.video) !== resolve(b.video)) return [];
  const inB = new Set(frameIndices(b));
  return frameIndices(a).filter((i) => inB.has(i));
}

/**
 * Decodes the recording with the product's own GStreamer pipeline and returns the frames of
 * `range` as the model takes them (input size and colour order, HWC uint8), in order.
 */
export async function readModelFrames(
  range: FrameRange,
  input: ModelDescriptor['input'],
  options: { signal?: AbortSignal; progress?: Progress } = {},
): Promise<Uint8Array[]> {
  const wanted = frameIndices(range);
  const source = new FrameSource(
    {
      source: { kind: 'file', path: range.video },
      model: { width: input.width, height: input.height, format: input.colorOrder },
    },
    createLogger('model-frames'),
  );
  const out: Uint8Array[] = [];
  source.start();
  try {
    for (;;) {
      if (options.signal?.aborted) throw options.signal.reason;
      const frame = await source.next();
      if (!frame) break;
      if (frame.index === wanted[out.length]) {
        out.push(new Uint8Array(frame.model));
        options.progress?.update(out.length, wanted.length);
      }
      if (out.length === wanted.length) break;
    }
  } finally {
    source.stop();
  }
  if (out.length < wanted.length) {
    throw new ArgusError(
      `${range.video} ends before frame ${wanted[out.length]} (frame set ${formatFrameRange(range)})`,
      'choose frames inside the recording',
    );
  }
  return out;
}
