import Type from 'typebox';
import { ArgusError } from '../../common/errors.ts';
import { createLogger } from '../../common/logger.ts';
import { compileSchema } from '../../common/schema.ts';
import type { Detection } from '../../inference/detector.ts';
import { type FrameMatch, meanAveragePrecision } from '../../inference/map.ts';
import { iou } from '../../inference/nms.ts';
import type { Box } from '../../inference/rect.ts';
import { FrameSource } from '../../video/frame-source.ts';
import type { RgbImage } from './image.ts';

/**
 * Hand-annotated frames of a recording and how a labeller's detections score on them: what the
 * teacher is measured on before it may teach, and what the loop's gate checks a candidate on.
 * The annotation files are read by their owners (the CLI, tests, benchmarks); this module takes
 * their boxes.
 */

const Pixel = Type.Number({ minimum: -100_000, maximum: 100_000 });

/** one hand-annotated frame */
export const AnnotatedFrameSchema = Type.Object(
  {
    /** 0-based index of the decoded frame in its recording */
    index: Type.Integer({ minimum: 0, maximum: 10_000_000 }),
    /** every object of the class in the frame (within the scored part), [x1, y1, x2, y2] source pixels */
    boxes: Type.Array(Type.Tuple([Pixel, Pixel, Pixel, Pixel]), { maxItems: 1000 }),
    /**
     * only objects whose box bottom lies at or below this row are scored, annotated and found alike
     * (a part of the frame left out of the annotation)
     */
    minBottom: Type.Optional(Pixel),
  },
  { additionalProperties: false },
);

/** frames of a recording annotated by hand with every object of one class (config, files: bounded) */
export const AnnotatedSetSchema = Type.Object(
  {
    video: Type.String({ minLength: 1, maxLength: 4096 }),
    /** the class annotated, e.g. `person` */
    label: Type.String({ minLength: 1, maxLength: 64 }),
    /** the recording's frame size */
    width: Type.Integer({ minimum: 1, maximum: 16_384 }),
    height: Type.Integer({ minimum: 1, maximum: 16_384 }),
    frames: Type.Array(AnnotatedFrameSchema, { minItems: 1, maxItems: 1000 }),
  },
  { additionalProperties: false },
);

export type AnnotatedFrame = Type.Static<typeof AnnotatedFrameSchema>;
export type AnnotatedSet = Type.Static<typeof AnnotatedSetSchema>;

export const annotatedSetValidator = compileSchema<AnnotatedSet>(AnnotatedSetSchema);

export interface LabelScore {
  truths: number;
  /** detections at or above the score threshold */
  found: number;
  truePositives: number;
  recall: number;
  precision: number;
  /** AP@0.5 of all detections given (ranked by score, down to whatever threshold made them) */
  ap: number;
  scoreThreshold: number;
}

const scored = (frame: AnnotatedFrame, box: Readonly<Box>) =>
  frame.minBottom === undefined || box[3] >= frame.minBottom;

/**
 * Recall and precision at IoU ≥ 0.5 of detections of the set's class at or above `scoreThreshold`
 * (each matched greedily, best score first, to the unmatched annotated box it overlaps most), and
 * AP@0.5 over every detection given. `found[i]` are the detections of `set.frames[i]`.
 */
export function scoreOnAnnotated(
  set: AnnotatedSet,
  found: readonly (readonly Detection[])[],
  scoreThreshold: number,
): LabelScore {
  if (found.length !== set.frames.length) {
    throw new ArgusError(`${found.length} frames of detections for ${set.frames.length} annotated frames`);
  }
  let truths = 0;
  let kept = 0;
  let truePositives = 0;
  const matches: FrameMatch[] = [];
  set.frames.forEach((frame, i) => {
    const truth = frame.boxes.filter((b) => scored(frame, b));
    const mine = found[i]!.filter((d) => d.label === set.label && scored(frame, d.box));
    matches.push({
      truth: truth.map((box) => ({ label: set.label, box })),
      found: mine.map((d) => ({ label: set.label, box: d.box, score: d.score })),
    });
    truths += truth.length;
    const used = new Array<boolean>(truth.length).fill(false);
    for (const d of [...mine].filter((d) => d.score >= scoreThreshold).sort((a, b) => b.score - a.score)) {
      kept++;
      let best = -1;
      let bestIou = 0.5;
      truth.forEach((t, k) => {
        const overlap = used[k] ? 0 : iou(d.box, t);
        if (overlap >= bestIou) {
          bestIou = overlap;
          best = k;
        }
      });
      if (best >= 0) {
        used[best] = true;
        truePositives++;
      }
    }
  });
  const ap = meanAveragePrecision(matches, [set.label]).map;
  return {
    truths,
    found: kept,
    truePositives,
    recall: truths === 0 ? 1 : truePositives / truths,
    precision: kept === 0 ? 1 : truePositives / kept,
    ap,
    scoreThreshold,
  };
}

/**
 * The frames `indices` (0-based, any order) of a recording at its full resolution in RGB, decoded
 * with the product's GStreamer pipeline, one pass; `size` is the recording's frame size.
 */
export async function readVideoImages(
  video: string,
  indices: readonly number[],
  size: { width: number; height: number },
  signal?: AbortSignal,
): Promise<Map<number, RgbImage>> {
  const wanted = new Set(indices);
  const last = Math.max(...indices);
  const source = new FrameSource(
    { source: { kind: 'file', path: video }, model: { ...size, format: 'RGB' } },
    createLogger('annotated-frames'),
  );
  const out = new Map<number, RgbImage>();
  source.start();
  try {
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const frame = await source.next();
      if (!frame) break;
      if (wanted.has(frame.index)) out.set(frame.index, { data: new Uint8Array(frame.model), ...size });
      if (frame.index >= last) break;
    }
  } finally {
    source.stop();
  }
  const missing = indices.filter((i) => !out.has(i));
  if (missing.length > 0) {
    throw new ArgusError(
      `${video} ends before frame ${Math.min(...missing)}`,
      'annotate frames inside the recording',
    );
  }
  return out;
}
