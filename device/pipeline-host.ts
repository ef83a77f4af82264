import { resolve } from 'node:path';
import { ArgusError, errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { CameraTelemetry, DetectorTelemetry } from '../contract/index.ts';
import { DetectorPool } from '../inference/detector-pool.ts';
import type { DetectorSettings } from '../inference/settings.ts';
import { ensureModelInstalled, readModelDescriptor } from '../models/store.ts';
import type { CameraSettings } from '../pipelines/camera-settings.ts';
import { CameraRuntime } from '../pipelines/runtime/camera.ts';
import { growHeapForVideo } from '../pipelines/runtime/heap.ts';
import { DetectionScheduler } from '../pipelines/runtime/scheduler.ts';
import { loadScene } from '../pipelines/scene/load.ts';
import type { CameraHost, HostEvent, HostStatus, Jpeg } from './camera-host.ts';

/**
 * how long a frame may wait, with a session free, for frames of other cameras to join its call:
 * cameras run on their own clocks, so a longer wait mostly adds latency (bench:pipeline, int8:
 * 6 cameras at 0 % late with 5 ms, 4 with 20 ms); while every session is busy, frames join the
 * next call anyway
 */
const BATCH_WAIT_MS = 5;

/**
 * The box's live cameras: one GStreamer pipeline and scene per camera, all sharing one detector
 * session (on its own thread) through the detection scheduler.
 */
export class PipelineCameraHost implements CameraHost {
  private detector: DetectorPool | undefined;
  private scheduler: DetectionScheduler | undefined;
  private readonly cameras = new Map<string, CameraRuntime>();
  private readonly eventListeners: ((e: HostEvent) => void)[] = [];
  private readonly statusListeners: ((s: HostStatus) => void)[] = [];

  constructor(
    private readonly settings: DetectorSettings,
    private readonly log: Logger,
  ) {}

  async start(cameras: readonly CameraSettings[], configDir: string): Promise<void> {
    const enabled = cameras.filter((c) => c.enabled);
    growHeapForVideo();
    await ensureModelInstalled(this.settings.model);
    // every scene is checked before the detector loads and any camera starts: a bad scene file
    // starts nothing, and says so at once
    const { labels } = await readModelDescriptor(this.settings.model);
    const scenes = await Promise.all(enabled.map((c) => loadScene(resolve(configDir, c.scene), labels)));
    const detector = await DetectorPool.load(this.settings, this.log);
    this.detector = detector;
    const scheduler = new DetectionScheduler(
      detector,
      { maxBatch: this.settings.maxBatch, maxWaitMs: BATCH_WAIT_MS },
      this.log,
    );
    this.scheduler = scheduler;
    enabled.forEach((camera, i) => {
      const runtime = new CameraRuntime({
        camera,
        scene: scenes[i]!,
        scheduler,
        mode: 'live',
        log: this.log,
        onEvent: (e) => {
          for (const l of this.eventListeners) l(e);
        },
        onStatus: (s) => {
          for (const l of this.statusListeners) l(s);
        },
      });
      this.cameras.set(camera.id, runtime);
      runtime.start();
    });
  }

  async stop(): Promise<void> {
    const running = [...this.cameras.values()];
    this.cameras.clear();
    await Promise.all(running.map((c) => c.stop()));
    this.scheduler?.close();
    this.scheduler = undefined;
    await this.detector
      ?.close()
      .catch((err) => this.log.warn({ err: errorMessage(err) }, 'detector close failed'));
    this.detector = undefined;
  }

  private camera(id: string): CameraRuntime {
    const camera = this.cameras.get(id);
    if (!camera) {
      throw new ArgusError(
        `no running camera "${id}"`,
        `cameras on this box: ${[...this.cameras.keys()].join(', ') || 'none'}`,
      );
    }
    return camera;
  }

  async restartCamera(id: string): Promise<void> {
    this.camera(id).restart();
  }

  snapshotNow(id: string): Promise<Jpeg> {
    return this.camera(id).snapshotNow();
  }

  stats(): CameraTelemetry[] {
    return [...this.cameras.values()].map((c) => c.stats());
  }

  detectorStats(): DetectorTelemetry | undefined {
    const d = this.detector;
    return d ? { sessions: d.concurrency, restarts: d.restarts } : undefined;
  }

  onEvent(listener: (e: HostEvent) => void): void {
    this.eventListeners.push(listener);
  }

  onStatus(listener: (s: HostStatus) => void): void {
    this.statusListeners.push(listener);
  }
}
