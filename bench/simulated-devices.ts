/**
 * What the benches' simulated devices send, as the device agent makes it, and the loopback
 * address each connects from (Linux routes 127.0.0.0/8 to lo, so the control plane's
 * per-address limits stay as shipped).
 */
import { timeOrderedId } from '../common/ids.ts';
import type { EventMessage, Telemetry } from '../contract/index.ts';

/** the loopback address device `i` connects from */
export function addressOf(i: number): string {
  return `127.10.${Math.floor(i / 250) + 1}.${(i % 250) + 1}`;
}

export function eventPayload(device: string, i: number): EventMessage {
  const at = new Date().toISOString();
  return {
    v: 1,
    // as the device agent makes them
    id: timeOrderedId(),
    seq: 0,
    phase: 'new',
    device,
    camera: `cam-${i % 4}`,
    cameraSeq: i,
    rule: 'left-road',
    ruleType: 'zone',
    label: 'person',
    trackId: i % 50,
    zone: 'left-road',
    startedAt: at,
    at,
    score: 0.83,
    box: [256.3, 217.8, 304.9, 307.1],
    before: { inside: false, occupancy: 0 },
    after: { inside: true, occupancy: 1 },
    counters: { 'left-road.occupancy': 1, 'road-crossing.in': 3 },
  };
}

export function telemetry(device: string): Telemetry {
  return {
    v: 1,
    device,
    at: new Date().toISOString(),
    uptimeS: 60,
    cpuPercent: 35,
    load1: 0.8,
    memoryRssMiB: 180,
    memoryUsedPercent: 41,
    diskFreeMiB: 20_000,
    temperatureC: 51,
    spool: { pending: 0, bytes: 0, dropped: 0 },
    cameras: [
      {
        id: 'cam-1',
        state: 'online',
        fpsIn: 10,
        fpsDetect: 5,
        detectLatencyMs: 14,
        drops: 0,
        motionSkippedShare: 0.3,
      },
    ],
  };
}
