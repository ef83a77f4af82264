/**
 * The detector runtime every part shares (the edge pipeline, the model factory, the updater): model
 * directories and descriptors, ONNX Runtime sessions, the detector on the calling thread, on a
 * worker thread and in a pool, model frames, decoders, NMS and the rectangles detections live in.
 */
export { type ModelDescriptor, ModelDescriptorSchema, readDescriptor } from './descriptor.ts';
export { type Detection, Detector, type FrameDetector } from './detector.ts';
export { DetectorPool } from './detector-pool.ts';
export { hardwareClass } from './hardware-class.ts';
export {
  DESCRIPTOR_FILE,
  isModelPath,
  type LoadedModel,
  loadModel,
  modelsDir,
  resolveModelDir,
} from './model-dir.ts';
export type { ModelFrame } from './model-frame.ts';
export { iou, nonMaxSuppression } from './nms.ts';
export type { Box, Rect } from './rect.ts';
export { DEFAULT_DETECTOR_SETTINGS, type DetectorSettings, DetectorSettingsSchema } from './settings.ts';
export { ThreadedDetector } from './threaded-detector.ts';
