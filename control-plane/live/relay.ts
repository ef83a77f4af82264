import { randomBytes } from 'node:crypto';
import type { WebSocket } from 'ws';
import { parseBoundedJson } from '../../common/bounded-json.ts';
import { errorMessage } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import {
  type CommandName,
  LIVE_CHUNK,
  type LiveDeviceMessage,
  type LiveFormat,
  type LiveViewerMessage,
  liveValidators,
} from '../../contract/index.ts';

/** the bounds of the live view */
export interface LiveSettings {
  /** viewers of one camera (one format) at once */
  viewersPerCamera: number;
  /** bytes waiting to be sent to one viewer: past this the viewer is cut, not the stream */
  bufferedBytesPerViewer: number;
  /** cameras of one device streamed at once */
  streamsPerDevice: number;
  /** live streams of all devices at once */
  streams: number;
  /** the box's stream is closed this long after the last viewer left */
  lingerMs: number;
  /** the box must open its socket this soon after `live-start` */
  startTimeoutMs: number;
  /** the fragments since the last key frame kept for viewers who join (beyond: they wait for the next one) */
  keyCacheBytes: number;
  /** a ping every this often; a peer that answered none since the previous one is cut */
  pingMs: number;
}

export const DEFAULT_LIVE_SETTINGS: LiveSettings = {
  viewersPerCamera: 64,
  bufferedBytesPerViewer: 4 * 1024 * 1024,
  streamsPerDevice: 4,
  streams: 256,
  lingerMs: 3_000,
  startTimeoutMs: 10_000,
  keyCacheBytes: 4 * 1024 * 1024,
  pingMs: 15_000,
};

/** WebSocket close codes the viewer (and the box) is sent, with the reason as text */
export const LIVE_CLOSE = {
  /** the box did not open its stream in time, or closed it for good */
  unavailable: 4404,
  /** too many viewers of the camera, or streams of the device */
  full: 4429,
  /** the viewer did not take the stream fast enough */
  tooSlow: 4008,
  /** the box's socket is not one the control plane asked for */
  notRequested: 4403,
  /** a message that breaks the contract */
  invalid: 4400,
} as const;

/** how a message to a device is sent (the control plane's CommandSender) */
export type SendCommand = (
  device: string,
  name: CommandName,
  args: Record<string, unknown>,
) => Promise<unknown>;

/** what the relay's API reports */
export interface LiveChannelView {
  device: string;
  camera: string;
  format: LiveFormat;
  state: 'starting' | 'live' | 'offline';
  viewers: number;
  boxConnected: boolean;
}

interface Viewer {
  socket: WebSocket;
  /** media is held back until a key frame (joined while none was cached) */
  needsKey: boolean;
}

const OPEN = 1;
const MAX_TEXT_BYTES = 2048;

function streamId(): string {
  return randomBytes(12).toString('base64url');
}

/**
 * One camera's live stream, in one format, shared by all its viewers: requested from the box
 * when the first viewer comes, closed `lingerMs` after the last one leaves.
 */
class Channel {
  readonly viewers = new Set<Viewer>();
  stream = streamId();
  upstream: WebSocket | undefined;
  state: 'starting' | 'live' | 'offline' = 'starting';
  reason: string | undefined;
  mime: string | undefined;
  init: Buffer | undefined;
  /** the fragments since the last key frame, the key fragment first */
  keyCache: Buffer[] = [];
  keyCacheBytes = 0;
  lingerTimer: NodeJS.Timeout | undefined;
  startTimer: NodeJS.Timeout | undefined;
  retryTimer: NodeJS.Timeout | undefined;
  bytesIn = 0;

  constructor(
    readonly key: string,
    readonly device: string,
    readonly camera: string,
    readonly format: LiveFormat,
  ) {}
}

