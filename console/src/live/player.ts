import JSMpeg from '@cycjimmy/jsmpeg-player';

/**
 * The live view of one camera, self-contained: `mountLivePlayer(element, {device, camera})` adds
 * the picture and a status line to `element` and returns a handle to stop it. It opens one
 * WebSocket to the control plane (same origin; the session cookie authenticates it) and plays:
 *
 * - `fmp4` (the camera's own H.264 as fragmented MP4) through Media Source Extensions in a
 *   <video>, kept within a second of the live edge;
 * - `mpeg1` (MPEG-TS) through JSMpeg on a <canvas>, for browsers without MSE;
 * - `auto` (default): fmp4 where MediaSource plays H.264, else mpeg1.
 *
 * The status line says what is going on: connecting, live, the camera or box offline (with the
 * control plane's reason), or that the viewer is not logged in.
 */

export type LiveFormatChoice = 'auto' | 'fmp4' | 'mpeg1';
export type LivePlayerState = 'connecting' | 'starting' | 'live' | 'offline' | 'refused' | 'stopped';

export interface LivePlayerOptions {
  device: string;
  camera: string;
  format?: LiveFormatChoice;
  /** the control plane's origin (default: this page's) */
  origin?: string;
  onState?: (state: LivePlayerState, reason: string | undefined) => void;
}

export interface LivePlayerStats {
  format: 'fmp4' | 'mpeg1';
  state: LivePlayerState;
  reason: string | undefined;
  /** frames decoded so far (getVideoPlaybackQuality, or JSMpeg's decoder) */
  framesDecoded: number;
  /** seconds of media played (the video's currentTime, or JSMpeg's) */
  currentTime: number;
  /** ms from mounting to the first picture */
  firstFrameMs: number | undefined;
  bytes: number;
}

export interface LivePlayer {
  stop(): void;
  stats(): LivePlayerStats;
}

type ViewerMessage =
  | { type: 'init'; mime: string }
  | { type: 'status'; state: 'starting' | 'live' | 'offline' | 'ended'; reason?: string };

/** behind the live edge by more than this, the video jumps forward */
const MAX_LAG_S = 1.0;
/** media kept behind the playhead */
const KEEP_BEHIND_S = 10;
/** pieces waiting to be appended (a hidden tab): beyond this the stream starts over */
const MAX_QUEUED = 300;
const RECONNECT_MS = 2_000;

const H264_PROBE = 'video/mp4; codecs="avc1.42E01E"';

export function mseSupported(): boolean {
  return typeof MediaSource !== 'undefined' && MediaSource.isTypeSupported(H264_PROBE);
}

function liveUrl(o: LivePlayerOptions, format: 'fmp4' | 'mpeg1'): string {
  const origin = o.origin ?? location.origin;
  const ws = origin.replace(/^http/, 'ws');
  return `${ws}/api/v1/devices/${encodeURIComponent(o.device)}/cameras/${encodeURIComponent(o.camera)}/live?format=${format}`;
}

function refusalText(code: number, reason: string): string {
  if (reason) return reason;
  if (code === 1006) return 'cannot connect: not logged in, or no access to this camera';
  return `the stream closed (${code})`;
}

