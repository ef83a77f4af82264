import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { createLogger, type Logger } from '../../common/logger.ts';
import type { HostEvent, HostStatus } from '../../device/camera-host.ts';
import { PipelineCameraHost } from '../../device/pipeline-host.ts';
import { DEFAULT_DETECTOR_SETTINGS } from '../../inference/settings.ts';
import type { CameraSettings } from '../../pipelines/camera-settings.ts';
import { type CameraEvent, CameraRuntime, type CameraStatusChange } from '../../pipelines/runtime/camera.ts';
import type { DetectionScheduler } from '../../pipelines/runtime/scheduler.ts';
import type { Scene } from '../../pipelines/scene/schema.ts';
import { RtspServer } from '../../video/rtsp-test-server.ts';
import { eventually } from './eventually.ts';
import { ensureCatalogModels } from './models.ts';

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

const CAMPUS = resolve(import.meta.dirname, '../../scenes/vtest-campus.yaml');
/** where the campus scene's counting line stands across the frame (0..1) in a live host's `campus.yaml` */
export const CAMPUS_LINE_X = 0.25;

/** the campus scene, every frame detected (no motion gate), its counting line at `x`, without the left-road rule when `dropZone` */
export async function writeCampusScene(file: string, x: number, dropZone: boolean): Promise<void> {
  const scene = parse(await readFile(CAMPUS, 'utf8'));
  scene.motion = { enabled: false };
  scene.rules = scene.rules
    .filter((r: { id: string }) => !(dropZone && r.id === 'left-road'))
    .map((r: { id: string }) =>
      r.id === 'road-crossing'
        ? {
            ...r,
            line: [
              [x, 0.28],
              [x, 0.56],
            ],
          }
        : r,
    );
  await writeFile(file, stringify(scene));
}

/** a pipeline host with NanoDet on live RTSP cameras, and what it reported */
export interface LiveCameraHost {
  /** the host's config directory, holding `campus.yaml` */
  dir: string;
  server: RtspServer;
  host: PipelineCameraHost;
  events: HostEvent[];
  statuses: HostStatus[];
  /** stops the host and the server and removes the directory */
  close(): Promise<void>;
}

/**
 * A PipelineCameraHost running the catalog's NanoDet (one session, one thread) on live RTSP
 * cameras (scripts/rtsp-server.py looping vtest.avi, one path per camera), each with the campus
 * scene of `writeCampusScene` at CAMPUS_LINE_X; resolves once every camera has detected frames.
 */
export async function startLiveCameraHost(o: {
  cameras: string[];
  shadowCpuShare: number;
}): Promise<LiveCameraHost> {
  await ensureCatalogModels();
  const dir = await mkdtemp(join(tmpdir(), 'argus-live-host-'));
  let server: RtspServer | undefined;
  let host: PipelineCameraHost | undefined;
  const close = async () => {
    await host?.stop();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await writeCampusScene(join(dir, 'campus.yaml'), CAMPUS_LINE_X, false);
    const rtsp = await RtspServer.create({ paths: o.cameras });
    server = rtsp;
    const events: HostEvent[] = [];
    const statuses: HostStatus[] = [];
    const running = new PipelineCameraHost(
      {
        ...DEFAULT_DETECTOR_SETTINGS,
        model: 'nanodet',
        sessions: 1,
        intraOpThreads: 1,
        shadowCpuShare: o.shadowCpuShare,
      },
      createLogger('live-camera-host'),
    );
    host = running;
    running.onEvent((e) => events.push(e));
    running.onStatus((s) => statuses.push(s));
    const camera = (id: string): CameraSettings => ({
      id,
      url: rtsp.url(id),
      scene: 'campus.yaml',
      detectFps: 5,
      loop: false,
      stallTimeoutS: 5,
      rtspTransport: 'tcp',
      decoder: 'software',
      enabled: true,
    });
    await running.start(o.cameras.map(camera), dir);
    for (const id of o.cameras)
      await eventually(
        async () => (running.frameCounts(id).detected > 5 ? true : undefined),
        60_000,
        `frames of ${id} detected`,
      );
    return { dir, server: rtsp, host: running, events, statuses, close };
  } catch (err) {
    await close();
    throw err;
  }
}
