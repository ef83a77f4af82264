import { randomUUID } from 'node:crypto';
import type { EventMessage } from '../../contract/index.ts';

/** a valid event message; `over` replaces fields */
export function eventMessage(over: Partial<EventMessage> = {}): EventMessage {
  const at = over.at ?? new Date().toISOString();
  return {
    v: 1,
    id: randomUUID(),
    seq: 0,
    phase: 'new',
    device: 'box-1',
    camera: 'cam-1',
    cameraSeq: 0,
    rule: 'left-road',
    ruleType: 'zone',
    label: 'person',
    trackId: 3,
    zone: 'left-road',
    startedAt: at,
    at,
    score: 0.8,
    box: [1, 2, 3, 4],
    before: { inside: false },
    after: { inside: true },
    ...over,
  };
}

/** a tiny valid JPEG header followed by `fill` */
export function jpeg(fill: string): Buffer {
  return Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.from(fill)]);
}
