import { createLogger } from '../../common/logger.ts';
import { SAMPLE_VIDEO } from '../../common/paths.ts';
import { FrameSource, type VideoFrame } from '../../pipelines/video/frame-source.ts';
import type { BranchCaps } from '../../pipelines/video/pipeline-description.ts';

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
