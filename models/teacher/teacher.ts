import { ArgusError } from '../../common/errors.ts';
import { createLogger, type Logger } from '../../common/logger.ts';
import type { ModelDescriptor } from '../../inference/descriptor.ts';
import { type Detection, Detector } from '../../inference/detector.ts';
import { type LoadedModel, loadModel } from '../../inference/model-dir.ts';
import type { Box, Rect } from '../../inference/rect.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import { ensureModelInstalled } from '../store.ts';
import type { TeacherConfig, TeacherMember } from './config.ts';
import { type RgbImage, type View, viewFrame } from './image.ts';
import { type FusionRun, weightedBoxFusion } from './wbf.ts';

/**
 * The control plane's teacher (the "large model" of the data–model loop): labels full-resolution
 * frames with detections in source pixels, as the `Detection` type the boxes' detectors emit, for
 * the classes of its config. Each member is a detector loaded from its model descriptor and run on
 * views of the frame; all views of all members are fused by weighted box fusion.
 */

/** what a teacher is to the loop: labels for a frame, in the frame's pixels */
export interface FrameLabeller {
  /** the classes it labels, in `classId` order */
  readonly labels: readonly string[];
  label(image: RgbImage): Promise<Detection[]>;
  close(): Promise<void>;
}

interface LoadedMember {
  config: TeacherMember;
  detector: Detector;
  /** the input the whole frame is stretched to */
  whole: { width: number; height: number };
  /** the model's own input, which tiles are stretched to */
  own: { width: number; height: number };
}

/** the descriptor with the input size raised or lowered, for a fully convolutional model */
function atInputSize(model: LoadedModel, member: TeacherMember): LoadedModel {
  const d = model.descriptor;
  const size = member.input;
  if (!size || (size.width === d.input.width && size.height === d.input.height)) return model;
  const step = d.input.sizeStep;
  if (step === undefined || size.width % step !== 0 || size.height % step !== 0) {
    throw new ArgusError(
      `teacher member ${member.model}: input ${size.width}×${size.height} is not possible for model ${d.name}, which takes ${d.input.width}×${d.input.height} only${step ? ` or multiples of ${step}` : ''}`,
      step ? `choose a width and height that are multiples of ${step}` : 'leave out `input` for this model',
    );
  }
  const input: ModelDescriptor['input'] = { ...d.input, width: size.width, height: size.height };
  return { ...model, descriptor: { ...d, input } };
}

/** the tiles of a grid over the image, each overlapping its neighbours by `overlap` of its size */
export function tileRegions(
  width: number,
  height: number,
  rows: number,
  cols: number,
  overlap: number,
): Rect[] {
  const span = (total: number, n: number) => Math.min(total, Math.ceil(total / (n - (n - 1) * overlap)));
  const tw = span(width, cols);
  const th = span(height, rows);
  const at = (i: number, n: number, size: number, total: number) =>
    n === 1 ? 0 : Math.round((i * (total - size)) / (n - 1));
  const out: Rect[] = [];
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++)
      out.push({ x: at(c, cols, tw, width), y: at(r, rows, th, height), width: tw, height: th });
  return out;
}

/** the view's boxes (in its region's pixels, mirrored when it is) in image pixels */
function toImage(view: View, box: Box): Box {
  const { x, y, width } = view.region;
  const [x1, y1, x2, y2] = box;
  return view.flip ? [x + width - x2, y + y1, x + width - x1, y + y2] : [x + x1, y + y1, x + x2, y + y2];
}

export class Teacher implements FrameLabeller {
  private constructor(
    readonly config: TeacherConfig,
    private readonly members: LoadedMember[],
  ) {}

  get labels(): readonly string[] {
    return this.config.labels;
  }

  /** the providers the members' sessions run on, by model */
  get providers(): { model: string; provider: string }[] {
    return this.members.map((m) => ({ model: m.config.model, provider: m.detector.provider }));
  }

  static async load(config: TeacherConfig, log: Logger = createLogger('teacher')): Promise<Teacher> {
    const members: LoadedMember[] = [];
    try {
      for (const member of config.members) {
        await ensureModelInstalled(member.model);
        const model = await loadModel(member.model);
        const unknown = config.labels.filter((l) => !model.descriptor.labels.includes(l));
        if (unknown.length === config.labels.length) {
          throw new ArgusError(
            `teacher member ${member.model} knows none of the classes to label (${config.labels.join(', ')})`,
            `its classes: ${model.descriptor.labels.slice(0, 20).join(', ')}`,
          );
        }
        const sized = atInputSize(model, member);
        const detector = await Detector.fromModel(
          sized,
          {
            ...DEFAULT_DETECTOR_SETTINGS,
            model: member.model,
            executionProviders: config.executionProviders,
            intraOpThreads: config.intraOpThreads,
            maxBatch: 1,
            scoreThreshold: member.scoreThreshold,
          },
          log,
        );
        const d = model.descriptor.input;
        members.push({
          config: member,
          detector,
          whole: { width: sized.descriptor.input.width, height: sized.descriptor.input.height },
          own: { width: d.width, height: d.height },
        });
      }
    } catch (err) {
      await Promise.all(members.map((m) => m.detector.close()));
      throw err;
    }
    return new Teacher(config, members);
  }

  /** the views a member runs on an image */
  private views(member: LoadedMember, image: RgbImage): View[] {
    const whole: View = {
      region: { x: 0, y: 0, width: image.width, height: image.height },
      flip: false,
      ...member.whole,
    };
    const { tiles } = member.config;
    const base = tiles
      ? tileRegions(image.width, image.height, tiles.rows, tiles.cols, tiles.overlap).map((region) => ({
          region,
          flip: false,
          ...member.own,
        }))
      : [whole];
    return member.config.flip ? base.flatMap((v) => [v, { ...v, flip: true }]) : base;
  }

  async label(image: RgbImage): Promise<Detection[]> {
    const wanted = new Set(this.config.labels);
    const runs: FusionRun[] = [];
    for (const member of this.members) {
      const colorOrder = member.detector.descriptor.input.colorOrder;
      const views = this.views(member, image);
      // a member's weight is shared by the views that look at the same place (a view and its mirror)
      const weight = member.config.weight / (member.config.flip ? 2 : 1);
      for (const view of views) {
        const frame = await viewFrame(image, view, colorOrder);
        const [found] = (await member.detector.detect([frame])) as [Detection[]];
        const { x, y, width, height } = view.region;
        runs.push({
          weight,
          region: [x, y, x + width, y + height],
          boxes: found
            .filter((d) => wanted.has(d.label))
            .map((d) => ({ label: d.label, score: d.score, box: toImage(view, d.box) })),
        });
      }
    }
    const fused = weightedBoxFusion(runs, { iouThreshold: this.config.fusion.iou, skipBelow: 0 });
    return fused
      .filter((f) => f.score >= this.config.scoreThreshold)
      .map((f) => ({
        label: f.label,
        classId: this.config.labels.indexOf(f.label),
        score: f.score,
        box: f.box,
      }));
  }

  async close(): Promise<void> {
    await Promise.all(this.members.map((m) => m.detector.close()));
  }
}
