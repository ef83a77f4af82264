import { ArgusError } from '../../common/errors.ts';

/**
 * Fragmented MP4 as GStreamer's `mp4mux fragment-duration=…` writes it to a pipe: `ftyp` and
 * `moov` (the init segment), then `moof` + `mdat` pairs (fragments). The splitter cuts the byte
 * stream into those pieces, tells whether a fragment starts with a key frame (a viewer who joins
 * late starts there) and reads the codec string from the `avcC` box for MediaSource.
 */

/** a top-level box larger than this ends the stream (a fragment holds a fraction of a second) */
export const MAX_BOX_BYTES = 4 * 1024 * 1024 - 16;

export type Fmp4Piece =
  | { kind: 'init'; bytes: Buffer; mime: string }
  | { kind: 'fragment'; bytes: Buffer; key: boolean };

const NON_SYNC_SAMPLE = 0x0001_0000;

interface Box {
  type: string;
  start: number;
  /** first byte of the payload */
  body: number;
  end: number;
}

/** the boxes inside `buf[from, to)`; stops at a box that does not fit */
function* children(buf: Buffer, from: number, to: number): Generator<Box> {
  let at = from;
  while (at + 8 <= to) {
    let size = buf.readUInt32BE(at);
    let header = 8;
    if (size === 1) {
      if (at + 16 > to) return;
      size = Number(buf.readBigUInt64BE(at + 8));
      header = 16;
    }
    if (size < header || at + size > to) return;
    yield { type: buf.toString('latin1', at + 4, at + 8), start: at, body: at + header, end: at + size };
    at += size;
  }
}

function find(buf: Buffer, from: number, to: number, path: string[]): Box | undefined {
  const [first, ...rest] = path;
  for (const box of children(buf, from, to)) {
    if (box.type !== first) continue;
    return rest.length === 0 ? box : find(buf, box.body, box.end, rest);
  }
  return undefined;
}

/** `video/mp4; codecs="avc1.PPCCLL"` from the init segment's avcC (profile, compatibility, level) */
export function codecMime(init: Buffer): string {
  const entries = find(init, 0, init.length, ['moov', 'trak', 'mdia', 'minf', 'stbl', 'stsd']);
  // stsd: version/flags (4), entry count (4), then sample entries; avc1's own fields take 78 bytes
  const avc1 = entries && find(init, entries.body + 8, entries.end, ['avc1']);
  const avcC = avc1 && find(init, avc1.body + 78, avc1.end, ['avcC']);
  if (!avcC || avcC.end - avcC.body < 4)
    throw new ArgusError(
      'the live stream has no H.264 (avc1/avcC) track',
      'the camera must send H.264 for the live view (H.265 is not played by browsers)',
    );
  return `video/mp4; codecs="avc1.${init.subarray(avcC.body + 1, avcC.body + 4).toString('hex')}"`;
}

/** the sample flags of the moov's trex (fragments that carry none of their own use these) */
function trexFlags(init: Buffer): number | undefined {
  const trex = find(init, 0, init.length, ['moov', 'mvex', 'trex']);
  return trex && trex.end - trex.body >= 24 ? init.readUInt32BE(trex.body + 20) : undefined;
}

/** whether the first sample of the fragment's first track run is a sync sample (a key frame) */
export function startsWithKeyFrame(moof: Buffer, defaultFlags: number | undefined): boolean {
  const traf = find(moof, 0, moof.length, ['moof', 'traf']);
  if (!traf) return false;
  let flags = defaultFlags;
  const tfhd = find(moof, traf.body, traf.end, ['tfhd']);
  if (tfhd && tfhd.end - tfhd.body >= 8) {
    const tf = moof.readUInt32BE(tfhd.body) & 0xff_ffff;
    // track id, then optional fields in this order
    let at = tfhd.body + 8;
    if (tf & 0x01) at += 8;
    if (tf & 0x02) at += 4;
    if (tf & 0x08) at += 4;
    if (tf & 0x10) at += 4;
    if (tf & 0x20 && at + 4 <= tfhd.end) flags = moof.readUInt32BE(at);
  }
  const trun = find(moof, traf.body, traf.end, ['trun']);
  if (trun && trun.end - trun.body >= 8) {
    const tr = moof.readUInt32BE(trun.body) & 0xff_ffff;
    let at = trun.body + 8;
    if (tr & 0x01) at += 4;
    if (tr & 0x04) {
      if (at + 4 <= trun.end) flags = moof.readUInt32BE(at);
    } else if (tr & 0x400) {
      if (tr & 0x100) at += 4;
      if (tr & 0x200) at += 4;
      if (at + 4 <= trun.end) flags = moof.readUInt32BE(at);
    }
  }
  return flags !== undefined && (flags & NON_SYNC_SAMPLE) === 0;
}

/** cuts a fragmented MP4 byte stream into its init segment and fragments */
export class Fmp4Splitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private head: Buffer[] = [];
  private init: Buffer | undefined;
  private defaultFlags: number | undefined;

  /** the pieces completed by `chunk`; throws on a stream that is not fragmented MP4 */
  push(chunk: Buffer): Fmp4Piece[] {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const out: Fmp4Piece[] = [];
    for (;;) {
      if (this.pendingBytes < 8) break;
      const buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
      this.pending = [buf];
      const size = buf.readUInt32BE(0);
      const type = buf.toString('latin1', 4, 8);
      if (size < 8 || size > MAX_BOX_BYTES || !/^[a-z0-9 ]{4}$/i.test(type))
        throw new ArgusError(
          `the live stream is not fragmented MP4 (a box "${type.replace(/[^ -~]/g, '?')}" of ${size} bytes)`,
        );
      if (buf.length < size) break;
      const box = buf.subarray(0, size);
      this.pending = buf.length > size ? [buf.subarray(size)] : [];
      this.pendingBytes = buf.length - size;
      const piece = this.take(type, Buffer.from(box));
      if (piece) out.push(piece);
    }
    return out;
  }

  private take(type: string, box: Buffer): Fmp4Piece | undefined {
    if (!this.init) {
      this.head.push(box);
      if (type !== 'moov') return undefined;
      this.init = Buffer.concat(this.head);
      this.head = [];
      this.defaultFlags = trexFlags(this.init);
      return { kind: 'init', bytes: this.init, mime: codecMime(this.init) };
    }
    if (type === 'moof') {
      this.head = [box];
      return undefined;
    }
    if (type === 'mdat' && this.head.length > 0) {
      const moof = this.head[0]!;
      this.head = [];
      return {
        kind: 'fragment',
        bytes: Buffer.concat([moof, box]),
        key: startsWithKeyFrame(moof, this.defaultFlags),
      };
    }
    // styp, sidx, mfra and the like: nothing a viewer needs
    return undefined;
  }
}
