/** Video frame sources on GStreamer: files and RTSP cameras decoded into frames a model takes. */
export { FrameSource, type VideoFrame } from './frame-source.ts';
export { parseSourceUrl, type SourceSpec } from './source-url.ts';
