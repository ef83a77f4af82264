import ort from 'onnxruntime-node';
import Type from 'typebox';
import { ArgusError } from '../../common/errors.ts';
import { compileSchema } from '../../common/schema.ts';
import type { GflDecoderSpec } from '../../inference/descriptor.ts';
import type { LoadedModel } from '../../inference/model-dir.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import { type Box, clipBox } from '../../inference/rect.ts';
import { assignCells, cellCentre, isUsableBox, type LevelGrid, levelGrids } from './assign.ts';
import { readHead, withFeatureOutputs } from './head.ts';
import type { Batch, HeadShape, LevelCells, TrainingBox } from './loss.ts';
import type { AdaptOptions } from './options.ts';

/**
 * The feature cache of an adaptation: the frozen network (everything before the head's last
 * layer) runs once per frame; of its output, the features of the cells that matter are kept — every
 * cell assigned to a teacher box, every ATSS candidate, every cell the student already scores as a
 * hard negative — with a seeded random share of the easy negatives, each weighted by the inverse
 * of that share so that the loss stays an unbiased estimate of the whole frame's. One frame's cells
 * are one file; training reads a minibatch of files at a time, so memory stays bounded whatever
 * the number of frames.
 */

/** what the teacher said of a frame: a `Detection` fits */
export interface TeacherLabel {
  label: string;
  /** [x1, y1, x2, y2] in the frame's source pixels */
  box: Readonly<Box>;
  score: number;
}

export interface LabelledFrame {
  /** the frame's name in its harvest (for messages) */
  id: string;
  /** the frame as the student takes it (its whole input size, in its colour order) */
  frame: ModelFrame;
  labels: readonly TeacherLabel[];
}

/** the kept cells of one frame */
export interface FrameCells {
  boxes: TrainingBox[];
  levels: LevelCells[];
}

/** the teacher's labels of a frame as training boxes in the student's input pixels */
export function trainingBoxes(
  frame: LabelledFrame,
  student: LoadedModel['descriptor'],
  options: Pick<AdaptOptions, 'labelScore' | 'minLabelScore' | 'maxLabelsPerFrame'>,
): TrainingBox[] {
  if (frame.labels.length > options.maxLabelsPerFrame) {
    throw new ArgusError(
      `frame ${frame.id} has ${frame.labels.length} teacher boxes, more than the ${options.maxLabelsPerFrame} a frame may carry`,
      'check the teacher (its score threshold) or raise maxLabelsPerFrame',
    );
  }
  const { width, height } = student.input;
  const { sourceWidth, sourceHeight } = frame.frame;
  if (!(sourceWidth > 0 && sourceHeight > 0)) {
    throw new ArgusError(`frame ${frame.id} has no source size (${sourceWidth}×${sourceHeight})`);
  }
  const sx = width / sourceWidth;
  const sy = height / sourceHeight;
  const out: TrainingBox[] = [];
  for (const l of frame.labels) {
    const classId = student.labels.indexOf(l.label);
    if (classId < 0 || !(l.score >= options.minLabelScore && l.score <= 1)) continue;
    const box = clipBox([l.box[0] * sx, l.box[1] * sy, l.box[2] * sx, l.box[3] * sy], width, height);
    if (!isUsableBox(box)) continue;
    out.push({ box, classId, score: l.score, hard: l.score >= options.labelScore });
  }
  return out;
}

export interface FrameRun {
  /** per level, the features [cin, rows, cols] */
  features: Float32Array[];
  /** per level, the student's class scores [cells, classes] (probabilities) */
  scores: Float32Array[];
}

