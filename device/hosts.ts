import type { Logger } from '../common/logger.ts';
import type { UpdatableHost } from './camera-host.ts';
import type { DeviceConfig } from './config.ts';
import { PipelineCameraHost } from './pipeline-host.ts';
import { RecordedEventsHost } from './recorded-host.ts';

/** makes the camera host for a config; the agent calls it at start and when a reload changes the cameras */
export type CameraHostFactory = (config: DeviceConfig, log: Logger) => UpdatableHost;

/**
 * With a `recorded:` section, the recorded-events host (wiring and control-plane tests without
 * video); otherwise the live cameras through the video pipeline.
 */
export const defaultCameraHostFactory: CameraHostFactory = (config, log) =>
  config.recorded
    ? new RecordedEventsHost(config.recorded, log)
    : new PipelineCameraHost(config.detector, log);
