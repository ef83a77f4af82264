/** The edge video pipeline: camera runtime, motion gating, tracking, scene rules, events and snapshots. */
export { type CameraSettings, CameraSettingsSchema } from './camera-settings.ts';
export { renderAnnotatedJpeg } from './snapshot.ts';
