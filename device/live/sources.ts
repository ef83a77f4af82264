import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import type { LiveFormat } from '../../contract/index.ts';

/**
 * The processes that read a camera for the live view, one per stream, each a child of the agent
 * (a crash or a hang of one cannot take the agent or the cameras' pipelines with it):
 *
 * - `fmp4`: gst-launch-1.0 `rtspsrc ! rtph264depay ! h264parse ! mp4mux fragment-duration` — the
 *   camera's H.264 as it arrives, not decoded, remuxed into fragmented MP4 on stdout;
 * - `mpeg1`: node-rtsp-stream's Mpeg1Muxer, an ffmpeg that transcodes to MPEG-1 in MPEG-TS on
 *   stdout (its WebSocket server, which would listen on the box without authentication, is not
 *   used: the agent sends the bytes out through its own outbound socket).
 *
 * The camera URL (with its credentials, if any) is in the child's arguments, visible to local
 * users of the box as the cameras' own pipelines are.
 */

/** ms of media per fMP4 fragment: one or two frames, so that a fragment is never what delays the picture */
export const FRAGMENT_MS = 100;
/** what ffmpeg writes for the MPEG-1 fallback (the rate: node-rtsp-stream fails on 10 fps sources without it) */
const MPEG1_OPTIONS = {
  '-an': '',
  '-r': '25',
  '-b:v': '1000k',
  '-bf': '0',
  '-muxdelay': '0.001',
  '-flush_packets': '1',
};
/** of the child's stderr, kept for the reason an operator sees */
const STDERR_KEPT = 2000;

export interface LiveSourceCamera {
  url: string;
  rtspTransport: 'tcp' | 'udp';
}

export interface LiveSource {
  child: ChildProcess;
  /** the end of the child's stderr */
  stderr(): string;
}

interface Mpeg1MuxerInstance {
  stream: ChildProcess;
}
type Mpeg1MuxerClass = new (o: {
  url: string;
  ffmpegPath: string;
  ffmpegOptions: Record<string, string>;
}) => Mpeg1MuxerInstance;

let muxer: Mpeg1MuxerClass | undefined;
function mpeg1Muxer(): Mpeg1MuxerClass {
  muxer ??= createRequire(import.meta.url)('node-rtsp-stream/mpeg1muxer') as Mpeg1MuxerClass;
  return muxer;
}

/** the gst-launch-1.0 arguments of the passthrough (each property one argument: gst-launch escapes it) */
export function passthroughArgs(camera: LiveSourceCamera): string[] {
  return [
    '-q',
    'rtspsrc',
    `location=${camera.url}`,
    'latency=0',
    `protocols=${camera.rtspTransport}`,
    '!',
    'rtph264depay',
    '!',
    'h264parse',
    '!',
    'mp4mux',
    `fragment-duration=${FRAGMENT_MS}`,
    'streamable=true',
    '!',
    'fdsink',
    'fd=1',
    'sync=false',
  ];
}

export function startLiveSource(camera: LiveSourceCamera, format: LiveFormat): LiveSource {
  const child =
    format === 'fmp4'
      ? spawn('gst-launch-1.0', passthroughArgs(camera), { stdio: ['ignore', 'pipe', 'pipe'] })
      : new (mpeg1Muxer())({ url: camera.url, ffmpegPath: 'ffmpeg', ffmpegOptions: MPEG1_OPTIONS }).stream;
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-STDERR_KEPT);
  });
  // a failure to spawn (no gst-launch-1.0 or ffmpeg) comes as 'error', then 'close'
  child.on('error', (err) => {
    stderr = `${stderr}\n${err.message}`.slice(-STDERR_KEPT);
  });
  return { child, stderr: () => stderr };
}