export function mountLivePlayer(container: HTMLElement, o: LivePlayerOptions): LivePlayer {
  const format: 'fmp4' | 'mpeg1' =
    o.format === 'fmp4' || o.format === 'mpeg1' ? o.format : mseSupported() ? 'fmp4' : 'mpeg1';
  const mountedAt = performance.now();
  const figure = document.createElement('figure');
  figure.className = 'argus-live';
  figure.style.margin = '0';
  const status = document.createElement('p');
  status.setAttribute('role', 'status');
  status.setAttribute('aria-live', 'polite');
  status.className = 'argus-live-status';
  const label = `live view of camera ${o.camera} of ${o.device}`;
  const stats: LivePlayerStats = {
    format,
    state: 'connecting',
    reason: undefined,
    framesDecoded: 0,
    currentTime: 0,
    firstFrameMs: undefined,
    bytes: 0,
  };
  let stopped = false;
  let socket: WebSocket | undefined;
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined;

  const setState = (state: LivePlayerState, reason?: string) => {
    stats.state = state;
    stats.reason = reason;
    const text: Record<LivePlayerState, string> = {
      connecting: 'connecting…',
      starting: 'waiting for the camera…',
      live: 'live',
      offline: `offline${reason ? `: ${reason}` : ''}`,
      refused: reason ?? 'refused',
      stopped: 'stopped',
    };
    status.textContent = `${format === 'fmp4' ? 'H.264' : 'MPEG-1'} · ${text[state]}`;
    status.dataset.state = state;
    o.onState?.(state, reason);
  };
  const firstFrame = () => {
    stats.firstFrameMs ??= Math.round(performance.now() - mountedAt);
  };

  /** opens the socket; `onMessage` gets text frames parsed and binary frames as they come */
  const connect = (
    onText: (m: ViewerMessage) => void,
    onBinary: (b: ArrayBuffer) => void,
    onOpen?: () => void,
  ) => {
    let opened = false;
    const s = new WebSocket(liveUrl(o, format));
    s.binaryType = 'arraybuffer';
    socket = s;
    s.onopen = () => {
      opened = true;
      onOpen?.();
    };
    s.onmessage = (ev: MessageEvent<string | ArrayBuffer>) => {
      if (typeof ev.data === 'string') {
        const m = JSON.parse(ev.data) as ViewerMessage;
        if (m.type === 'status') setState(m.state === 'ended' ? 'offline' : m.state, m.reason);
        onText(m);
        return;
      }
      stats.bytes += ev.data.byteLength;
      onBinary(ev.data);
    };
    s.onclose = (ev) => {
      if (stopped || socket !== s) return;
      if (!opened || ev.code === 4429 || ev.code === 4403) {
        setState('refused', refusalText(ev.code, ev.reason));
        return;
      }
      setState('offline', refusalText(ev.code, ev.reason));
      reconnectTimer = setTimeout(() => restart(), RECONNECT_MS);
    };
  };

  let restart: () => void;
  let teardown: () => void;

  if (format === 'fmp4') {
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    video.setAttribute('aria-label', label);
    video.style.width = '100%';
    video.style.background = '#000';
    figure.append(video);
    let media: MediaSource | undefined;
    let buffer: SourceBuffer | undefined;
    let mime: string | undefined;
    let queue: ArrayBuffer[] = [];
    let started = false;
    let objectUrl: string | undefined;

    const resetMedia = () => {
      buffer = undefined;
      queue = [];
      started = false;
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      objectUrl = undefined;
      media = undefined;
      video.removeAttribute('src');
      video.load();
    };
    const pump = () => {
      if (!buffer || buffer.updating) return;
      const ranges = buffer.buffered;
      if (started && ranges.length > 0 && video.currentTime - ranges.start(0) > 2 * KEEP_BEHIND_S) {
        buffer.remove(0, video.currentTime - KEEP_BEHIND_S);
        return;
      }
      const next = queue.shift();
      if (next) buffer.appendBuffer(next);
    };
    const onUpdated = () => {
      if (!buffer) return;
      const ranges = buffer.buffered;
      if (ranges.length > 0) {
        const end = ranges.end(ranges.length - 1);
        if (!started) {
          started = true;
          video.currentTime = ranges.start(ranges.length - 1);
          void video.play().catch(() => undefined);
        } else if (end - video.currentTime > MAX_LAG_S) {
          video.currentTime = Math.max(ranges.start(ranges.length - 1), end - 0.1);
        }
      }
      pump();
    };
    const openMedia = (m: string) => {
      resetMedia();
      mime = m;
      const ms = new MediaSource();
      media = ms;
      objectUrl = URL.createObjectURL(ms);
      video.src = objectUrl;
      ms.addEventListener('sourceopen', () => {
        if (media !== ms) return;
        buffer = ms.addSourceBuffer(m);
        buffer.mode = 'segments';
        buffer.addEventListener('updateend', onUpdated);
        buffer.addEventListener('error', () =>
          setState('offline', 'the browser could not decode the stream'),
        );
        pump();
      });
    };
    const countFrames = () => {
      if (stopped) return;
      const q = video.getVideoPlaybackQuality?.();
      const frames = q ? q.totalVideoFrames - q.droppedVideoFrames : 0;
      stats.framesDecoded = q ? q.totalVideoFrames : 0;
      stats.currentTime = video.currentTime;
      if (frames > 0) firstFrame();
      if ('requestVideoFrameCallback' in video) video.requestVideoFrameCallback(countFrames);
    };
    if ('requestVideoFrameCallback' in video) video.requestVideoFrameCallback(countFrames);
    const statsTimer = setInterval(countFrames, 250);
    restart = () => {
      resetMedia();
      connect(
        (m) => {
          // a new init segment (the box restarted its source): times start over, so does the buffer
          if (m.type === 'init') openMedia(m.mime);
        },
        (b) => {
          if (!mime) return;
          queue.push(b);
          if (queue.length > MAX_QUEUED) {
            socket?.close();
            return;
          }
          pump();
        },
      );
    };
    teardown = () => {
      clearInterval(statsTimer);
      resetMedia();
    };
  } else {
    const canvas = document.createElement('canvas');
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', label);
    canvas.style.width = '100%';
    canvas.style.background = '#000';
    figure.append(canvas);
    let player: { destroy(): void; currentTime: number } | undefined;
    /** JSMpeg's source: the bytes of this player's socket */
    class SocketSource {
      readonly streaming = true;
      established = false;
      completed = false;
      progress = 0;
      private destination: { write(data: ArrayBuffer): void } | undefined;
      constructor(
        _url: string,
        private readonly options: { hookOnEstablished?: () => void },
      ) {}
      connect(destination: { write(data: ArrayBuffer): void }) {
        this.destination = destination;
      }
      start() {
        connect(
          () => undefined,
          (b) => {
            if (!this.established) {
              this.established = true;
              this.options.hookOnEstablished?.();
            }
            this.destination?.write(b);
          },
          () => {
            this.progress = 1;
          },
        );
      }
      resume() {}
      destroy() {
        socket?.close();
      }
    }
    restart = () => {
      player?.destroy();
      player = new JSMpeg.Player('', {
        canvas,
        source: SocketSource,
        audio: false,
        pauseWhenHidden: false,
        videoBufferSize: 2 * 1024 * 1024,
        onVideoDecode: () => {
          stats.framesDecoded++;
          firstFrame();
        },
      });
    };
    const statsTimer = setInterval(() => {
      stats.currentTime = player?.currentTime ?? 0;
    }, 250);
    teardown = () => {
      clearInterval(statsTimer);
      player?.destroy();
      player = undefined;
    };
  }
  figure.append(status);
  container.append(figure);
  setState('connecting');
  restart();
  return {
    stop() {
      if (stopped) return;
      stopped = true;
      clearTimeout(reconnectTimer);
      socket?.close(1000, 'viewer left');
      teardown();
      setState('stopped');
      figure.remove();
    },
    stats: () => ({ ...stats }),
  };
}