/** which cells of a frame to keep, and with what weight */
export function selectCells(
  shape: HeadShape,
  grids: readonly LevelGrid[],
  boxes: readonly TrainingBox[],
  run: FrameRun,
  options: Pick<AdaptOptions, 'topK' | 'anchorScale' | 'hardNegativeScore' | 'negativeRate'>,
  random: () => number,
): FrameCells {
  const assignment = assignCells(
    boxes.map((b) => b.box),
    grids,
    { topK: options.topK, anchorScale: options.anchorScale },
  );
  const levels = grids.map((grid, level): LevelCells => {
    const cells = grid.cols * grid.rows;
    const cin = shape.cin[level]!;
    const features = run.features[level]!;
    const scores = run.scores[level]!;
    if (features.length !== cin * cells || scores.length !== shape.classes * cells) {
      throw new ArgusError(
        `level ${level} has ${features.length / cin} cells of features, expected ${cells}`,
      );
    }
    const kept: number[] = [];
    const weights: number[] = [];
    for (let cell = 0; cell < cells; cell++) {
      let best = 0;
      for (let c = 0; c < shape.classes; c++) best = Math.max(best, scores[cell * shape.classes + c]!);
      const near = assignment.box[level]![cell]! >= 0 || assignment.candidate[level]![cell] === 1;
      // one draw per cell whether or not it is used, so a cell's draw does not depend on its neighbours
      const draw = random();
      if (near || best >= options.hardNegativeScore) {
        kept.push(cell);
        weights.push(1);
      } else if (draw < options.negativeRate) {
        kept.push(cell);
        weights.push(1 / options.negativeRate);
      }
    }
    const n = kept.length;
    const out: LevelCells = {
      count: n,
      centres: new Float32Array(2 * n),
      features: new Float32Array(n * cin),
      weight: Float32Array.from(weights),
      box: new Int32Array(n),
    };
    kept.forEach((cell, i) => {
      const [cx, cy] = cellCentre(grid, cell);
      out.centres[2 * i] = cx;
      out.centres[2 * i + 1] = cy;
      out.box[i] = assignment.box[level]![cell]!;
      for (let k = 0; k < cin; k++) out.features[i * cin + k] = features[k * cells + cell]!;
    });
    return out;
  });
  return { boxes: [...boxes], levels };
}

/** runs the frozen part of the student once per frame: every cell's features and the student's scores */
export class FeatureRunner {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly student: LoadedModel,
    private readonly featureTensors: string[],
    readonly shape: HeadShape,
    readonly grids: LevelGrid[],
  ) {}

  static async open(student: LoadedModel, threads: number): Promise<FeatureRunner> {
    const d = student.descriptor;
    if (d.input.dtype !== 'uint8' || d.input.layout !== 'NHWC') {
      throw new ArgusError(
        `student ${d.name} takes ${d.input.dtype} ${d.input.layout} input; adaptation feeds uint8 NHWC frames`,
        'adapt a model whose descriptor has a uint8 NHWC input (normalisation folded into the graph)',
      );
    }
    const head = readHead(student.bytes, d);
    const { bytes, outputs } = withFeatureOutputs(student.bytes, d);
    const session = await ort.InferenceSession.create(bytes, {
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
    });
    return new FeatureRunner(
      session,
      student,
      outputs,
      head.shape,
      levelGrids(head.shape.strides, d.input.width, d.input.height),
    );
  }

  async run(frame: LabelledFrame): Promise<FrameRun> {
    const d = this.student.descriptor;
    const { width, height, name } = d.input;
    const size = frame.frame.size;
    if (
      (size && (size.width !== width || size.height !== height)) ||
      frame.frame.pixels.length !== width * height * 3
    ) {
      throw new ArgusError(
        `frame ${frame.id} is not a whole ${width}×${height} input of ${d.name} (${frame.frame.pixels.length} bytes)`,
        'give the student its frames stretched to its whole input size',
      );
    }
    const decoder = d.decoder as GflDecoderSpec;
    const out = await this.session.run(
      { [name]: new ort.Tensor('uint8', frame.frame.pixels, [1, height, width, 3]) },
      [...this.featureTensors, ...decoder.scoreOutputs],
    );
    const features = this.featureTensors.map((t, level) => {
      const tensor = out[t]!;
      const g = this.grids[level]!;
      const expected = [1, this.shape.cin[level]!, g.rows, g.cols];
      if (tensor.dims.join(',') !== expected.join(',')) {
        throw new ArgusError(
          `the head features "${t}" have shape [${tensor.dims.join(',')}], expected [${expected.join(',')}]`,
        );
      }
      return tensor.data as Float32Array;
    });
    const scores = decoder.scoreOutputs.map((o) => {
      const data = out[o]!.data as Float32Array;
      return decoder.scoresActivated ? data : Float32Array.from(data, (z) => 1 / (1 + Math.exp(-z)));
    });
    return { features, scores };
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}

// ---------------------------------------------------------------------------------------------
// the cache file of one frame: a JSON header, then per level the centres, weights, box indices and
// features as little-endian 32-bit arrays

const MAGIC = 'argus-adapt-cells/1';

const HeaderSchema = Type.Object(
  {
    magic: Type.Literal(MAGIC),
    boxes: Type.Array(
      Type.Object(
        {
          box: Type.Array(Type.Number(), { minItems: 4, maxItems: 4 }),
          classId: Type.Integer({ minimum: 0 }),
          score: Type.Number({ minimum: 0, maximum: 1 }),
          hard: Type.Boolean(),
        },
        { additionalProperties: false },
      ),
      { maxItems: 1000 },
    ),
    counts: Type.Array(Type.Integer({ minimum: 0, maximum: 1 << 22 }), { maxItems: 16 }),
  },
  { additionalProperties: false },
);

