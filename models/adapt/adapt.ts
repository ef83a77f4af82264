import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ArgusError } from '../../common/errors.ts';
import { writeFileAtomic } from '../../common/fs-atomic.ts';
import { sha256Hex } from '../../common/hash.ts';
import { type LoadedModel, loadModel } from '../../inference/model-dir.ts';
import { type AdaptLineageStep, extendLineage, writeDerivedModel } from '../bundle/lineage.ts';
import {
  concatFrames,
  decodeFrameCells,
  encodeFrameCells,
  FeatureRunner,
  type FrameCells,
  type LabelledFrame,
  selectCells,
  trainingBoxes,
} from './features.ts';
import { readHead, writeHead } from './head.ts';
import type { Batch, LossWeights } from './loss.ts';
import { type AdaptOptions, adaptOptions } from './options.ts';
import { type EpochLoss, seededRandom, shuffled, trainHead } from './trainer.ts';

/**
 * Student adaptation, the third step of the data–model loop: the class-pruned NanoDet student's
 * head (its last layer, a 1×1 Conv per stride) is trained on a teacher's labels of frames harvested
 * at one site, with the detector's own losses (quality focal loss, distribution focal loss) and
 * distillation of the teacher's scores (models/adapt/loss.ts), on features cached from the frozen
 * rest of the network (features.ts), by a small Adam trainer (trainer.ts). The trained weights are
 * written back into the student's ONNX graph; the result is a model directory with a descriptor and
 * a lineage that names the teacher, the frames and the losses per epoch. Quantization
 * (models/quant) and the gate (gate.ts) come after it.
 */

export interface AdaptProgress {
  step: 'features' | 'train';
  /** frames cached, or epochs trained */
  done: number;
  /** epochs to train (frames are counted as they come) */
  total?: number;
  /** the epoch's losses, when `step` is `train` */
  loss?: EpochLoss;
}

export interface AdaptRequest {
  /** the float student: a GFL model (NanoDet, class-pruned to the site's classes) */
  student: LoadedModel;
  /** the training frames with the teacher's labels; read once, one at a time */
  frames: Iterable<LabelledFrame> | AsyncIterable<LabelledFrame>;
  /** the labeller, for the lineage */
  teacher: AdaptLineageStep['teacher'];
  /** the feature cache and the adapted model go here; a run again with the same inputs reuses the cache */
  workDir: string;
  /** partial options, validated with defaults (options.ts) */
  options?: unknown;
  /** name of the adapted model (default: the student's name + "-adapted") */
  name?: string;
  signal?: AbortSignal;
  onProgress?: (p: AdaptProgress) => void;
}

export interface AdaptResult {
  /** the adapted float model's directory (`workDir/model`) */
  modelDir: string;
  model: LoadedModel;
  losses: EpochLoss[];
  /** sha256 of each training frame's pixels, in training order: held-out frames must not be among them */
  trainedFrames: string[];
  /** teacher boxes used, cells assigned to one, cells cached */
  labels: number;
  positives: number;
  cells: number;
  /** wall time of the feature pass and of training, ms */
  featureMs: number;
  trainMs: number;
}