/**
 * The control plane's side of the live view. A viewer (a logged-in browser) asks for a camera;
 * the first one makes the relay send `live-start` to the box over MQTT, and the box opens an
 * outbound WebSocket with its credential and streams the camera over it. Every viewer of the
 * camera gets the same bytes: the init segment and the fragments since the last key frame at
 * once (the picture starts without waiting for the next key frame), then each fragment as it
 * comes. A viewer who falls more than `bufferedBytesPerViewer` behind is cut; the stream and the
 * others go on. When the camera or the box goes offline the viewers are told so, and the relay
 * asks again while they stay.
 *
 * Live streams are connections, not state: they live in the process that holds both sockets (a
 * box and its viewers meet on the replica the viewer reached; the box's socket names it).
 */
export class LiveRelay {
  private readonly channels = new Map<string, Channel>();
  private readonly pingTimer: NodeJS.Timeout;
  private readonly alive = new WeakSet<WebSocket>();
  private readonly sockets = new Set<WebSocket>();
  private closed = false;

  constructor(
    private readonly sendCommand: SendCommand,
    private readonly log: Logger,
    readonly settings: LiveSettings = DEFAULT_LIVE_SETTINGS,
  ) {
    this.pingTimer = setInterval(() => this.ping(), settings.pingMs);
    this.pingTimer.unref();
  }

  list(): LiveChannelView[] {
    return [...this.channels.values()].map((c) => ({
      device: c.device,
      camera: c.camera,
      format: c.format,
      state: c.state,
      viewers: c.viewers.size,
      boxConnected: c.upstream !== undefined,
    }));
  }

  /** a logged-in viewer's socket for a camera */
  addViewer(device: string, camera: string, format: LiveFormat, socket: WebSocket): void {
    this.track(socket);
    const key = `${device}/${camera}/${format}`;
    let channel = this.channels.get(key);
    if (!channel) {
      const ofDevice = [...this.channels.values()].filter((c) => c.device === device).length;
      if (ofDevice >= this.settings.streamsPerDevice || this.channels.size >= this.settings.streams) {
        socket.close(
          LIVE_CLOSE.full,
          ofDevice >= this.settings.streamsPerDevice
            ? `device ${device} already streams ${ofDevice} cameras live, its limit`
            : 'the control plane relays as many live streams as it may',
        );
        return;
      }
      channel = new Channel(key, device, camera, format);
      this.channels.set(key, channel);
      this.request(channel);
    }
    if (channel.viewers.size >= this.settings.viewersPerCamera) {
      socket.close(LIVE_CLOSE.full, `camera ${camera} has ${channel.viewers.size} viewers, its limit`);
      return;
    }
    clearTimeout(channel.lingerTimer);
    channel.lingerTimer = undefined;
    const viewer: Viewer = { socket, needsKey: false };
    channel.viewers.add(viewer);
    const ch = channel;
    socket.on('message', () => {
      // viewers have nothing to say; ws bounds the size
    });
    socket.on('close', () => this.removeViewer(ch, viewer));
    socket.on('error', () => socket.terminate());
    this.sendText(ch, viewer, {
      type: 'status',
      state: ch.state,
      ...(ch.reason ? { reason: ch.reason } : {}),
    });
    if (ch.init && ch.mime) {
      this.sendText(ch, viewer, { type: 'init', mime: ch.mime });
      this.sendBinary(ch, viewer, ch.init);
      if (ch.keyCache.length === 0) viewer.needsKey = true;
      for (const f of ch.keyCache) this.sendBinary(ch, viewer, f);
    }
  }

