import type { ModelDescriptor } from '../../models/descriptor.ts';
import type { Detection } from './detector.ts';

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

export interface DetectRequest {
  id: number;
  /** the frames' model-input pixels back to back (transferred) */
  pixels: ArrayBuffer;
  /** each frame's source [width, height] */
  sizes: [number, number][];
}

export type DetectReply = { id: number; detections: Detection[][] } | { id: number; error: string };
