import { MAX_PAYLOAD_BYTES } from '../../contract/index.ts';
import type { SqlAccess } from './sql-access.ts';

/** a message that follows the contract but could not be stored, kept raw with why */
export interface QuarantineEntry {
  device: string;
  topic: string;
  /** a label of `argus_ingest_quarantined_total` (control-plane/metrics.ts) */
  reason: string;
  /** what failed, e.g. the database's error */
  detail: string;
  /** the message's text as received */
  payload: string;
  /** ms since the epoch */
  receivedAt: number;
}

export interface QuarantinedMessage extends QuarantineEntry {
  /** position in the quarantine, newest largest: pass the last one of a page as `before` */
  id: number;
}

/** characters kept of a message's text (a payload is at most MAX_PAYLOAD_BYTES), topic and detail */
const MAX_TEXT = { payload: MAX_PAYLOAD_BYTES, topic: 256, detail: 1000 } as const;

/**
 * Text that every backend stores: at most `max` characters, no NUL (PostgreSQL cannot store it in
 * text) and no unpaired surrogate half left by the cut
 */
function storable(text: string, max: number): string {
  return text.slice(0, max).replaceAll('\u0000', '\uFFFD').replace(LONE_SURROGATE, '\uFFFD');
}
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

interface QuarantineRow {
  id: number | string;
  device: string;
  topic: string;
  reason: string;
  detail: string;
  payload: string;
  received_at: number | string;
}

/**
 * The quarantine: messages that failed on their own while the database answered (refused by the
 * database, a conflicting duplicate, any other error), kept so that an admin can see what a
 * device sent, while ingest acknowledges them and goes on (table `quarantine`, migration 2)
 */
export class QuarantineStore {
  constructor(private readonly sql: SqlAccess) {}

  /** keeps the messages, in one transaction */
  async add(entries: readonly QuarantineEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const { p } = this.sql;
    await this.sql.write(
      entries.map((e) => ({
        sql: `INSERT INTO quarantine (device, topic, reason, detail, payload, received_at)
          VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)})`,
        params: [
          e.device,
          storable(e.topic, MAX_TEXT.topic),
          e.reason,
          storable(e.detail, MAX_TEXT.detail),
          storable(e.payload, MAX_TEXT.payload),
          e.receivedAt,
        ],
      })),
    );
  }

  /** newest first; `before` is the `id` of the previous page's last message */
  async list(page: { before?: number | undefined; limit: number }): Promise<QuarantinedMessage[]> {
    const { p } = this.sql;
    const rows = await this.sql.read<QuarantineRow>(
      page.before === undefined
        ? `SELECT * FROM quarantine ORDER BY id DESC LIMIT ${p(1)}`
        : `SELECT * FROM quarantine WHERE id < ${p(1)} ORDER BY id DESC LIMIT ${p(2)}`,
      page.before === undefined ? [page.limit] : [page.before, page.limit],
    );
    return rows.map((r) => ({
      id: Number(r.id),
      device: r.device,
      topic: r.topic,
      reason: r.reason,
      detail: r.detail,
      payload: r.payload,
      receivedAt: Number(r.received_at),
    }));
  }
}
