import WebSocket from 'ws';
import { ArgusError, errorMessage } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { redactUrl } from '../../common/net.ts';
import {
  httpPaths,
  LIVE_CHUNK,
  type LiveDeviceMessage,
  type LiveFormat,
  type LiveStart,
  liveValidators,
} from '../../contract/index.ts';
import { parseSourceUrl } from '../../video/source-url.ts';
import type { CommandOutcome } from '../commands.ts';
import { type ClientTls, TlsErrorLog, tlsConnectOptions } from '../tls.ts';
import { Fmp4Splitter } from './fmp4.ts';
import { type LiveSource, type LiveSourceCamera, startLiveSource } from './sources.ts';

/** live streams one box sends at once (each is a process reading a camera) */
export const MAX_LIVE_STREAMS = 4;
/** bytes the socket may hold unsent before the box drops media (up to the next key frame) */
const MAX_UNSENT_BYTES = 2 * 1024 * 1024;
/** no byte from the camera for this long: the source is restarted and viewers told it is offline */
const STALL_MS = 8_000;
const RESTART_START_MS = 1_000;
const RESTART_MAX_MS = 10_000;
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** the control plane sends nothing but pings: anything larger is refused */
const MAX_INBOUND_BYTES = 4096;
const KILL_GRACE_MS = 2_000;

export interface LiveCamera extends LiveSourceCamera {
  id: string;
}

export interface LiveStreamerOptions {
  device: string;
  /** the control plane's http(s) URL and the box's credential, read at each start (rotation, reload) */
  controlPlane: () => { url: string; credential: string };
  tls: ClientTls | undefined;
  /** the box's enabled cameras */
  cameras: () => { id: string; url: string; rtspTransport: 'tcp' | 'udp' }[];
  log: Logger;
}

/** the WebSocket URL of a stream's upload: the control plane's URL with ws(s): */
export function liveUploadUrl(controlPlaneUrl: string, device: string, stream: string): string {
  const base = controlPlaneUrl.replace(/\/+$/, '').replace(/^http(s?):/, 'ws$1:');
  return `${base}${httpPaths.liveUpload(device, stream)}`;
}

/**
 * One live stream: an outbound WebSocket to the control plane, authenticated with the box's
 * credential and verified with its TLS settings, and the source process feeding it. It ends when
 * the control plane closes the socket (no viewer left), on `live-stop`, or when the socket
 * fails; a source that fails or stalls is restarted with backoff while the socket is open, and
 * the viewers are told the camera is offline meanwhile.
 */
class LiveSession {
  private socket: WebSocket | undefined;
  private source: LiveSource | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private stallTimer: NodeJS.Timeout | undefined;
  private restartWait = RESTART_START_MS;
  private ended = false;
  /** whether viewers were told the camera is live since the source last started */
  private flowing = false;
  /** after a drop, media waits for the next key frame (fMP4) */
  private waitForKey = false;
  dropped = 0;

  constructor(
    readonly stream: string,
    readonly camera: LiveCamera,
    readonly format: LiveFormat,
    private readonly url: string,
    private readonly credential: string,
    private readonly tls: ClientTls | undefined,
    private readonly log: Logger,
    private readonly onEnd: (session: LiveSession) => void,
  ) {}

  open(): void {
    const tlsErrors = new TlsErrorLog(this.log, this.tls, {
      name: 'control plane',
      urlKey: 'controlPlane.url',
      url: this.url,
    });
    const socket = new WebSocket(this.url, {
      headers: { authorization: `Bearer ${this.credential}` },
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      maxPayload: MAX_INBOUND_BYTES,
      perMessageDeflate: false,
      ...tlsConnectOptions(this.tls),
    });
    this.socket = socket;
    socket.on('open', () => {
      this.log.info(
        { camera: this.camera.id, stream: this.stream, format: this.format },
        'live stream: connected to the control plane',
      );
      this.startSource();
    });
    socket.on('unexpected-response', (_req, res) => {
      this.log.error(
        { camera: this.camera.id, stream: this.stream, status: res.statusCode, url: redactUrl(this.url) },
        'live stream refused by the control plane (a stream it did not ask for, or a wrong credential)',
      );
      res.resume();
      socket.terminate();
    });
    socket.on('error', (err) => {
      if (!tlsErrors.report(err))
        this.log.warn(
          { camera: this.camera.id, stream: this.stream, err: errorMessage(err) },
          'live stream socket failed',
        );
    });
    socket.on('close', (code, reason) => {
      this.log.info(
        {
          camera: this.camera.id,
          stream: this.stream,
          code,
          reason: reason.toString().slice(0, 200),
          dropped: this.dropped,
        },
        'live stream ended',
      );
      this.end();
    });
  }

