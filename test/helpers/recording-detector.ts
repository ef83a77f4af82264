import type { FrameDetector } from '../../inference/detector.ts';
import type { ModelFrame } from '../../inference/model-frame.ts';

/** the inference calls a detector was asked for, in order: the inputs of each, their pixels and how long it took */
export interface CallLog {
  inputs: number[];
  /** width × height summed over the call's inputs */
  pixels: number[];
  ms: number[];
}

/** `inner`, recording every detect call in `calls` */
export function recordingDetector(inner: FrameDetector): { detector: FrameDetector; calls: CallLog } {
  const calls: CallLog = { inputs: [], pixels: [], ms: [] };
  const detector: FrameDetector = Object.create(inner, {
    detect: {
      value: async (frames: ModelFrame[]) => {
        calls.inputs.push(frames.length);
        calls.pixels.push(frames.reduce((n, f) => n + f.pixels.length / 3, 0));
        const at = performance.now();
        const result = await inner.detect(frames);
        calls.ms.push(performance.now() - at);
        return result;
      },
    },
  });
  return { detector, calls };
}
