import type { ModelDescriptor } from '../../models/descriptor.ts';
import type { Detection } from './detector.ts';
import type { InputSize } from './model-frame.ts';

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

/** where a frame's pixels sit in a request: its input size and its source size */
export interface PackedFrame {
  size: InputSize;
  sourceWidth: number;
  sourceHeight: number;
}

export interface DetectRequest {
  id: number;
  /** the frames' model-input pixels back to back (transferred) */
  pixels: ArrayBuffer;
  frames: PackedFrame[];
}

export type DetectReply = { id: number; detections: Detection[][] } | { id: number; error: string };
