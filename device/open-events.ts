import { parseBoundedJson } from '../common/bounded-json.ts';
import type { Logger } from '../common/logger.ts';
import { type EventMessage, MAX_PAYLOAD_BYTES, validators } from '../contract/index.ts';
import { iou } from '../inference/nms.ts';
import type { HostEvent } from './camera-host.ts';
import type { OpenEventRecord } from './spool.ts';

/** a new event's box must overlap the carried one's this much to be the same object */
const SAME_PLACE_IOU = 0.3;
const RESTART_REASON = 'agent restarted';

type Message = HostEvent['message'];

/** same camera, rule, place (zone, line, direction) and class; for one object, overlapping boxes */
function samePlace(last: EventMessage, next: Message): boolean {
  if (
    last.camera !== next.camera ||
    last.rule !== next.rule ||
    last.ruleType !== next.ruleType ||
    last.label !== next.label ||
    last.zone !== next.zone ||
    last.line !== next.line ||
    last.direction !== next.direction
  )
    return false;
  if (last.trackId === -1 || next.trackId === -1) return last.trackId === next.trackId;
  return !last.box || !next.box || iou(last.box, next.box) >= SAME_PLACE_IOU;
}

/**
 * The events a previous run of the agent left open (its spool's record of them, e.g. after a
 * SIGKILL), carried into this run. For `windowS` after the start, a camera's `new` event for the
 * same rule and place as a carried one (a parked car still parked) continues the carried event
 * instead of opening a duplicate: its messages keep the carried id and start, their `seq` follows
 * on, and its `new` becomes an `update`. What is not continued by then ends (`end`, `after.reason`
 * "agent restarted"), as does at once a carried event of a camera this run does not have.
 */
export class CarriedEvents {
  private readonly carried = new Map<string, EventMessage>();
  /** a continued pipeline event id → the carried event it continues */
  private readonly aliases = new Map<string, { id: string; startedAt: string; seqOffset: number }>();

  /** `forget` drops a record that cannot be read (it cannot be ended either) */
  constructor(records: readonly OpenEventRecord[], forget: (id: string) => void, log: Logger) {
    for (const r of records) {
      try {
        const message = validators.events.parse(
          parseBoundedJson(r.message, { maxBytes: MAX_PAYLOAD_BYTES, maxDepth: 32 }),
          'recorded open event',
        );
        this.carried.set(r.id, message);
      } catch (err) {
        forget(r.id);
        log.warn(
          { id: r.id, camera: r.camera, err: (err as Error).message },
          'unreadable record of an open event: forgotten, it cannot be ended',
        );
      }
    }
    if (this.carried.size > 0)
      log.info(
        { events: this.carried.size },
        'events left open by the previous run: continuing or ending them',
      );
  }

  /** carried events neither continued nor ended yet */
  get size(): number {
    return this.carried.size;
  }

  /** `e` as this run spools it: continuing a carried event when it is the same, else unchanged */
  adopt(e: HostEvent): HostEvent {
    const m = e.message;
    let alias = this.aliases.get(m.id);
    if (!alias && m.phase === 'new') {
      for (const [id, last] of this.carried) {
        if (!samePlace(last, m)) continue;
        this.carried.delete(id);
        alias = { id, startedAt: last.startedAt, seqOffset: last.seq + 1 };
        this.aliases.set(m.id, alias);
        break;
      }
    }
    if (!alias) return e;
    if (m.phase === 'end') this.aliases.delete(m.id);
    return {
      ...e,
      message: {
        ...m,
        id: alias.id,
        seq: m.seq + alias.seqOffset,
        phase: m.phase === 'new' ? 'update' : m.phase,
        startedAt: alias.startedAt,
      },
    };
  }

  /** ends the carried events of the cameras `keep` does not accept, or all of them; returns their `end` */
  endCarried(keep: (camera: string) => boolean = () => false): HostEvent[] {
    const out: HostEvent[] = [];
    const at = new Date().toISOString();
    for (const [id, last] of this.carried) {
      if (keep(last.camera)) continue;
      this.carried.delete(id);
      const { v: _v, device: _d, cameraSeq: _c, snapshot: _s, counters: _k, ...rest } = last;
      out.push({
        camera: last.camera,
        message: {
          ...rest,
          seq: last.seq + 1,
          phase: 'end',
          at,
          endedAt: at,
          before: last.after,
          after: { reason: RESTART_REASON },
        },
      });
    }
    return out;
  }
}
