import { type ChildProcess, spawn } from 'node:child_process';
import type { LiveFormat } from '../../contract/index.ts';

/**
 * The processes that read a camera for the live view, one per stream, each a child of the agent
 * (a crash or a hang of one cannot take the agent or the cameras' pipelines with it):
 *
 * - `fmp4`: gst-launch-1.0 `rtspsrc ! rtph264depay ! h264parse ! mp4mux fragment-duration` — the
 *   camera's H.264 as it arrives, not decoded, remuxed into fragmented MP4 on stdout;
 * - `mpeg1`: ffmpeg transcoding to MPEG-1 in MPEG-TS on stdout, for JSMpeg. The agent sends the
 *   bytes out through its own outbound socket; nothing listens on the box.
 *
 * The camera URL (with its credentials, if any) is in the child's arguments, visible to local
 * users of the box as the cameras' own pipelines are.
 */

/** ms of media per fMP4 fragment: one or two frames, so that a fragment is never what delays the picture */
export const FRAGMENT_MS = 100;
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

/**
 * The ffmpeg arguments of the MPEG-1 fallback. The input options come before `-i` (ffmpeg applies
 * an option to the file that follows it): the camera's own transport, and no stream probe beyond
 * the first packet (`-probesize 32 -analyzeduration 0`: the RTSP session's SDP already names the
 * codec and size). Not `-fflags nobuffer`: it drops the packets the probe read, which are the key
 * frame the camera sends a new client, so the picture waited for the next one (up to a second).
 * On the sample camera, ffmpeg's first output byte came 2.9-3.3 s after its spawn with the default
 * probe, 1.3-1.6 s with nobuffer, 0.4-0.46 s with these. The output: MPEG-1 at 25 fps (MPEG-1 has
 * no 10 fps; ffmpeg repeats frames), no B-frames (JSMpeg shows each frame as it is decoded), each
 * packet written at once.
 */
export function mpeg1Args(camera: LiveSourceCamera): string[] {
  return [
    ...['-hide_banner', '-nostdin', '-loglevel', 'error'],
    ...['-rtsp_transport', camera.rtspTransport],
    ...['-probesize', '32', '-analyzeduration', '0', '-flags', 'low_delay'],
    ...['-i', camera.url],
    ...['-an', '-f', 'mpegts', '-codec:v', 'mpeg1video', '-r', '25', '-b:v', '1000k', '-bf', '0'],
    ...['-muxdelay', '0.001', '-flush_packets', '1', 'pipe:1'],
  ];
}

export function startLiveSource(camera: LiveSourceCamera, format: LiveFormat): LiveSource {
  const child =
    format === 'fmp4'
      ? spawn('gst-launch-1.0', passthroughArgs(camera), { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('ffmpeg', mpeg1Args(camera), { stdio: ['ignore', 'pipe', 'pipe'] });
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
