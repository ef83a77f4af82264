import type { Logger } from '../../common/logger.ts';
import { type CameraEvent, CameraRuntime, type CameraStatusChange } from '../../pipelines/runtime/camera.ts';
import type { DetectionScheduler } from '../../pipelines/runtime/scheduler.ts';
import type { Scene } from '../../pipelines/scene/schema.ts';

export interface LiveCameraOptions {
  id: string;
  url: string;
  /** the scene and the file it was loaded from */
  scene: Scene;
  scenePath: string;
  scheduler: DetectionScheduler;
  log: Logger;
  detectFps?: number;
  stallTimeoutS?: number;
  loop?: boolean;
  reconnect?: { startMs: number; maxMs: number };
}

/** a live camera that records its status changes and its events */
export interface RecordedCamera {
  runtime: CameraRuntime;
  statuses: CameraStatusChange[];
  events: CameraEvent[];
  /** the first change to `state` from now on, and when it came (performance clock); rejects after `timeoutMs` */
  waitFor(
    state: 'online' | 'offline',
    timeoutMs: number,
  ): Promise<{ change: CameraStatusChange; at: number }>;
}

export function liveCamera(o: LiveCameraOptions): RecordedCamera {
  const statuses: CameraStatusChange[] = [];
  const events: CameraEvent[] = [];
  const listeners = new Set<(s: CameraStatusChange) => void>();
  const runtime = new CameraRuntime({
    camera: {
      id: o.id,
      url: o.url,
      scene: o.scenePath,
      detectFps: o.detectFps ?? 5,
      loop: o.loop ?? false,
      stallTimeoutS: o.stallTimeoutS ?? 3,
      rtspTransport: 'tcp',
      decoder: 'auto',
      enabled: true,
    },
    scene: o.scene,
    scheduler: o.scheduler,
    mode: 'live',
    log: o.log,
    ...(o.reconnect ? { reconnect: o.reconnect } : {}),
    onEvent: (e) => {
      events.push(e);
    },
    onStatus: (s) => {
      statuses.push(s);
      for (const l of [...listeners]) l(s);
    },
  });
  const waitFor = (state: 'online' | 'offline', timeoutMs: number) =>
    new Promise<{ change: CameraStatusChange; at: number }>((resolve, reject) => {
      const timer = setTimeout(() => {
        listeners.delete(listener);
        reject(
          new Error(`camera not ${state} within ${timeoutMs} ms; statuses: ${JSON.stringify(statuses)}`),
        );
      }, timeoutMs);
      const listener = (s: CameraStatusChange) => {
        if (s.state !== state) return;
        clearTimeout(timer);
        listeners.delete(listener);
        resolve({ change: s, at: performance.now() });
      };
      listeners.add(listener);
    });
  return { runtime, statuses, events, waitFor };
}
