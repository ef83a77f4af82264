import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { createLogger } from '../common/logger.ts';

/**
 * The GStreamer binding (gstreamer-superficial), typed, loaded once per process. Before GStreamer
 * initialises, hardware video decoders present on the box are found in the element registry and
 * ranked above the software ones so that `decodebin` picks them; without any, decoding stays in
 * software and a log line says so.
 */

export interface GstCaps {
  name: string;
  width?: number;
  height?: number;
  format?: string;
  framerate?: string;
  [key: string]: unknown;
}

export interface GstBusMessage {
  type: string;
  _src_element_name: string;
  name?: string;
  message?: string;
  /** an error's debug text: where it arose and, for a missing plugin, what was missing */
  debug?: string;
  [key: string]: unknown;
}

export interface GstAppSink {
  pull(callback: (buf: Buffer | null, caps: GstCaps) => void): void;
}

/** an appsrc: `push` copies the bytes into a GStreamer buffer before it returns */
export interface GstAppSrc {
  push(data: Uint8Array): void;
}

export interface GstPipeline {
  play(): void;
  pause(): void;
  stop(): void;
  seek(seconds: number, flags: number): boolean;
  queryPosition(): number;
  queryDuration(): number;
  sendEOS(): void;
  findChild(name: string): (GstAppSink & Record<string, unknown>) | undefined;
  pollBus(callback: (msg: GstBusMessage) => void): void;
  /** whether the pipeline drops its bus's messages when it reaches NULL (GStreamer's default: yes) */
  'auto-flush-bus': boolean;
}

interface GstBinding {
  Pipeline: new (description: string) => GstPipeline;
}

/** hardware decoders by codec, most preferred first (VA-API, V4L2 stateful/stateless, NVDEC, Rockchip MPP) */
export const HARDWARE_DECODERS: Record<'h264' | 'h265', string[]> = {
  h264: ['vah264dec', 'vaapih264dec', 'nvh264dec', 'v4l2h264dec', 'v4l2slh264dec', 'mppvideodec'],
  h265: ['vah265dec', 'vaapih265dec', 'nvh265dec', 'v4l2h265dec', 'v4l2slh265dec', 'mppvideodec'],
};

export function elementExists(factory: string): boolean {
  try {
    execFileSync('gst-inspect-1.0', ['--exists', factory], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

export type DecoderPreference = 'auto' | 'software';

let binding: GstBinding | undefined;
let hardwareDecoders: string[] = [];

/**
 * The binding, initialised on first use. Every pending appsink pull and bus poll of the binding
 * holds a libuv worker thread, so the pool is sized for many cameras before anything uses it.
 */
export function gst(preference: DecoderPreference = 'auto'): GstBinding {
  if (binding) return binding;
  const log = createLogger('gstreamer');
  if (preference === 'auto') {
    const found = [...new Set([...HARDWARE_DECODERS.h264, ...HARDWARE_DECODERS.h265])].filter(elementExists);
    hardwareDecoders = found;
    if (found.length > 0) {
      const ranks = found.map((f) => `${f}:MAX`).join(',');
      process.env.GST_PLUGIN_FEATURE_RANK = [process.env.GST_PLUGIN_FEATURE_RANK, ranks]
        .filter(Boolean)
        .join(',');
      log.info({ decoders: found }, 'hardware video decoders found; decodebin will prefer them');
    } else {
      log.info('no hardware video decoder found; decoding in software (libav)');
    }
  } else {
    log.info('hardware decoding disabled by configuration; decoding in software');
  }
  binding = createRequire(import.meta.url)('gstreamer-superficial') as GstBinding;
  return binding;
}

export function detectedHardwareDecoders(): readonly string[] {
  return hardwareDecoders;
}
