import type { ShadowFigures, ShadowThresholds } from '../contract/ota.ts';
import type { CameraTelemetry, DetectorTelemetry, EventMessage } from '../contract/payloads.ts';
import type { UpdateHost } from '../ota/updater/host.ts';
import type { CameraSettings } from '../pipelines/camera-settings.ts';

/** a JPEG image with its pixel size */
export interface Jpeg {
  jpeg: Buffer;
  width: number;
  height: number;
}

/**
 * One lifecycle message of a scene event as a camera produces it. The agent adds `v`, `device`,
 * `cameraSeq` and the snapshot reference (after putting the JPEG in its spool for upload).
 */
export interface HostEvent {
  camera: string;
  message: Omit<EventMessage, 'v' | 'device' | 'cameraSeq' | 'snapshot'>;
  snapshot?: Jpeg;
}

export interface HostStatus {
  camera: string;
  state: 'online' | 'offline';
  reason?: string;
  at: Date;
}

/**
 * The box's figures at one moment, for the updater's health window: counters are cumulative since
 * the host started (the updater differences two samples), latency is the p50 of recent frames.
 */
export interface HealthSample {
  /** when it was taken (ms, performance clock) */
  at: number;
  /** frames run through the detector, over every camera */
  detectFrames: number;
  /** frames/s the cameras detect now (a few seconds' window), summed over the cameras */
  detectFps: number;
  /** p50 detect latency of the cameras' recent frames (ms; 0 when none) */
  detectLatencyMs: number;
  /** times a detector thread came back after a crash */
  detectorRestarts: number;
  /** scene events started (phase `new`), over every camera */
  events: number;
}

/**
 * What the on-box updater (ota/updater) asks of the camera host: the updater drives the update
 * and owns the slots on disk, the host runs what it is told. Every method rejects with an
 * ArgusError whose message the updater reports as the failure reason.
 */
export interface UpdatableHost {
  /**
   * Runs the model in `candidateModelDir` beside the current one on `thresholds.frames` frames
   * the cameras deliver (no second decode), at a low priority and a bounded share of the CPU, and
   * compares them: agreement mAP@0.5 of the candidate against the current model, p50 latencies.
   * It only measures; the updater judges the figures against the thresholds. Rejects when the
   * frames are not gathered within `thresholds.timeoutS` or `signal` aborts.
   */
  shadowModel(
    candidateModelDir: string,
    thresholds: ShadowThresholds,
    signal: AbortSignal,
  ): Promise<ShadowFigures>;
  /**
   * Switches every camera to the model in `modelDir`: the new detector loads beside the running
   * one, the cameras' frames go to it from the next batch on, the old one closes. Cameras keep
   * running (no frame gap of more than a second). Rejects, leaving the current model running, when
   * the model does not load or does not fit the cameras (input size, the scenes' classes).
   */
  swapModel(modelDir: string): Promise<void>;
  /**
   * Applies the scene in `sceneFile` (validated against the running model's labels first, for
   * every camera before any changes) to the running `cameras` (every started camera when empty),
   * as scene `version`, without restarting their video. Open events of rules that are gone or
   * changed end; rules unchanged keep their state.
   */
  applyScene(cameras: readonly string[], sceneFile: string, version: number): Promise<void>;
  /** the figures now; see HealthSample */
  healthSample(): HealthSample;
}

/**
 * What runs the box's cameras. The device agent owns exactly one host at a time, registers its
 * listeners once, and replaces the host (stop, new instance, start) when a reloaded config changes
 * the cameras. Listeners are called synchronously in event order per camera; they never throw.
 */
export interface CameraHost extends UpdatableHost {
  /** starts the enabled cameras; scene paths are relative to `configDir`. Rejects on a config problem. */
  start(cameras: readonly CameraSettings[], configDir: string): Promise<void>;
  /** stops every camera; events a camera still emits while stopping reach the listeners before this resolves */
  stop(): Promise<void>;
  /** drops the camera's connection and reconnects it; rejects with an ArgusError for an unknown id */
  restartCamera(id: string): Promise<void>;
  /** a JPEG of the camera's newest frame; rejects with an ArgusError when there is none */
  snapshotNow(id: string): Promise<Jpeg>;
  /** per-camera counters for telemetry, one entry per started camera */
  stats(): CameraTelemetry[];
  /** the detector's health for telemetry; undefined when the host runs none */
  detectorStats(): DetectorTelemetry | undefined;
  onEvent(listener: (e: HostEvent) => void): void;
  onStatus(listener: (s: HostStatus) => void): void;
}

/**
 * A camera host the device updater can drive: shadow validation of a candidate model, model swap
 * with the cameras running, live scene apply and the health figures (see `UpdateHost` in
 * ota/updater/host.ts, where the updater defines what it needs, below the device layer).
 */
export interface UpdatableHost extends CameraHost, UpdateHost {}
