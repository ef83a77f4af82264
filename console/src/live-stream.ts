import { useEffect, useState } from 'preact/hooks';
import type { StatusChangeView, StoredEventView } from './types.ts';

export type StreamState = 'connecting' | 'live' | 'reconnecting';
type Listener<T> = (value: T) => void;

/**
 * One Server-Sent Events connection per tab (GET /api/v1/events/stream, the session cookie
 * authenticates it) shared by every page: the control plane bounds the open streams, so a tab
 * takes one whatever its pages show. Opened on the first subscriber, closed with the last.
 */
class EventHub {
  private source: EventSource | null = null;
  private readonly events = new Set<Listener<StoredEventView>>();
  private readonly statuses = new Set<Listener<StatusChangeView>>();
  private readonly states = new Set<Listener<StreamState>>();
  state: StreamState = 'connecting';

  private open() {
    if (this.source) return;
    const source = new EventSource('/api/v1/events/stream');
    this.source = source;
    source.addEventListener('open', () => this.setState('live'));
    source.addEventListener('error', () => this.setState('reconnecting'));
    source.addEventListener('event', (m) => {
      const e = JSON.parse((m as MessageEvent<string>).data) as StoredEventView;
      for (const f of this.events) f(e);
    });
    source.addEventListener('status', (m) => {
      const s = JSON.parse((m as MessageEvent<string>).data) as StatusChangeView;
      for (const f of this.statuses) f(s);
    });
  }

  private setState(s: StreamState) {
    this.state = s;
    for (const f of this.states) f(s);
  }

  private closeIfUnused() {
    if (this.events.size + this.statuses.size + this.states.size > 0 || !this.source) return;
    this.source.close();
    this.source = null;
    this.state = 'connecting';
  }

  on<K extends 'event' | 'status' | 'state'>(
    kind: K,
    f: Listener<K extends 'event' ? StoredEventView : K extends 'status' ? StatusChangeView : StreamState>,
  ): () => void {
    const set = (kind === 'event' ? this.events : kind === 'status' ? this.statuses : this.states) as Set<
      typeof f
    >;
    set.add(f);
    this.open();
    return () => {
      set.delete(f);
      this.closeIfUnused();
    };
  }
}

export const hub = new EventHub();

export function useStreamState(): StreamState {
  const [state, setState] = useState<StreamState>(hub.state);
  useEffect(() => {
    setState(hub.state);
    return hub.on('state', setState);
  }, []);
  return state;
}
