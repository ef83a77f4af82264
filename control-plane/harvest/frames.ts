import { Readable } from 'node:stream';
import sharp, { type Metadata } from 'sharp';
import { type HarvestUploadQuery, MAX_HARVEST_BYTES } from '../../contract/harvest.ts';
import type { BlobStore } from '../artifacts/blob-store.ts';
import type { RetentionLimitSettings } from '../config.ts';
import { Refused } from '../refused.ts';
import type { KindReport } from '../retention/retention.ts';
import {
  type HarvestedFrame,
  type HarvestPage,
  HarvestStore,
  type PutHarvestOutcome,
} from '../storage/harvest.ts';
import type { SqlAccess } from '../storage/sql-access.ts';

const DAY_MS = 86_400_000;
const MiB = 1024 * 1024;
/** pixels of a harvested frame at most (8K UHD): the teacher decodes every one */
export const MAX_HARVEST_PIXELS = 7680 * 4320;
/** frames read per page by the loop's source and by retention */
const PAGE = 200;

/** one frame as the loop reads it */
export interface LoopFrame {
  id: string;
  capturedAt: string;
  jpeg: Buffer;
}

/** what the loop reads a site's harvested frames through (models/loop's source) */
export interface HarvestSource {
  frames(): AsyncIterable<LoopFrame>;
}

/**
 * The control plane's harvested frames: metadata in the database (HarvestStore), bytes in the
 * content-addressed blob store the artifact registry uses (control-plane/artifacts/blob-store.ts).
 * An upload is a JPEG the box's credential sent for itself: its header is read (format, size) and
 * it is refused unless it is one within MAX_HARVEST_PIXELS. Retention (`retention.harvest`)
 * deletes frames past their age, then the oldest past the size, rows first and then each blob no
 * other row holds.
 */
export class HarvestedFrames {
  readonly store: HarvestStore;

  constructor(
    sql: SqlAccess,
    readonly blobs: BlobStore,
    private readonly clock: () => number = Date.now,
  ) {
    this.store = new HarvestStore(sql);
  }

  /** stores an uploaded frame of `device`; a Refused (400) when the bytes are not a JPEG within bounds */
  async accept(
    device: string,
    id: string,
    meta: HarvestUploadQuery,
    jpeg: Buffer,
  ): Promise<{ outcome: PutHarvestOutcome; frame: HarvestedFrame }> {
    if (jpeg.length > MAX_HARVEST_BYTES)
      throw new Refused(`a harvested frame of ${jpeg.length} bytes, more than ${MAX_HARVEST_BYTES}`, 413);
    const { width, height } = await jpegSize(jpeg);
    const site = await this.store.siteOf(device);
    const blob = await this.blobs.put(Readable.from([jpeg]), MAX_HARVEST_BYTES);
    const frame: HarvestedFrame = {
      device,
      id,
      site,
      camera: meta.camera,
      capturedAt: Date.parse(meta.capturedAt),
      receivedAt: this.clock(),
      reasons: [...new Set(meta.reasons.split(','))] as HarvestedFrame['reasons'],
      model: meta.model,
      modelVersion: meta.modelVersion,
      sha256: blob.sha256,
      bytes: blob.bytes,
      width,
      height,
    };
    const outcome = await this.store.put(frame);
    if (outcome === 'conflict' && !(await this.store.blobInUse(blob.sha256)))
      await this.blobs.delete(blob.sha256);
    return {
      outcome,
      frame: outcome === 'unchanged' ? ((await this.store.get(device, id)) ?? frame) : frame,
    };
  }

  /** the frame's JPEG as a stream; undefined when its bytes are gone (retention) */
  open(frame: HarvestedFrame): Promise<Readable | undefined> {
    return this.blobs.get(frame.sha256);
  }

  list(site: string, limit: number, before?: string): Promise<HarvestPage> {
    return this.store.listSite(site, limit, before);
  }

  /**
   * The site's frames, oldest received first, read a page at a time, each JPEG read whole (at most
   * MAX_HARVEST_BYTES) only when the loop asks for it: what `runLoop` takes as its source
   */
  source(site: string): HarvestSource {
    return {
      frames: () => this.siteFrames(site),
    };
  }

  private async *siteFrames(site: string): AsyncGenerator<LoopFrame> {
    let after: string | undefined;
    for (;;) {
      const page = await this.store.siteInOrder(site, PAGE, after);
      for (const f of page.frames) {
        const stream = await this.open(f);
        if (!stream) continue;
        const chunks: Buffer[] = [];
        let bytes = 0;
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          bytes += chunk.length;
          if (bytes > MAX_HARVEST_BYTES) {
            stream.destroy();
            throw new Error(`harvested frame ${f.device}/${f.id} holds more than ${MAX_HARVEST_BYTES} bytes`);
          }
          chunks.push(chunk);
        }
        yield {
          id: `${f.device}.${f.id}`,
          capturedAt: new Date(f.capturedAt).toISOString(),
          jpeg: Buffer.concat(chunks),
        };
      }
      if (!page.next) return;
      after = page.next;
    }
  }

  /** retention of harvested frames (`retention.harvest`): by age, then the oldest past the size */
  async retain(
    limit: RetentionLimitSettings,
    check: () => void,
    count: (by: 'age' | 'size', rows: number, bytes: number) => void = () => undefined,
  ): Promise<KindReport> {
    const report: KindReport = { deletedByAge: 0, deletedBySize: 0, bytesDeleted: 0, storedBytes: 0 };
    let stored = await this.store.totalBytes();
    const maxBytes = limit.maxMiB * MiB;
    const sweep = async (before: number | undefined, enough: () => boolean, by: 'age' | 'size') => {
      for (;;) {
        check();
        if (enough()) return;
        const batch = await this.store.oldest(PAGE, before !== undefined ? { before } : {});
        if (batch.length === 0) return;
        for (const f of batch) {
          if (enough()) return;
          check();
          const { blobInUse } = await this.store.delete(f.device, f.id, f.sha256);
          if (!blobInUse) await this.blobs.delete(f.sha256);
          count(by, 1, f.bytes);
          report.bytesDeleted += f.bytes;
          stored -= f.bytes;
          if (by === 'age') report.deletedByAge++;
          else report.deletedBySize++;
        }
      }
    };
    await sweep(this.clock() - limit.maxAgeDays * DAY_MS, () => false, 'age');
    await sweep(undefined, () => stored <= maxBytes, 'size');
    report.storedBytes = Math.max(0, stored);
    return report;
  }
}

/** the JPEG's size from its header; a Refused (400) when it is not a JPEG within bounds */
async function jpegSize(jpeg: Buffer): Promise<{ width: number; height: number }> {
  const notJpeg = (why: string) =>
    new Refused(
      `the body is not a JPEG frame: ${why}`,
      400,
      'send the frame encoded as a baseline or progressive JPEG',
    );
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== 0xd8) throw notJpeg('it does not start with FF D8');
  let meta: Metadata;
  try {
    meta = await sharp(jpeg, { limitInputPixels: MAX_HARVEST_PIXELS }).metadata();
  } catch (err) {
    throw notJpeg((err as Error).message);
  }
  if (meta.format !== 'jpeg' || !meta.width || !meta.height) throw notJpeg(`its header says ${meta.format}`);
  if (meta.width * meta.height > MAX_HARVEST_PIXELS)
    throw new Refused(`a ${meta.width}×${meta.height} frame, more than ${MAX_HARVEST_PIXELS} pixels`, 413);
  return { width: meta.width, height: meta.height };
}
