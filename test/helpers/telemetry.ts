import type { CameraTelemetry, Telemetry } from '../../contract/index.ts';

/**
 * A valid telemetry message of `device` at `at` (ms or ISO time) with one online camera `cam-1`:
 * the one fixture of the control-plane tests; `over` replaces fields of the message, `camera`
 * fields of its camera.
 */
export function telemetry(
  device: string,
  at: number | string,
  over: Partial<Telemetry> = {},
  camera: Partial<CameraTelemetry> = {},
): Telemetry {
  return {
    v: 1,
    device,
    at: typeof at === 'string' ? at : new Date(at).toISOString(),
    uptimeS: 10,
    cpuPercent: 12,
    load1: 0.5,
    memoryRssMiB: 100,
    memoryUsedPercent: 40,
    diskFreeMiB: 1000,
    temperatureC: null,
    spool: { pending: 0, bytes: 0, dropped: 0 },
    cameras: [
      {
        id: 'cam-1',
        state: 'online',
        fpsIn: 10,
        fpsDetect: 5,
        detectLatencyMs: 12,
        drops: 0,
        motionSkippedShare: 0.1,
        ...camera,
      },
    ],
    ...over,
  };
}
