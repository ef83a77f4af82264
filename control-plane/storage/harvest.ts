import type { HarvestReasonName as HarvestReason } from '../../contract/harvest.ts';
import type { SqlAccess } from './sql-access.ts';

/**
 * The metadata of harvested frames (table `harvested_frames`, migration 11): what boxes chose to
 * teach their model from. The JPEG's bytes live in the blob store under their sha256 (several rows
 * may share one blob: the same bytes uploaded twice). A frame is keyed by (device, id), the id
 * being the device's own; `site` is the device's `site` label when it uploaded the frame ('' when
 * it had none), so that a box moved to another site later does not move its old frames.
 */

export interface HarvestedFrame {
  device: string;
  id: string;
  site: string;
  camera: string;
  /** ms since the epoch, the box's clock */
  capturedAt: number;
  /** ms since the epoch, the control plane's clock */
  receivedAt: number;
  reasons: HarvestReason[];
  model: string;
  modelVersion: number;
  sha256: string;
  bytes: number;
  width: number;
  height: number;
}

export type PutHarvestOutcome = 'created' | 'unchanged' | 'conflict';

export interface HarvestPage {
  frames: HarvestedFrame[];
  /** pass as `after` (or `before`) for the next page; null on the last */
  next: string | null;
}

interface Row {
  device: string;
  id: string;
  site: string;
  camera: string;
  captured_at: number | string;
  received_at: number | string;
  reasons: string;
  model: string;
  model_version: number | string;
  sha256: string;
  bytes: number | string;
  width: number | string;
  height: number | string;
}

const COLUMNS =
  'device, id, site, camera, captured_at, received_at, reasons, model, model_version, sha256, bytes, width, height';

function frameOf(r: Row): HarvestedFrame {
  return {
    device: r.device,
    id: r.id,
    site: r.site,
    camera: r.camera,
    capturedAt: Number(r.captured_at),
    receivedAt: Number(r.received_at),
    reasons: r.reasons.split(',') as HarvestReason[],
    model: r.model,
    modelVersion: Number(r.model_version),
    sha256: r.sha256,
    bytes: Number(r.bytes),
    width: Number(r.width),
    height: Number(r.height),
  };
}

/** a page cursor: the frame's position in (received_at, device, id) order */
export const harvestCursorOf = (f: HarvestedFrame): string => `${f.receivedAt}.${f.device}.${f.id}`;
export const HARVEST_CURSOR = /^(\d{1,16})\.([a-z0-9][a-z0-9_-]{0,62})\.([A-Za-z0-9_-]{8,64})$/;

function parseCursor(cursor: string): [number, string, string] {
  const m = HARVEST_CURSOR.exec(cursor);
  if (!m) throw new Error(`"${cursor}" is not a harvest page cursor`);
  return [Number(m[1]), m[2]!, m[3]!];
}

export class HarvestStore {
  constructor(private readonly sql: SqlAccess) {}

  async get(device: string, id: string): Promise<HarvestedFrame | undefined> {
    const { p } = this.sql;
    const rows = await this.sql.read<Row>(
      `SELECT ${COLUMNS} FROM harvested_frames WHERE device = ${p(1)} AND id = ${p(2)}`,
      [device, id],
    );
    return rows[0] && frameOf(rows[0]);
  }

  /** stores the frame once: the same (device, id) again with the same bytes changes nothing, with other bytes is a conflict */
  async put(frame: HarvestedFrame): Promise<PutHarvestOutcome> {
    const { p } = this.sql;
    const [outcome] = await this.sql.write([
      {
        sql: `INSERT INTO harvested_frames (${COLUMNS})
          VALUES (${Array.from({ length: 13 }, (_, i) => p(i + 1)).join(', ')})
          ON CONFLICT (device, id) DO NOTHING`,
        params: [
          frame.device,
          frame.id,
          frame.site,
          frame.camera,
          frame.capturedAt,
          frame.receivedAt,
          frame.reasons.join(','),
          frame.model,
          frame.modelVersion,
          frame.sha256,
          frame.bytes,
          frame.width,
          frame.height,
        ],
      },
    ]);
    if (outcome!.changes > 0) return 'created';
    const existing = await this.get(frame.device, frame.id);
    return existing?.sha256 === frame.sha256 ? 'unchanged' : 'conflict';
  }

