import type { Logger } from '../../common/logger.ts';
import type { FrameDetector } from '../../inference/detector.ts';
import type { SceneStep } from '../scene/engine.ts';
import type { Scene } from '../scene/schema.ts';
import { type CameraEvent, CameraRuntime } from './camera.ts';
import { DetectionScheduler } from './scheduler.ts';
import { SnapshotRenderer } from './snapshots.ts';

/**
 * what detects the replay's frames: a detector (the replay schedules its calls, `maxBatch` frames
 * each at most) or a scheduler the caller made and closes (e.g. one it counts frames through)
 */
export type ReplayDetection =
  | {
      detector: FrameDetector;
      /** frames per inference call at most */
      maxBatch: number;
      scheduler?: never;
    }
  | { scheduler: DetectionScheduler; detector?: never; maxBatch?: never };

export type ReplayOptions = ReplayDetection & {
  /** the recording: a video file (or any URL GStreamer plays to its end) */
  video: string;
  scene: Scene;
  /** the file the scene was loaded from (named in logs) */
  scenePath: string;
  /** frames per second of the recording to detect */
  detectFps: number;
  log: Logger;
  onEvent: (e: CameraEvent) => void | Promise<void>;
  onStep?: (t: number, step: SceneStep, counters: Record<string, number>) => void;
  /** stops the replay (open events end with reason "stopped") */
  signal?: AbortSignal;
  /** replay only this many seconds of the recording */
  maxSeconds?: number;
  /**
   * the camera's id (default `replay`), which also sets the moment within its period at which the
   * motion gate looks at the whole frame
   */
  cameraId?: string;
  /** the recording counts as stalled (the replay ends) after this long without a frame; default 5 */
  stallTimeoutS?: number;
};

export interface ReplaySummary {
  frames: number;
  /** wall-clock seconds the replay took */
  seconds: number;
  /** seconds of the recording replayed */
  recordedSeconds: number;
  /** stopped by `signal` before the recording (or `maxSeconds` of it) ended */
  stopped: boolean;
  motionSkippedShare: number;
  motionSearchedShare: number;
}

/**
 * A recording through the pipeline as fast as the detector goes (`argus replay`, the console's
 * scene preview): every sampled frame is detected in order, scene time is the stream time from
 * 1970-01-01T00:00:00Z. Ends at the end of the recording, after `maxSeconds` of it, or when
 * `signal` aborts, once the snapshots of its events are rendered.
 */
export async function replayRecording(o: ReplayOptions): Promise<ReplaySummary> {
  const scheduler =
    o.scheduler ?? new DetectionScheduler(o.detector, { maxBatch: o.maxBatch, maxWaitMs: 5 }, o.log);
  const snapshots = new SnapshotRenderer();
  const started = performance.now();
  let recordedSeconds = 0;
  let ended = false;
  const camera = new CameraRuntime({
    camera: {
      id: o.cameraId ?? 'replay',
      url: o.video,
      scene: o.scenePath,
      detectFps: o.detectFps,
      loop: false,
      stallTimeoutS: o.stallTimeoutS ?? 5,
      rtspTransport: 'tcp',
      decoder: 'auto',
      enabled: true,
    },
    scene: o.scene,
    scheduler,
    mode: 'replay',
    replayStart: new Date(0),
    log: o.log,
    snapshots,
    onEvent: o.onEvent,
    onStep: (t, step, counters) => {
      recordedSeconds = t;
      o.onStep?.(t, step, counters);
      if (o.maxSeconds !== undefined && t >= o.maxSeconds && !ended) {
        ended = true;
        void camera.stop();
      }
    },
  });
  const stop = () => void camera.stop();
  o.signal?.addEventListener('abort', stop, { once: true });
  camera.start();
  try {
    await camera.done;
    await snapshots.idle();
  } finally {
    o.signal?.removeEventListener('abort', stop);
    if (!o.scheduler) scheduler.close();
  }
  const stats = camera.stats();
  return {
    frames: camera.frames,
    seconds: (performance.now() - started) / 1000,
    recordedSeconds,
    stopped: o.signal?.aborted ?? false,
    motionSkippedShare: stats.motionSkippedShare,
    motionSearchedShare: stats.motionSearchedShare ?? 1,
  };
}
