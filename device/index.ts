/** The device agent: one process per box between its cameras and the control plane. */
export { DeviceAgent, type DeviceAgentOptions } from './agent.ts';
export type { CameraHost, HostEvent, HostStatus, Jpeg } from './camera-host.ts';
export { type DeviceConfig, DeviceConfigSchema, loadDeviceConfig } from './config.ts';
export type { HealthReport } from './health.ts';
export { type CameraHostFactory, defaultCameraHostFactory } from './hosts.ts';
export { availableExecutionProviders, buildIdentity } from './identity.ts';
export { loadRecording, RecordedEventsHost } from './recorded-host.ts';
export { Spool, type SpoolStats } from './spool.ts';
