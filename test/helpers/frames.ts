import { createLogger } from '../../common/logger.ts';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import type { FrameDetector } from '../../inference/detector.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';
import { FrameSource, toModelFrame, type VideoFrame } from '../../video/frame-source.ts';
import type { BranchCaps } from '../../video/pipeline-description.ts';

/** decodes a recording through the real GStreamer pipeline and keeps the requested frames */
export async function readFrames(
  indices: readonly number[],
  model: BranchCaps,
  path: string = SAMPLE_VIDEO,
): Promise<Map<number, VideoFrame>> {
  const source = new FrameSource({ source: { kind: 'file', path }, model }, createLogger('test-frames'));
  const wanted = new Set(indices);
  const last = Math.max(...indices);
  const out = new Map<number, VideoFrame>();
  source.start();
  try {
    for (;;) {
      const f = await source.next();
      if (!f) break;
      if (wanted.has(f.index)) out.set(f.index, f);
      if (f.index >= last) break;
    }
  } finally {
    source.stop();
  }
  return out;
}

export const GROUND_TRUTH_FRAMES = [0, 300, 600] as const;

/** the frames `indices` of a recording as the detector takes them, in the model's size and colour order */
export async function readModelFrames(
  indices: readonly number[],
  detector: Pick<FrameDetector, 'inputWidth' | 'inputHeight' | 'descriptor'>,
  path: string = SAMPLE_VIDEO,
): Promise<ModelFrame[]> {
  const caps = {
    width: detector.inputWidth,
    height: detector.inputHeight,
    format: detector.descriptor.input.colorOrder,
  };
  const frames = await readFrames(indices, caps, path);
  return indices.map((i) => toModelFrame(frames.get(i)!));
}
