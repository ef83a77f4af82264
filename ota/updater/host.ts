import type { ShadowFigures, ShadowThresholds } from '../../contract/ota.ts';

/**
 * What the device updater asks of the box's camera host. The updater drives (it owns the slots on
 * disk, the state machine, the thresholds and their comparison); the host does what it is told and
 * reports figures. `device/camera-host.ts` combines this with `CameraHost` as `UpdatableHost`
 * (implemented by the pipeline host and, without video, the recorded-events host).
 */
export interface UpdateHost {
  /**
   * Runs the candidate model (a verified, complete model directory: descriptor.json and its ONNX
   * file) beside the current one on `thresholds.frames` live frames sampled from the box's own
   * cameras, on a CPU budget that keeps the cameras at their detect fps, and returns what it
   * measured. It does not judge: the updater compares the figures with the thresholds. Rejects
   * when it cannot run the candidate at all (the updater reports the error as the reason); stops
   * early with an AbortError when `signal` aborts (timeoutS, cancel, shutdown).
   */
  shadowModel(
    candidateModelDir: string,
    thresholds: ShadowThresholds,
    signal: AbortSignal,
  ): Promise<ShadowFigures>;
  /**
   * Switches every camera's detector to the model in `modelDir` (a complete directory). The
   * cameras keep running: no frame gap longer than 1 s. Resolves once frames run through the new
   * model; rejects (and keeps the previous model running) when it cannot be loaded.
   */
  swapModel(modelDir: string): Promise<void>;
  /**
   * Makes `cameras` use the scene in `sceneFile` (an absolute path to a verified scene file),
   * without restarting a camera where the rule set allows; `version` is the scene's bundle version
   * (0 = the scene of the local config) that the host reports in each camera's telemetry.
   */
  applyScene(cameras: readonly string[], sceneFile: string, version: number): Promise<void>;
  /**
   * The figures the health window compares, now. `detectFps` (summed over the cameras) and
   * `detectLatencyMs` (p50) are current values; `detectorRestarts` and `events` (event messages
   * produced) are cumulative since the host started, and the updater differences them over the
   * window.
   */
  healthSample(): HealthSample;
}

export interface HealthSample {
  /** detector frames per second, summed over the cameras, now */
  detectFps: number;
  /** p50 inference latency now, ms */
  detectLatencyMs: number;
  /** crashed detector threads started again, since the host started */
  detectorRestarts: number;
  /** event messages the host produced since it started */
  events: number;
}

/** whether a camera host implements what the updater needs (a host without video may not) */
export function isUpdateHost(host: unknown): host is UpdateHost {
  const h = host as Partial<Record<keyof UpdateHost, unknown>> | undefined;
  return (
    typeof h?.shadowModel === 'function' &&
    typeof h.swapModel === 'function' &&
    typeof h.applyScene === 'function' &&
    typeof h.healthSample === 'function'
  );
}
