import type { ModelDescriptor } from './descriptor.ts';
import type { Detection } from './detector.ts';
import type { ModelFrame } from './model-frame.ts';

/** messages between ThreadedDetector and its worker (detector-thread.ts) */

/** the detector a thread loaded */
export interface ThreadInfo {
  descriptor: ModelDescriptor;
  provider: string;
  maxBatch: number;
  /** the thread's scheduling priority (nice) */
  nice: number;
}

/** the thread's first message */
export type ThreadReady = ({ ready: true } & ThreadInfo) | { ready: false; error: string };

/** a frame in a request, its pixels in the request's buffer: its input size and its source size */
export type PackedFrame = Required<Pick<ModelFrame, 'size'>> &
  Pick<ModelFrame, 'sourceWidth' | 'sourceHeight'>;

export interface DetectRequest {
  id: number;
  /** the frames' model-input pixels back to back (transferred) */
  pixels: ArrayBuffer;
  frames: PackedFrame[];
}

/** a request's answer; `pixels` is the request's buffer, given back (transferred) for the next request */
export type DetectReply = ({ id: number; detections: Detection[][] } | { id: number; error: string }) & {
  pixels: ArrayBuffer;
};
