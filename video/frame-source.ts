import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import { ArgusError } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { ModelFrame } from '../inference/model-frame.ts';
import {
  type DecoderPreference,
  type GstAppSink,
  type GstBusMessage,
  type GstCaps,
  type GstPipeline,
  gst,
} from './gst.ts';
import { buildPipelineDescription, ELEMENT, type PipelineOptions } from './pipeline-description.ts';
import { describeSource } from './source-url.ts';

/** a full-resolution frame as the decoder produced it (planar I420) */
export interface FullFrame {
  data: Uint8Array;
  width: number;
  height: number;
  format: 'I420';
}

export interface VideoFrame {
  /** 0-based index among the frames this source delivered since it started */
  index: number;
  /** pixels at the model's input size and colour order (HWC uint8) */
  model: Uint8Array;
  full: FullFrame;
  /** wall-clock time the frame reached Node (ms since epoch) */
  receivedAt: number;
  /** source frame rate from the caps, when it has one */
  fps: number | undefined;
}

/** what the detector takes of a decoded frame: the model pixels and the source size */
export function toModelFrame(frame: VideoFrame): ModelFrame {
  return { pixels: frame.model, sourceWidth: frame.full.width, sourceHeight: frame.full.height };
}

export class SourceError extends ArgusError {}

/** how long an empty pull waits for the bus to tell end of stream from failure */
const BUS_SETTLE_MS = 1000;

/**
 * refuses a V4L2 device that is not there or cannot be opened, before GStreamer tries: its open
 * fails while the pipeline starts, where the error does not reach us (see `FrameSource.settle`)
 */
function checkVideoDevice(label: string, device: string): void {
  if (!existsSync(device)) {
    const present = existsSync('/dev')
      ? readdirSync('/dev')
          .filter((f) => /^video\d+$/.test(f))
          .map((f) => `/dev/${f}`)
      : [];
    throw new SourceError(
      `${label}: no device ${device}: is the camera plugged in? (video devices here: ${present.join(', ') || 'none'})`,
    );
  }
  try {
    accessSync(device, constants.R_OK | constants.W_OK);
  } catch {
    throw new SourceError(
      `${label}: no permission to open ${device}: run Argus as a member of the device's group (usually "video")`,
    );
  }
}

/**
 * what a pipeline error says, made actionable where GStreamer's message is not: decodebin reports
 * a codec it has no decoder for as "missing a plug-in" and names the codec only in the debug text
 */