  /** the device's `site` label now ('' when it has none) */
  async siteOf(device: string): Promise<string> {
    const { p } = this.sql;
    const rows = await this.sql.read<{ value: string }>(
      `SELECT value FROM device_labels WHERE device = ${p(1)} AND name = 'site'`,
      [device],
    );
    return rows[0]?.value ?? '';
  }

  /** a page of the site's frames, newest received first; `before` is the previous page's `next` */
  async listSite(site: string, limit: number, before?: string): Promise<HarvestPage> {
    const { p } = this.sql;
    const position = before ? parseCursor(before) : undefined;
    const rows = await this.sql.read<Row>(
      `SELECT ${COLUMNS} FROM harvested_frames WHERE site = ${p(1)}
        ${position ? `AND (received_at, device, id) < (${p(2)}, ${p(3)}, ${p(4)})` : ''}
        ORDER BY received_at DESC, device DESC, id DESC LIMIT ${p(position ? 5 : 2)}`,
      position ? [site, ...position, limit + 1] : [site, limit + 1],
    );
    const frames = rows.slice(0, limit).map(frameOf);
    return { frames, next: rows.length > limit ? harvestCursorOf(frames.at(-1)!) : null };
  }

  /** a page of the site's frames, oldest received first (what the loop reads); `after` is the previous page's `next` */
  async siteInOrder(site: string, limit: number, after?: string): Promise<HarvestPage> {
    const { p } = this.sql;
    const position = after ? parseCursor(after) : undefined;
    const rows = await this.sql.read<Row>(
      `SELECT ${COLUMNS} FROM harvested_frames WHERE site = ${p(1)}
        ${position ? `AND (received_at, device, id) > (${p(2)}, ${p(3)}, ${p(4)})` : ''}
        ORDER BY received_at, device, id LIMIT ${p(position ? 5 : 2)}`,
      position ? [site, ...position, limit + 1] : [site, limit + 1],
    );
    const frames = rows.slice(0, limit).map(frameOf);
    return { frames, next: rows.length > limit ? harvestCursorOf(frames.at(-1)!) : null };
  }

  /** the oldest received frames (retention), from `after` on (a harvestCursorOf), received before `before` */
  async oldest(limit: number, o: { before?: number; after?: string } = {}): Promise<HarvestedFrame[]> {
    const { p } = this.sql;
    const params: (string | number)[] = [];
    const where: string[] = [];
    if (o.before !== undefined) {
      params.push(o.before);
      where.push(`received_at < ${p(params.length)}`);
    }
    if (o.after) {
      const [at, device, id] = parseCursor(o.after);
      params.push(at, device, id);
      where.push(
        `(received_at, device, id) > (${p(params.length - 2)}, ${p(params.length - 1)}, ${p(params.length)})`,
      );
    }
    params.push(limit);
    const rows = await this.sql.read<Row>(
      `SELECT ${COLUMNS} FROM harvested_frames ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY received_at, device, id LIMIT ${p(params.length)}`,
      params,
    );
    return rows.map(frameOf);
  }

  async totalBytes(): Promise<number> {
    const rows = await this.sql.read<{ total: number | string | null }>(
      'SELECT sum(bytes) AS total FROM harvested_frames',
    );
    return Number(rows[0]?.total ?? 0);
  }

  /** deletes the row; answers whether another row still holds its blob */
  async delete(device: string, id: string, sha256: string): Promise<{ blobInUse: boolean }> {
    const { p } = this.sql;
    await this.sql.write([
      { sql: `DELETE FROM harvested_frames WHERE device = ${p(1)} AND id = ${p(2)}`, params: [device, id] },
    ]);
    return { blobInUse: await this.blobInUse(sha256) };
  }

  async blobInUse(sha256: string): Promise<boolean> {
    const { p } = this.sql;
    const rows = await this.sql.read(`SELECT 1 AS x FROM harvested_frames WHERE sha256 = ${p(1)} LIMIT 1`, [
      sha256,
    ]);
    return rows.length > 0;
  }
}
