import { join, resolve } from 'node:path';
import { ArgusError, errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { CONTRACT_BOUNDS } from '../contract/bounds.ts';
import type { CameraTelemetry, DetectorTelemetry } from '../contract/index.ts';
import type { ShadowFigures, ShadowThresholds } from '../contract/ota.ts';
import { CANDIDATE_SCORE_THRESHOLD, checkComparable } from '../inference/agreement.ts';
import { type ModelDescriptor, readDescriptor } from '../inference/descriptor.ts';
import { DetectorPool } from '../inference/detector-pool.ts';
import { DESCRIPTOR_FILE, resolveModelDir } from '../inference/model-dir.ts';
import type { DetectorSettings } from '../inference/settings.ts';
import { ThreadedDetector } from '../inference/threaded-detector.ts';
import { ensureModelInstalled, readModelDescriptor } from '../models/store.ts';
import type { HealthSample } from '../ota/updater/host.ts';
import type { CameraSettings } from '../pipelines/camera-settings.ts';
import { CameraRuntime, type DetectedFrame } from '../pipelines/runtime/camera.ts';
import { growHeapForVideo } from '../pipelines/runtime/heap.ts';
import { DetectionScheduler } from '../pipelines/runtime/scheduler.ts';
import { runShadow } from '../pipelines/runtime/shadow.ts';
import { SnapshotRenderer } from '../pipelines/runtime/snapshots.ts';
import { SampleWindow } from '../pipelines/runtime/stats.ts';
import { checkSceneLabels, loadScene } from '../pipelines/scene/load.ts';
import type { HostEvent, HostStatus, Jpeg, UpdatableHost } from './camera-host.ts';

/**
 * how long a frame may wait, with a session free, for frames of other cameras to join its call:
 * cameras run on their own clocks, so a longer wait mostly adds latency (bench:pipeline, int8:
 * 6 cameras at 0 % late with 5 ms, 4 with 20 ms); while every session is busy, frames join the
 * next call anyway
 */
const BATCH_WAIT_MS = 5;
/** share of one core shadow validation takes when `detector.shadowCpuShare` is not set */
const DEFAULT_SHADOW_CPU_SHARE = 0.25;
/** the lowest scheduling priority: the shadow's threads run when the cameras' detector does not */
const SHADOW_NICE = 19;

interface RunningCamera {
  runtime: CameraRuntime;
  /** the scene it runs: version 0 for the config's file, else the scene bundle's version */
  scene: { name: string; version: number };
}

/**
 * The box's live cameras: one GStreamer pipeline and scene per camera, all sharing one detector
 * session (on its own thread) through the detection scheduler.
 *
 * For OTA updates (UpdatableHost) a candidate model runs in shadow on the cameras' own frames, a
 * new model replaces the shared detector between two inference calls, and a new scene replaces a
 * camera's rules without touching its video. A scene never needs a camera's video restarted; a
 * model does only when it takes frames of another size or colour order than the running one,
 * which swapModel refuses (the agent then has to start with it).
 */
export class PipelineCameraHost implements UpdatableHost {
  private detector: DetectorPool | undefined;
  private scheduler: DetectionScheduler | undefined;
  private readonly cameras = new Map<string, RunningCamera>();
  private readonly eventListeners: ((e: HostEvent) => void)[] = [];
  private readonly statusListeners: ((s: HostStatus) => void)[] = [];
  private readonly detectedListeners: ((d: DetectedFrame) => void)[] = [];
  /** the model the cameras detect with: the configured reference, then what swapModel loaded */
  private model: string;
  /** restarts of the detectors swapped out */
  private restartsBefore = 0;
  /** event messages produced since the host started */
  private eventMessages = 0;
  /** swapModel and applyScene run one at a time */
  private updating: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly settings: DetectorSettings,
    private readonly log: Logger,
  ) {
    this.model = settings.model;
  }

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
    this.model = this.settings.model;
    const scheduler = new DetectionScheduler(
      detector,
      { maxBatch: this.settings.maxBatch, maxWaitMs: BATCH_WAIT_MS },
      this.log,
    );
    this.scheduler = scheduler;
    const snapshots = new SnapshotRenderer();
    enabled.forEach((camera, i) => {
      const runtime = new CameraRuntime({
        camera,
        scene: scenes[i]!,
        scheduler,
        mode: 'live',
        log: this.log,
        snapshots,
        onEvent: (e) => {
          this.eventMessages++;
          for (const l of this.eventListeners) l(e);
        },
        onStatus: (s) => {
          for (const l of this.statusListeners) l(s);
        },
        onDetected: (d) => {
          for (const l of this.detectedListeners) l(d);
        },
      });
      this.cameras.set(camera.id, { runtime, scene: { name: scenes[i]!.name, version: 0 } });
      runtime.start();
    });
  }

  async stop(): Promise<void> {
    const running = [...this.cameras.values()];
    this.cameras.clear();
    await Promise.all(running.map((c) => c.runtime.stop()));
    this.scheduler?.close();
    this.scheduler = undefined;
    await this.detector
      ?.close()
      .catch((err) => this.log.warn({ err: errorMessage(err) }, 'detector close failed'));
    this.detector = undefined;
  }

  private camera(id: string): RunningCamera {
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
    this.camera(id).runtime.restart();
  }

  snapshotNow(id: string): Promise<Jpeg> {
    return this.camera(id).runtime.snapshotNow();
  }

  stats(): CameraTelemetry[] {
    const d = this.detector?.descriptor;
    const model = d ? { model: { name: d.name, version: d.version } } : {};
    return [...this.cameras.values()].map((c) => ({
      ...c.runtime.stats(),
      ...model,
      scene: { name: c.scene.name.slice(0, CONTRACT_BOUNDS.name), version: c.scene.version },
    }));
  }

  detectorStats(): DetectorTelemetry | undefined {
    const d = this.detector;
    return d ? { sessions: d.concurrency, restarts: this.restartsBefore + d.restarts } : undefined;
  }

  private running(what: string): { scheduler: DetectionScheduler; detector: DetectorPool } {
    const { scheduler, detector } = this;
    if (!scheduler || !detector)
      throw new ArgusError(`cannot ${what}: the cameras are not running`, 'start the agent with its cameras');
    return { scheduler, detector };
  }

  /** runs `step` after the update steps before it */
  private serial<T>(step: () => Promise<T>): Promise<T> {
    const next = this.updating.then(step);
    this.updating = next.catch(() => undefined);
    return next;
  }

  private async candidateDescriptor(modelDir: string): Promise<ModelDescriptor> {
    return readDescriptor(join(resolveModelDir(modelDir), DESCRIPTOR_FILE));
  }

  /** refuses a model the cameras' scenes cannot run with (they name classes it lacks) */
  private checkScenesFit(labels: readonly string[]): void {
    for (const [id, c] of this.cameras) checkSceneLabels(c.runtime.currentScene, labels, `camera ${id}`);
  }

  async shadowModel(
    candidateModelDir: string,
    thresholds: ShadowThresholds,
    signal: AbortSignal,
  ): Promise<ShadowFigures> {
    const { detector } = this.running('validate a model in shadow');
    const candidate = await this.candidateDescriptor(candidateModelDir);
    checkComparable(
      detector.descriptor,
      candidate,
      'a candidate must take the frames the cameras deliver and know only classes the current model knows',
    );
    this.checkScenesFit(candidate.labels);
    // one single-threaded session per model at the lowest priority, set up alike so that their
    // latencies compare; the candidate's detections go down to a low score to be ranked
    const base: DetectorSettings = {
      ...this.settings,
      sessions: 1,
      intraOpThreads: 1,
      maxBatch: 1,
      threadNice: SHADOW_NICE,
    };
    const log = this.log.child({ shadow: candidate.name });
    const reference = await ThreadedDetector.load({ ...base, model: this.model }, log);
    try {
      const challenger = await ThreadedDetector.load(
        { ...base, model: candidateModelDir, scoreThreshold: CANDIDATE_SCORE_THRESHOLD },
        log,
      );
      try {
        const figures = await runShadow(
          () => [...this.cameras.values()].map((c) => () => c.runtime.latestFrame()),
          reference,
          challenger,
          {
            frames: thresholds.frames,
            timeoutMs: thresholds.timeoutS * 1000,
            cpuShare: this.settings.shadowCpuShare ?? DEFAULT_SHADOW_CPU_SHARE,
            signal,
          },
        );
        log.info({ ...figures }, 'shadow validation done');
        return figures;
      } finally {
        await challenger.close();
      }
    } finally {
      await reference.close();
    }
  }

  swapModel(modelDir: string): Promise<void> {
    return this.serial(async () => {
      const { scheduler, detector: previous } = this.running('swap the model');
      const next = await this.candidateDescriptor(modelDir);
      const input = scheduler.input;
      if (
        next.input.width !== input.width ||
        next.input.height !== input.height ||
        next.input.colorOrder !== input.format
      ) {
        throw new ArgusError(
          `${next.name} takes ${next.input.width}×${next.input.height} ${next.input.colorOrder} frames, the cameras deliver ${input.width}×${input.height} ${input.format}`,
          'a model with another input size or colour order needs the cameras restarted: restart the agent with it',
        );
      }
      this.checkScenesFit(next.labels);
      const pool = await DetectorPool.load({ ...this.settings, model: modelDir }, this.log);
      if (this.scheduler !== scheduler) {
        await pool.close();
        throw new ArgusError('the cameras stopped while the new model loaded; it was not swapped in');
      }
      try {
        await scheduler.switchTo(pool);
      } catch (err) {
        await pool.close();
        throw err;
      }
      this.detector = pool;
      this.model = modelDir;
      await previous
        .close()
        .catch((err) => this.log.warn({ err: errorMessage(err) }, 'closing the previous detector failed'));
      this.restartsBefore += previous.restarts;
      this.log.info(
        { model: next.name, version: next.version, previous: previous.descriptor.version },
        'model swapped',
      );
    });
  }

  applyScene(cameras: readonly string[], sceneFile: string, version: number): Promise<void> {
    return this.serial(async () => {
      const { detector } = this.running('apply a scene');
      const targets = cameras.length > 0 ? cameras.map((id) => this.camera(id)) : [...this.cameras.values()];
      const scene = await loadScene(sceneFile, detector.descriptor.labels);
      await Promise.all(targets.map((c) => c.runtime.applyScene(scene)));
      for (const c of targets) c.scene = { name: scene.name, version };
      this.log.info(
        { scene: scene.name, version, cameras: targets.map((c) => c.runtime.id) },
        'scene applied',
      );
    });
  }

  /** frames a camera received and ran through the detector since it started */
  frameCounts(id: string): { received: number; detected: number } {
    const { runtime } = this.camera(id);
    return { received: runtime.frames, detected: runtime.detectedFrames };
  }

  healthSample(): HealthSample {
    const all = [...this.cameras.values()].map((c) => c.runtime);
    const latencies = new SampleWindow(Number.POSITIVE_INFINITY);
    for (const r of all) for (const v of r.detectLatencies()) latencies.add(v);
    return {
      detectFps: all.reduce((n, r) => n + r.stats().fpsDetect, 0),
      detectLatencyMs: latencies.percentile(50),
      detectorRestarts: this.restartsBefore + (this.detector?.restarts ?? 0),
      events: this.eventMessages,
    };
  }

  onEvent(listener: (e: HostEvent) => void): void {
    this.eventListeners.push(listener);
  }

  onStatus(listener: (s: HostStatus) => void): void {
    this.statusListeners.push(listener);
  }

  onDetected(listener: (d: DetectedFrame) => void): void {
    this.detectedListeners.push(listener);
  }
}