function describePipelineError(label: string, msg: GstBusMessage): string {
  const missing = /Missing (decoder|demuxer|element|plugin)[^:\n]*: ([^(\n]+)/.exec(msg.debug ?? '');
  if (missing) {
    const [, kind, what] = missing;
    return `${label}: this box has no GStreamer ${kind} for ${what!.trim()}: install the plugin that provides one (software decoders: Debian's gstreamer1.0-libav) or use a codec the box decodes`;
  }
  return `${label}: ${msg.message ?? 'pipeline error'} (${msg.name ?? msg._src_element_name})`;
}

function parseFps(caps: GstCaps): number | undefined {
  const f = caps.framerate;
  if (typeof f !== 'string') return undefined;
  const [n, d] = f.split('/').map(Number);
  return n && d ? n / d : undefined;
}

/**
 * One camera or recording as a pull-based stream of frames. `next()` resolves with the next frame,
 * with `null` at end of stream or after `stop()`, and rejects with a SourceError naming the
 * GStreamer element when the pipeline fails. A failing pipeline is stopped first, which releases
 * any pending appsink pull (a pull on a dead pipeline would otherwise block forever).
 */
export class FrameSource {
  private pipeline: GstPipeline | undefined;
  private modelSink: GstAppSink | undefined;
  private fullSink: GstAppSink | undefined;
  private failure: SourceError | undefined;
  private ended = false;
  private delivered = 0;
  readonly description: string;

  constructor(
    private readonly options: PipelineOptions,
    private readonly log: Logger,
    private readonly decoders: DecoderPreference = 'auto',
  ) {
    this.description = buildPipelineDescription(options);
  }

  get label(): string {
    return describeSource(this.options.source);
  }

  start(): void {
    if (this.pipeline) throw new ArgusError('frame source already started');
    const { source } = this.options;
    if (source.kind === 'v4l2') checkVideoDevice(this.label, source.device);
    let pipeline: GstPipeline;
    try {
      pipeline = new (gst(this.decoders).Pipeline)(this.description);
    } catch (err) {
      throw new SourceError(
        `cannot build the GStreamer pipeline for ${this.label}: ${(err as Error).message}`,
      );
    }
    this.pipeline = pipeline;
    this.modelSink = pipeline.findChild(ELEMENT.model);
    this.fullSink = pipeline.findChild(ELEMENT.full);
    // The binding reads the bus on a libuv thread, one blocking pop at a time, and queues the next
    // pop while the pipeline is not NULL. A pop queued just before stop() would find the bus
    // emptied by the stop's flush and wait for ever, holding the thread and keeping the process
    // alive after its work is done (2 of 39 processes of 200 start/stop cycles never exited; a
    // test file once stayed alive after passing). Kept messages let that last pop return (0 of 66).
    pipeline['auto-flush-bus'] = false;
    pipeline.pollBus((msg) => {
      if (msg.type === 'error') {
        this.failure ??= new SourceError(describePipelineError(this.label, msg));
        this.log.debug({ source: this.label, element: msg.name, error: msg.message }, 'pipeline error');
        this.halt();
      } else if (msg.type === 'eos') {
        this.ended = true;
      } else if (msg.type === 'warning') {
        this.log.debug({ source: this.label, element: msg._src_element_name }, 'pipeline warning');
      }
    });
    pipeline.play();
  }

  private pull(sink: GstAppSink): Promise<{ buf: Buffer; caps: GstCaps } | null> {
    return new Promise((resolve) => sink.pull((buf, caps) => resolve(buf ? { buf, caps } : null)));
  }

  /** the next frame; null at end of stream or once stopped */
  async next(): Promise<VideoFrame | null> {
    if (!this.pipeline || !this.modelSink || !this.fullSink) throw new ArgusError('frame source not started');
    if (this.failure) throw this.failure;
    const model = await this.pull(this.modelSink);
    const full = model ? await this.pull(this.fullSink) : null;
    if (!model || !full) {
      await this.settle();
      if (!this.failure && !this.ended)
        this.failure = new SourceError(
          `${this.label}: the GStreamer pipeline stopped ${this.delivered === 0 ? 'before its first frame' : `after ${this.delivered} frames`} without saying why; run it by hand to see: gst-launch-1.0 ${this.description}`,
        );
    }
    if (this.failure) throw this.failure;
    if (!model || !full) return null;
    const width = Number(full.caps.width);
    const height = Number(full.caps.height);
    return {
      index: this.delivered++,
      model: model.buf,
      full: { data: full.buf, width, height, format: 'I420' },
      receivedAt: Date.now(),
      fps: parseFps(model.caps) ?? parseFps(full.caps),
    };
  }

  /**
   * waits (up to `BUS_SETTLE_MS`) for the bus to say why a pull came back empty: the end of the
   * stream (or `stop()`), or an error whose message can arrive just after the pull. An element
   * that fails while the pipeline starts may never say: the binding stops reading the bus of a
   * pipeline that did not leave the NULL state.
   */
  private async settle(): Promise<void> {
    const deadline = performance.now() + BUS_SETTLE_MS;
    while (!this.ended && !this.failure && performance.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
  }

  get atEnd(): boolean {
    return this.ended;
  }

  private halt(): void {
    const p = this.pipeline;
    if (!p) return;
    p.stop();
  }

  /** stops the pipeline; any pending `next()` resolves with null */
  stop(): void {
    this.halt();
    this.ended = true;
  }
}
