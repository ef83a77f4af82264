import { ArgusError } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { CameraHost } from './camera-host.ts';
import type { DeviceConfig } from './config.ts';
import { RecordedEventsHost } from './recorded-host.ts';

/** makes the camera host for a config; the agent calls it at start and when a reload changes the cameras */
export type CameraHostFactory = (config: DeviceConfig, log: Logger) => CameraHost;

/**
 * The hosts this build has: with a `recorded:` section, the recorded-events host. Live cameras run
 * in the video pipeline's camera host, which plugs in here.
 */
export const defaultCameraHostFactory: CameraHostFactory = (config, log) => {
  if (config.recorded) return new RecordedEventsHost(config.recorded, log);
  throw new ArgusError(
    `${config.file} has no "recorded:" section, and this build has no live camera host`,
    'add a "recorded:" section (events: <recording.jsonl>) to replay recorded events',
  );
};
