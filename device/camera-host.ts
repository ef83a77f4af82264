import type { CameraTelemetry, DetectorTelemetry, EventMessage } from '../contract/payloads.ts';
import type { UpdateHost } from '../ota/updater/host.ts';
import type { CameraSettings } from '../pipelines/camera-settings.ts';
import type { DetectedFrame, EventStages } from '../pipelines/runtime/camera.ts';
import type { PendingJpeg } from '../pipelines/runtime/snapshots.ts';

/** a JPEG image with its pixel size */
export interface Jpeg {
  jpeg: Buffer;
  width: number;
  height: number;
}

/**
 * One lifecycle message of a scene event as a camera produces it. The agent adds `v`, `device`,
 * `cameraSeq` and the snapshot reference, sends the event, and puts the JPEG in its spool for
 * upload once it is rendered.
 */
export interface HostEvent {
  camera: string;
  message: Omit<EventMessage, 'v' | 'device' | 'cameraSeq' | 'snapshot'>;
  snapshot?: PendingJpeg;
  /** when the event was emitted (ms, performance clock); absent: when the listener is called */
  emittedAt?: number;
  /** its frame reaching the pipeline → emitted (ms), when it came from a frame */
  latencyMs?: number;
  /** where `latencyMs` went, when it came from a detected frame */
  stages?: EventStages;
}

export interface HostStatus {
  camera: string;
  state: 'online' | 'offline';
  reason?: string;
  at: Date;
}

/**
 * What runs the box's cameras. The device agent owns exactly one host at a time, registers its
 * listeners once, and replaces the host (stop, new instance, start) when a reloaded config changes
 * the cameras. Listeners are called synchronously in event order per camera; they never throw.
 */
export interface CameraHost {
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
  /**
   * every detected frame of every camera, after tracking (the box's harvest learns from them); a
   * host that detects nothing itself (a recorded one) has none
   */
  onDetected?(listener: (d: DetectedFrame) => void): void;
}

/**
 * A camera host the device updater can drive: shadow validation of a candidate model, model swap
 * with the cameras running, live scene apply and the health figures (see `UpdateHost` in
 * ota/updater/host.ts, where the updater defines what it needs, below the device layer).
 */
export interface UpdatableHost extends CameraHost, UpdateHost {}
