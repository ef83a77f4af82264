import { EventEmitter } from 'node:events';
import type { StoredEvent } from './storage/repository.ts';

/** newly stored events, for live streams; listeners are called after the transaction committed */
export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  publish(events: readonly StoredEvent[]): void {
    for (const e of events) this.emitter.emit('event', e);
  }

  subscribe(listener: (event: StoredEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }
}
