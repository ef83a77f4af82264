import type { FrameDetector, ModelFrame } from '../../pipelines/detector/detector.ts';

/** the inference calls a detector was asked for, in order: the inputs of each and how long it took */
export interface CallLog {
  inputs: number[];
  ms: number[];
}

/** `inner`, recording every detect call in `calls` */
export function recordingDetector(inner: FrameDetector): { detector: FrameDetector; calls: CallLog } {
  const calls: CallLog = { inputs: [], ms: [] };
  const detector: FrameDetector = Object.create(inner, {
    detect: {
      value: async (frames: ModelFrame[]) => {
        calls.inputs.push(frames.length);
        const at = performance.now();
        const result = await inner.detect(frames);
        calls.ms.push(performance.now() - at);
        return result;
      },
    },
  });
  return { detector, calls };
}
