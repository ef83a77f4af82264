import type { StoredEventView } from './types.ts';

type Message = StoredEventView['event'];

/** the messages of one event (one track in one rule): new, its updates, its end */
export interface Incident {
  key: string;
  device: string;
  messages: StoredEventView[];
  /** the message with the highest seq */
  latest: Message;
  /** the latest message that carries a snapshot */
  withSnapshot: Message | undefined;
  /** cursor of the newest stored message: the order of the list */
  lastCursor: number;
}

export const incidentKey = (e: Message) => `${e.device}\u0000${e.id}`;

/**
 * Groups stored messages into incidents, newest stored first. `into` is updated in place (a live
 * message joins its incident) and the sorted list returned.
 */
export function groupIncidents(messages: StoredEventView[], into = new Map<string, Incident>()): Incident[] {
  for (const m of messages) {
    const key = incidentKey(m.event);
    const cursor = Number(m.cursor);
    const known = into.get(key);
    if (known) {
      if (known.messages.some((x) => x.cursor === m.cursor)) continue;
      known.messages.push(m);
      known.messages.sort((a, b) => a.event.seq - b.event.seq);
      known.latest = known.messages.at(-1)!.event;
      known.withSnapshot = [...known.messages].reverse().find((x) => x.event.snapshot)?.event;
      known.lastCursor = Math.max(known.lastCursor, cursor);
    } else {
      into.set(key, {
        key,
        device: m.event.device,
        messages: [m],
        latest: m.event,
        withSnapshot: m.event.snapshot ? m.event : undefined,
        lastCursor: cursor,
      });
    }
  }
  return [...into.values()].sort((a, b) => b.lastCursor - a.lastCursor);
}

/** the first message's start (the new), else the latest's */
export const startedAt = (i: Incident) => i.messages[0]!.event.startedAt;

export function describe(e: Message): string {
  const where = e.zone
    ? ` in ${e.zone}`
    : e.line
      ? ` across ${e.line}${e.direction ? ` (${e.direction})` : ''}`
      : '';
  const track = e.trackId >= 0 ? ` #${e.trackId}` : '';
  return `${e.ruleType} ${e.rule}: ${e.label}${track}${where}`;
}
