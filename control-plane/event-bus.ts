import { EventEmitter } from 'node:events';
import type { StatusChange } from './storage/device-history.ts';
import type { StoredEvent } from './storage/repository.ts';

/** a stored event as the API serves it, in pages and in live streams */
export function eventView(e: StoredEvent) {
  return { cursor: String(e.cursor), receivedAt: new Date(e.receivedAt).toISOString(), event: e.event };
}

/** the Server-Sent Events message of a stored event: its cursor as id, its view as data */
export function sseFrame(e: StoredEvent): string {
  return `id: ${e.cursor}\nevent: event\ndata: ${JSON.stringify(eventView(e))}\n\n`;
}

/** a camera status or device availability change as the API serves it, in the history and live */
export function statusView(c: StatusChange) {
  return {
    kind: c.kind,
    device: c.device,
    camera: c.camera,
    state: c.state,
    at: c.at,
    reason: c.reason,
    source: c.source,
    receivedAt: new Date(c.receivedAt).toISOString(),
  };
}

/** the Server-Sent Events message of a status change (no id: ids are event cursors) */
export function statusFrame(c: StatusChange): string {
  return `event: status\ndata: ${JSON.stringify(statusView(c))}\n\n`;
}

/** where a live stream's frames go: an HTTP response */
export interface StreamOutput {
  /** false once the output buffers more than its high-water mark */
  write(frame: string): boolean;
  /** bytes written but not yet sent */
  readonly writableLength: number;
  destroy(): void;
}

/** a live stream fed by the bus */
export interface LiveStream {
  /** writes a frame of the stream's own (a comment such as a keepalive); ignored once closed or cut */
  send(frame: string): void;
  /** stops the event frames; the output stays open */
  close(): void;
}

interface Subscriber {
  output: StreamOutput;
  wants: (event: StoredEvent) => boolean;
  wantsStatus: (change: StatusChange) => boolean;
}

/**
 * Newly stored events (and status changes), published after their transaction committed: to listeners, and as SSE frames
 * to live streams. A frame is built once per event and the same string written to every stream that
 * wants the event. A stream whose output holds more than `maxBacklogBytes` unsent
 * (`limits.http.streamBacklogBytes`) is cut:
 * its output destroyed (the response's `close` follows) and `streamsCut` counts it.
 */
export class EventBus {
  private readonly emitter = new EventEmitter();
  private readonly subscribers = new Set<Subscriber>();
  private cut = 0;

  constructor(private readonly maxBacklogBytes: number) {
    this.emitter.setMaxListeners(0);
  }

  /** live streams cut because their client did not read */
  get streamsCut(): number {
    return this.cut;
  }

  publish(events: readonly StoredEvent[]): void {
    for (const e of events) {
      this.emitter.emit('event', e);
      let frame: string | undefined;
      for (const s of this.subscribers) {
        if (!s.wants(e)) continue;
        frame ??= sseFrame(e);
        this.write(s, frame);
      }
    }
  }

  /** camera status and device availability changes, as SSE `event: status` frames */
  publishStatus(changes: readonly StatusChange[]): void {
    for (const c of changes) {
      let frame: string | undefined;
      for (const s of this.subscribers) {
        if (!s.wantsStatus(c)) continue;
        frame ??= statusFrame(c);
        this.write(s, frame);
      }
    }
  }

  subscribe(listener: (event: StoredEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }

  /**
   * writes the frame of every event `wants` accepts, and of every status change `wantsStatus`
   * accepts, to `output`, until closed or cut
   */
  openStream(
    output: StreamOutput,
    wants: (event: StoredEvent) => boolean,
    wantsStatus: (change: StatusChange) => boolean = () => false,
  ): LiveStream {
    const s: Subscriber = { output, wants, wantsStatus };
    this.subscribers.add(s);
    return {
      send: (frame) => {
        if (this.subscribers.has(s)) this.write(s, frame);
      },
      close: () => {
        this.subscribers.delete(s);
      },
    };
  }

  private write(s: Subscriber, frame: string): void {
    if (s.output.write(frame) || s.output.writableLength <= this.maxBacklogBytes) return;
    this.subscribers.delete(s);
    this.cut++;
    s.output.destroy();
  }
}
