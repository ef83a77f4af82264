import type { SourceSpec } from './source-url.ts';

export interface BranchCaps {
  width: number;
  height: number;
  format: 'RGB' | 'BGR';
}

export interface PipelineOptions {
  source: SourceSpec;
  /** frames for the model: scaled (stretched) to its input size, in its colour order */
  model: BranchCaps;
  /** live sources only: cap the delivered frame rate (frames/s) before colour conversion */
  maxFps?: number;
  /** file sources: play at the recording's own pace, like a camera (otherwise as fast as possible) */
  realtime?: boolean;
  /** RTSP: jitter-buffer latency in ms, and transport */
  rtspLatencyMs?: number;
  rtspTransport?: 'tcp' | 'udp';
}

/** GStreamer element names the frame source looks up */
export const ELEMENT = { model: 'argus_model', full: 'argus_full' } as const;

function quote(value: string): string {
  return `"${value.replace(/(["\\])/g, '\\$1')}"`;
}

function sourceChain(o: PipelineOptions): string {
  const s = o.source;
  switch (s.kind) {
    case 'file':
      return `filesrc location=${quote(s.path)} ! decodebin${o.realtime ? ' ! identity sync=true' : ''}`;
    case 'rtsp': {
      const protocols = o.rtspTransport === 'udp' ? 'udp' : 'tcp';
      return `rtspsrc location=${quote(s.url)} latency=${o.rtspLatencyMs ?? 0} protocols=${protocols} drop-on-latency=true ! decodebin`;
    }
    case 'v4l2':
      return `v4l2src device=${quote(s.device)} ! decodebin`;
    case 'test':
      return `videotestsrc is-live=true pattern=${s.pattern} ! video/x-raw,width=640,height=480,framerate=10/1`;
  }
}

/**
 * One pipeline per camera: decode → (rate cap, newest-frame-wins for live sources) → tee into a
 * model branch (scaled and converted by GStreamer, never by JS) and a full-resolution I420 branch
 * (the decoder's own format, so usually no conversion: it gives the source size and the pixels for
 * snapshots). Both appsinks hold one buffer and are pulled in lockstep, so each model frame is
 * paired with exactly its own full frame. No queue in the pipeline is unbounded.
 */
export function buildPipelineDescription(o: PipelineOptions): string {
  const live = o.source.kind !== 'file' || o.realtime === true;
  const parts = [sourceChain(o)];
  if (live && o.maxFps) parts.push(`videorate drop-only=true max-rate=${Math.max(1, Math.round(o.maxFps))}`);
  if (live) parts.push('queue leaky=downstream max-size-buffers=1 max-size-bytes=0 max-size-time=0');
  const sink = (name: string) =>
    `appsink name=${name} sync=false max-buffers=1 drop=false enable-last-sample=false`;
  const modelBranch = `videoscale add-borders=false ! videoconvert ! video/x-raw,format=${o.model.format},width=${o.model.width},height=${o.model.height} ! ${sink(ELEMENT.model)}`;
  const q = 'queue max-size-buffers=2 max-size-bytes=0 max-size-time=0';
  const fullBranch = `videoconvert ! video/x-raw,format=I420 ! ${sink(ELEMENT.full)}`;
  return `${parts.join(' ! ')} ! tee name=argus_tee  argus_tee. ! ${q} ! ${modelBranch}  argus_tee. ! ${q} ! ${fullBranch}`;
}
