/** The edge video pipeline: camera ingest, detection, tracking, scene rules and events. */
export { type CameraSettings, CameraSettingsSchema } from './camera-settings.ts';
export { type Detection, Detector, type FrameDetector } from './detector/detector.ts';
export { DetectorPool } from './detector/detector-pool.ts';
export type { ModelFrame } from './detector/model-frame.ts';
export {
  DEFAULT_DETECTOR_SETTINGS,
  type DetectorSettings,
  DetectorSettingsSchema,
} from './detector/settings.ts';
export { ThreadedDetector } from './detector/threaded-detector.ts';
export type { Box, Rect } from './rect.ts';
export { renderAnnotatedJpeg } from './snapshot.ts';
export { FrameSource, type VideoFrame } from './video/frame-source.ts';
export { parseSourceUrl, type SourceSpec } from './video/source-url.ts';