  /** the box's socket for `stream`; refused unless the relay asked this device for it */
  addDevice(device: string, stream: string, socket: WebSocket): void {
    this.track(socket);
    const channel = [...this.channels.values()].find((c) => c.device === device && c.stream === stream);
    if (!channel || channel.upstream) {
      socket.close(LIVE_CLOSE.notRequested, `no live stream ${stream} was requested from device ${device}`);
      return;
    }
    clearTimeout(channel.startTimer);
    channel.upstream = socket;
    let expectInit = false;
    socket.on('message', (data: Buffer, binary: boolean) => {
      if (channel.upstream !== socket) return;
      if (!binary) {
        const m = this.parseDeviceMessage(data);
        if (!m) {
          socket.close(LIVE_CLOSE.invalid, 'a text frame that is not a live message of the contract');
          return;
        }
        if (m.type === 'init') {
          channel.mime = m.mime;
          expectInit = true;
        } else {
          this.setState(channel, m.state, m.reason);
        }
        return;
      }
      channel.bytesIn += data.length;
      const kind = data[0];
      const body = data.subarray(1);
      if (kind === LIVE_CHUNK.init && expectInit && channel.format === 'fmp4') {
        expectInit = false;
        channel.init = Buffer.from(body);
        channel.keyCache = [];
        channel.keyCacheBytes = 0;
        if (channel.state !== 'live') this.setState(channel, 'live', undefined);
        for (const v of channel.viewers) {
          this.sendText(channel, v, { type: 'init', mime: channel.mime! });
          this.sendBinary(channel, v, channel.init);
          v.needsKey = true;
        }
        return;
      }
      if ((kind === LIVE_CHUNK.keyFragment || kind === LIVE_CHUNK.fragment) && channel.init) {
        const key = kind === LIVE_CHUNK.keyFragment;
        this.cacheFragment(channel, body, key);
        for (const v of channel.viewers) {
          if (v.needsKey && !key) continue;
          v.needsKey = false;
          this.sendBinary(channel, v, body);
        }
        return;
      }
      if (kind === LIVE_CHUNK.mpegts && channel.format === 'mpeg1') {
        if (channel.state !== 'live') this.setState(channel, 'live', undefined);
        for (const v of channel.viewers) this.sendBinary(channel, v, body);
        return;
      }
      socket.close(LIVE_CLOSE.invalid, `a binary frame of kind ${kind} is not expected now`);
    });
    socket.on('error', () => socket.terminate());
    socket.on('close', (code, reason) => {
      if (channel.upstream !== socket) return;
      channel.upstream = undefined;
      channel.init = undefined;
      channel.keyCache = [];
      channel.keyCacheBytes = 0;
      if (this.channels.get(channel.key) !== channel || channel.viewers.size === 0) return;
      const why = reason.toString().slice(0, 200);
      this.setState(
        channel,
        'offline',
        `the box closed the stream (${code}${why ? `: ${why}` : ''}); asking it again`,
      );
      channel.retryTimer = setTimeout(() => this.request(channel), 2_000);
    });
  }

  /** closes every socket (the API is closing) */
  close(): void {
    this.closed = true;
    clearInterval(this.pingTimer);
    for (const c of this.channels.values()) this.clearTimers(c);
    for (const s of this.sockets) s.terminate();
    this.channels.clear();
  }

  private track(socket: WebSocket): void {
    this.sockets.add(socket);
    this.alive.add(socket);
    socket.on('pong', () => this.alive.add(socket));
    socket.once('close', () => this.sockets.delete(socket));
  }

  private ping(): void {
    for (const s of this.sockets) {
      if (!this.alive.has(s)) {
        s.terminate();
        continue;
      }
      this.alive.delete(s);
      if (s.readyState === OPEN) s.ping();
    }
  }

  private parseDeviceMessage(data: Buffer): LiveDeviceMessage | undefined {
    if (data.length > MAX_TEXT_BYTES) return undefined;
    try {
      const value = parseBoundedJson(data.toString('utf8'), { maxBytes: MAX_TEXT_BYTES, maxDepth: 4 });
      return liveValidators.deviceMessage.check(value) ? value : undefined;
    } catch {
      return undefined;
    }
  }

  private cacheFragment(channel: Channel, body: Buffer, key: boolean): void {
    if (key) {
      channel.keyCache = [Buffer.from(body)];
      channel.keyCacheBytes = body.length;
      return;
    }
    if (channel.keyCache.length === 0) return;
    if (channel.keyCacheBytes + body.length > this.settings.keyCacheBytes) {
      channel.keyCache = [];
      channel.keyCacheBytes = 0;
      return;
    }
    channel.keyCache.push(Buffer.from(body));
    channel.keyCacheBytes += body.length;
  }