  /** ends the stream: closes the socket and stops the source */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.stallTimer);
    this.stopSource();
    if (this.socket && this.socket.readyState !== WebSocket.CLOSED) this.socket.close(1000, 'stream stopped');
    this.onEnd(this);
  }

  private send(kind: number, bytes: Buffer, key: boolean): void {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    if (socket.bufferedAmount > MAX_UNSENT_BYTES) {
      this.dropped++;
      this.waitForKey = this.format === 'fmp4';
      return;
    }
    if (this.waitForKey && !key && kind !== LIVE_CHUNK.init) {
      this.dropped++;
      return;
    }
    this.waitForKey = false;
    const frame = Buffer.allocUnsafe(bytes.length + 1);
    frame[0] = kind;
    bytes.copy(frame, 1);
    socket.send(frame, { binary: true });
  }

  private message(m: LiveDeviceMessage): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(m));
  }

  private startSource(): void {
    if (this.ended) return;
    const source = startLiveSource(this.camera, this.format);
    this.source = source;
    this.flowing = false;
    const splitter = this.format === 'fmp4' ? new Fmp4Splitter() : undefined;
    this.armStall();
    source.child.stdout!.on('data', (chunk: Buffer) => {
      if (this.source !== source) return;
      this.armStall();
      if (!this.flowing) {
        this.flowing = true;
        this.restartWait = RESTART_START_MS;
        this.message({ type: 'status', state: 'live' });
      }
      if (!splitter) return this.send(LIVE_CHUNK.mpegts, chunk, true);
      let pieces: ReturnType<Fmp4Splitter['push']>;
      try {
        pieces = splitter.push(chunk);
      } catch (err) {
        this.log.error({ camera: this.camera.id, err: errorMessage(err) }, 'live stream: unreadable output');
        this.sourceFailed(source, errorMessage(err));
        return;
      }
      for (const p of pieces) {
        if (p.kind === 'init') {
          this.message({ type: 'init', mime: p.mime });
          this.send(LIVE_CHUNK.init, p.bytes, true);
        } else this.send(p.key ? LIVE_CHUNK.keyFragment : LIVE_CHUNK.fragment, p.bytes, p.key);
      }
    });
    source.child.once('close', (code, signal) => {
      if (this.source !== source) return;
      const last = source
        .stderr()
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l.length > 0)
        .slice(-2)
        .join(' ');
      this.sourceFailed(
        source,
        `the camera's stream ended (${signal ?? `exit ${code}`})${last ? `: ${last}` : ''}`,
      );
    });
  }

  private armStall(): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => {
      if (this.source) this.sourceFailed(this.source, `no picture from the camera for ${STALL_MS / 1000} s`);
    }, STALL_MS);
  }

  private sourceFailed(source: LiveSource, reason: string): void {
    if (this.ended || this.source !== source) return;
    clearTimeout(this.stallTimer);
    this.stopSource();
    const reasonText = reason.slice(0, 500);
    this.log.warn(
      { camera: this.camera.id, stream: this.stream, reason: reasonText, retryInS: this.restartWait / 1000 },
      'live stream: camera offline; retrying',
    );
    this.message({ type: 'status', state: 'offline', reason: reasonText });
    this.restartTimer = setTimeout(() => this.startSource(), this.restartWait);
    this.restartWait = Math.min(RESTART_MAX_MS, this.restartWait * 2);
  }

  private stopSource(): void {
    const source = this.source;
    this.source = undefined;
    if (!source || source.child.exitCode !== null || source.child.signalCode !== null) return;
    source.child.kill('SIGTERM');
    const timer = setTimeout(() => source.child.kill('SIGKILL'), KILL_GRACE_MS);
    source.child.once('close', () => clearTimeout(timer));
  }
}

/**
 * The box's live streams, started and stopped by the control plane's `live-start` / `live-stop`
 * commands; at most MAX_LIVE_STREAMS at once. Nothing listens on the box: each stream is an
 * outbound WebSocket to the control plane.
 */
export class LiveStreamer {
  private readonly sessions = new Map<string, LiveSession>();

  constructor(private readonly o: LiveStreamerOptions) {}

  get active(): number {
    return this.sessions.size;
  }

  async start(args: Record<string, unknown>): Promise<CommandOutcome> {
    const start: LiveStart = liveValidators.start.parse(args, 'the args of live-start');
    if (this.sessions.has(start.stream))
      return { ok: true, message: `live stream ${start.stream} is already running` };
    if (this.sessions.size >= MAX_LIVE_STREAMS)
      throw new ArgusError(
        `this box already sends ${this.sessions.size} live streams, its limit`,
        'close a live view of another camera of this box first',
      );
    const camera = this.o.cameras().find((c) => c.id === start.camera);
    if (!camera)
      throw new ArgusError(
        `camera ${start.camera} is not an enabled camera of this box`,
        `cameras: ${
          this.o
            .cameras()
            .map((c) => c.id)
            .join(', ') || 'none'
        }`,
      );
    if (parseSourceUrl(camera.url).kind !== 'rtsp')
      throw new ArgusError(
        `camera ${camera.id} is not an RTSP camera: the live view streams the camera's own H.264 from rtsp://`,
      );
    const { url, credential } = this.o.controlPlane();
    const session = new LiveSession(
      start.stream,
      camera,
      start.format,
      liveUploadUrl(url, this.o.device, start.stream),
      credential,
      this.o.tls,
      this.o.log,
      (s) => {
        if (this.sessions.get(s.stream) === s) this.sessions.delete(s.stream);
      },
    );
    this.sessions.set(start.stream, session);
    session.open();
    return {
      ok: true,
      message: `streaming camera ${camera.id} live (${start.format}) to the control plane`,
      data: { stream: start.stream, camera: camera.id, format: start.format },
    };
  }

  async stop(args: Record<string, unknown>): Promise<CommandOutcome> {
    const { stream } = liveValidators.stop.parse(args, 'the args of live-stop');
    const session = this.sessions.get(stream);
    if (!session) return { ok: true, message: `live stream ${stream} is not running` };
    session.end();
    return { ok: true, message: `live stream ${stream} of camera ${session.camera.id} stopped` };
  }

  stopAll(): void {
    for (const s of [...this.sessions.values()]) s.end();
  }
}