/** the settings a cache file depends on: another value of one of them makes other files */
function cacheKey(student: LoadedModel, options: AdaptOptions, frame: LabelledFrame, pixels: string): string {
  const settings = {
    student: student.descriptor.sha256,
    labelScore: options.labelScore,
    minLabelScore: options.minLabelScore,
    hardNegativeScore: options.hardNegativeScore,
    negativeRate: options.negativeRate,
    topK: options.topK,
    anchorScale: options.anchorScale,
    seed: options.seed,
    source: [frame.frame.sourceWidth, frame.frame.sourceHeight],
    labels: frame.labels.map((l) => [l.label, ...l.box, l.score]),
    pixels,
  };
  return sha256Hex(JSON.stringify(settings));
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function lossWeights(o: AdaptOptions): LossWeights {
  return {
    quality: o.qualityWeight,
    box: o.boxWeight,
    distill: o.distillWeight,
    decay: o.weightDecay,
    beta: o.focalBeta,
    trainBox: o.trainBox,
  };
}

export async function adaptStudent(request: AdaptRequest): Promise<AdaptResult> {
  const { student, signal } = request;
  const options = adaptOptions(request.options);
  const d = student.descriptor;
  const head = readHead(student.bytes, d);
  const cacheDir = join(request.workDir, 'features');
  await mkdir(cacheDir, { recursive: true });

  const featureStart = performance.now();
  const files: string[] = [];
  const trainedFrames: string[] = [];
  let labels = 0;
  let positives = 0;
  let cells = 0;
  const count = (f: FrameCells) => {
    labels += f.boxes.filter((b) => b.hard).length;
    for (const l of f.levels) {
      cells += l.count;
      for (let i = 0; i < l.count; i++) if (l.box[i]! >= 0 && f.boxes[l.box[i]!]!.hard) positives++;
    }
  };
  const runner = await FeatureRunner.open(student, options.threads);
  try {
    for await (const frame of request.frames) {
      if (signal?.aborted) throw signal.reason;
      if (files.length >= options.maxFrames) {
        throw new ArgusError(
          `more than ${options.maxFrames} training frames`,
          'adapt on fewer frames (the harvest budget) or raise maxFrames',
        );
      }
      const pixels = sha256Hex(frame.frame.pixels);
      const key = cacheKey(student, options, frame, pixels);
      const file = join(cacheDir, `${key}.cells`);
      let cached: FrameCells | undefined;
      if (await exists(file)) {
        cached = decodeFrameCells(await readFile(file), head.shape, file);
      } else {
        const boxes = trainingBoxes(frame, d, options);
        const run = await runner.run(frame);
        cached = selectCells(
          head.shape,
          runner.grids,
          boxes,
          run,
          options,
          seededRandom(options.seed ^ parseInt(key.slice(0, 8), 16)),
        );
        await writeFileAtomic(file, encodeFrameCells(cached));
      }
      count(cached);
      files.push(file);
      trainedFrames.push(pixels);
      request.onProgress?.({ step: 'features', done: files.length });
    }
  } finally {
    await runner.close();
  }
  if (files.length === 0) throw new ArgusError('no training frames', 'harvest frames at the site first');
  if (positives === 0) {
    throw new ArgusError(
      `the teacher labelled none of ${d.name}'s classes (${d.labels.join(', ')}) at or above score ${options.labelScore} in ${files.length} frames`,
      'check the teacher, the site’s classes or labelScore',
    );
  }
  const featureMs = performance.now() - featureStart;

  const trainStart = performance.now();
  const { width, height } = d.input;
  async function* batches(_epoch: number, random: () => number): AsyncIterable<Batch> {
    const order = shuffled(files, random);
    for (let i = 0; i < order.length; i += options.batchFrames) {
      const frames: FrameCells[] = [];
      for (const file of order.slice(i, i + options.batchFrames)) {
        frames.push(decodeFrameCells(await readFile(file), head.shape, file));
      }
      yield concatFrames(frames, head.shape, width, height);
    }
  }
  const { params, losses } = await trainHead({
    shape: head.shape,
    initial: head.params,
    epochs: options.epochs,
    learningRate: options.learningRate,
    weights: lossWeights(options),
    seed: options.seed,
    batches,
    ...(signal ? { signal } : {}),
    onEpoch: (loss) => request.onProgress?.({ step: 'train', done: loss.epoch, total: options.epochs, loss }),
  });
  const trainMs = performance.now() - trainStart;

  const name = request.name ?? `${d.name}-adapted`;
  const bytes = writeHead(student.bytes, d, params);
  const step: AdaptLineageStep = {
    kind: 'adapt',
    at: new Date().toISOString(),
    teacher: request.teacher,
    frames: files.length,
    framesSha256: sha256Hex(trainedFrames.join('\n')),
    labels,
    positives,
    trained: options.trainBox ? 'classes+boxes' : 'classes',
    options,
    losses: losses.map(({ epoch, quality, box, distill, decay, total }) => ({
      epoch,
      quality,
      box,
      distill,
      decay,
      total,
    })),
  };
  const modelDir = join(request.workDir, 'model');
  if (signal?.aborted) throw signal.reason;
  await writeDerivedModel(modelDir, {
    bytes,
    descriptor: { ...d, name, file: 'model.onnx', sha256: sha256Hex(bytes) },
    lineage: await extendLineage(student, step),
  });
  return {
    modelDir,
    model: await loadModel(modelDir),
    losses,
    trainedFrames,
    labels,
    positives,
    cells,
    featureMs,
    trainMs,
  };
}