  /** sends `live-start` for a new stream id; the box must connect within startTimeoutMs */
  private request(channel: Channel): void {
    if (this.closed || this.channels.get(channel.key) !== channel) return;
    channel.stream = streamId();
    this.setState(channel, 'starting', undefined);
    this.sendCommand(channel.device, 'live-start', {
      stream: channel.stream,
      camera: channel.camera,
      format: channel.format,
    }).catch((err) => {
      this.log.warn({ device: channel.device, err: errorMessage(err) }, 'live-start not sent');
    });
    clearTimeout(channel.startTimer);
    channel.startTimer = setTimeout(() => {
      if (channel.upstream || this.channels.get(channel.key) !== channel) return;
      this.stopOnBox(channel);
      this.setState(
        channel,
        'offline',
        `device ${channel.device} did not open the stream within ${this.settings.startTimeoutMs / 1000} s: it is offline, or refused (its command result says why); asking again`,
      );
      channel.retryTimer = setTimeout(() => this.request(channel), this.settings.startTimeoutMs);
    }, this.settings.startTimeoutMs);
  }

  private stopOnBox(channel: Channel): void {
    this.sendCommand(channel.device, 'live-stop', { stream: channel.stream }).catch((err) => {
      this.log.warn({ device: channel.device, err: errorMessage(err) }, 'live-stop not sent');
    });
  }

  private setState(channel: Channel, state: Channel['state'], reason: string | undefined): void {
    if (channel.state === state && channel.reason === reason) return;
    channel.state = state;
    channel.reason = reason;
    for (const v of channel.viewers)
      this.sendText(channel, v, { type: 'status', state, ...(reason ? { reason } : {}) });
  }

  private removeViewer(channel: Channel, viewer: Viewer): void {
    if (channel.viewers.delete(viewer)) this.lingerIfEmpty(channel);
  }

  /** with no viewer left, the box's stream is closed after `lingerMs` unless one comes back */
  private lingerIfEmpty(channel: Channel): void {
    if (channel.viewers.size > 0) return;
    clearTimeout(channel.lingerTimer);
    channel.lingerTimer = setTimeout(() => {
      if (channel.viewers.size > 0 || this.channels.get(channel.key) !== channel) return;
      this.channels.delete(channel.key);
      this.clearTimers(channel);
      if (channel.upstream) channel.upstream.close(1000, 'no viewers left');
      else this.stopOnBox(channel);
      this.log.info(
        { device: channel.device, camera: channel.camera, format: channel.format, bytes: channel.bytesIn },
        'live stream closed: no viewers left',
      );
    }, this.settings.lingerMs);
  }

  private clearTimers(channel: Channel): void {
    clearTimeout(channel.lingerTimer);
    clearTimeout(channel.startTimer);
    clearTimeout(channel.retryTimer);
  }

  private sendText(channel: Channel, viewer: Viewer, m: LiveViewerMessage): void {
    this.sendBinaryOrText(channel, viewer, JSON.stringify(m));
  }

  private sendBinary(channel: Channel, viewer: Viewer, bytes: Buffer): void {
    this.sendBinaryOrText(channel, viewer, bytes);
  }

  private sendBinaryOrText(channel: Channel, viewer: Viewer, data: Buffer | string): void {
    const s = viewer.socket;
    if (s.readyState !== OPEN) return;
    if (s.bufferedAmount + data.length > this.settings.bufferedBytesPerViewer) {
      channel.viewers.delete(viewer);
      s.close(
        LIVE_CLOSE.tooSlow,
        `more than ${this.settings.bufferedBytesPerViewer} bytes of the stream waited for this viewer`,
      );
      // a viewer who never reads may never finish the close handshake
      setTimeout(() => s.terminate(), 2_000).unref();
      this.lingerIfEmpty(channel);
      return;
    }
    s.send(data, { binary: typeof data !== 'string' });
  }
}