type Header = Type.Static<typeof HeaderSchema>;
const headerValidator = compileSchema<Header>(HeaderSchema);

const MAX_HEADER_BYTES = 1 << 20;

export function encodeFrameCells(cells: FrameCells): Uint8Array {
  const header: Header = {
    magic: MAGIC,
    boxes: cells.boxes.map((b) => ({ box: [...b.box], classId: b.classId, score: b.score, hard: b.hard })),
    counts: cells.levels.map((l) => l.count),
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const headerBytes = 4 + Math.ceil(json.length / 4) * 4;
  const arrays = cells.levels.flatMap((l) => [l.centres, l.weight, l.box, l.features]);
  const total = headerBytes + arrays.reduce((a, x) => a + x.byteLength, 0);
  const out = new Uint8Array(total);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 4);
  let offset = headerBytes;
  for (const a of arrays) {
    out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), offset);
    offset += a.byteLength;
  }
  return out;
}

/** the cells of a cache file, checked against the head they were made for */
export function decodeFrameCells(bytes: Uint8Array, shape: HeadShape, what: string): FrameCells {
  const corrupt = (why: string) =>
    new ArgusError(
      `feature cache ${what} is corrupt: ${why}`,
      'delete the adaptation work directory and run again',
    );
  if (bytes.length < 4) throw corrupt('too short');
  const length = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
  if (length > MAX_HEADER_BYTES || 4 + length > bytes.length) throw corrupt(`header of ${length} bytes`);
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes.subarray(4, 4 + length)).toString('utf8'));
  } catch {
    throw corrupt('header is not JSON');
  }
  if (!headerValidator.check(raw)) throw corrupt('header does not match its schema');
  const header = raw;
  if (header.counts.length !== shape.cin.length) throw corrupt(`${header.counts.length} levels`);
  if (header.boxes.some((b) => b.classId >= shape.classes)) throw corrupt('class out of range');
  const expected =
    4 +
    Math.ceil(length / 4) * 4 +
    header.counts.reduce((a, n, level) => a + 4 * n * (2 + 1 + 1 + shape.cin[level]!), 0);
  if (bytes.length !== expected) throw corrupt(`${bytes.length} bytes, expected ${expected}`);
  // a copy, aligned at 0 (a Buffer's slice would share the file's buffer at its offset)
  const copy = new Uint8Array(bytes.subarray(4 + Math.ceil(length / 4) * 4));
  let offset = 0;
  const take = <T>(n: number, make: (buffer: ArrayBuffer, offset: number, n: number) => T): T => {
    const out = make(copy.buffer as ArrayBuffer, offset, n);
    offset += 4 * n;
    return out;
  };
  const levels = header.counts.map((n, level): LevelCells => {
    const cells: LevelCells = {
      count: n,
      centres: take(2 * n, (b, o, k) => new Float32Array(b, o, k)),
      weight: take(n, (b, o, k) => new Float32Array(b, o, k)),
      box: take(n, (b, o, k) => new Int32Array(b, o, k)),
      features: take(n * shape.cin[level]!, (b, o, k) => new Float32Array(b, o, k)),
    };
    if (cells.box.some((b) => b < -1 || b >= header.boxes.length)) throw corrupt('box index out of range');
    return cells;
  });
  return {
    boxes: header.boxes.map((b) => ({ box: b.box as Box, classId: b.classId, score: b.score, hard: b.hard })),
    levels,
  };
}

/** frames' cells as one batch, box indices renumbered */
export function concatFrames(
  frames: readonly FrameCells[],
  shape: HeadShape,
  width: number,
  height: number,
): Batch {
  const boxes: TrainingBox[] = [];
  const offsets: number[] = [];
  for (const f of frames) {
    offsets.push(boxes.length);
    boxes.push(...f.boxes);
  }
  const levels = shape.cin.map((cin, level): LevelCells => {
    const count = frames.reduce((a, f) => a + f.levels[level]!.count, 0);
    const out: LevelCells = {
      count,
      centres: new Float32Array(2 * count),
      features: new Float32Array(count * cin),
      weight: new Float32Array(count),
      box: new Int32Array(count),
    };
    let at = 0;
    frames.forEach((f, i) => {
      const l = f.levels[level]!;
      out.centres.set(l.centres, 2 * at);
      out.features.set(l.features, at * cin);
      out.weight.set(l.weight, at);
      for (let k = 0; k < l.count; k++) out.box[at + k] = l.box[k]! < 0 ? -1 : l.box[k]! + offsets[i]!;
      at += l.count;
    });
    return out;
  });
  return { boxes, levels, inputWidth: width, inputHeight: height };
}
