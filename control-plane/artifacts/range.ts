import type { ByteRange } from './blob-store.ts';

/** what a request's `Range` header asks of a representation of `size` bytes */
export type RangeAnswer =
  | { kind: 'full' }
  | { kind: 'partial'; range: ByteRange }
  /** 416, with `Content-Range: bytes *\/size` */
  | { kind: 'unsatisfiable' };

const SINGLE = /^bytes=(\d{0,20})-(\d{0,20})$/;

/**
 * One byte range (RFC 9110 §14): `bytes=a-b`, `bytes=a-` (from a to the end) or `bytes=-n` (the
 * last n bytes). A header that is not one such range — another unit, several ranges, `b < a` — is
 * ignored, and the whole representation is sent, as the RFC allows; a range that starts at or past
 * the end (or asks for the last 0 bytes) is unsatisfiable. `ifRange` is the request's `If-Range`:
 * when it is not this representation's `etag`, the Range is ignored too.
 */
export function parseRange(
  header: string | undefined,
  size: number,
  ifRange?: string,
  etag?: string,
): RangeAnswer {
  if (header === undefined) return { kind: 'full' };
  if (ifRange !== undefined && ifRange !== etag) return { kind: 'full' };
  const m = SINGLE.exec(header.trim());
  if (!m) return { kind: 'full' };
  const [, first = '', last = ''] = m;
  if (first === '' && last === '') return { kind: 'full' };
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', range: { start: Math.max(0, size - suffix), end: size - 1 } };
  }
  const start = Number(first);
  if (last !== '' && Number(last) < start) return { kind: 'full' };
  if (start >= size) return { kind: 'unsatisfiable' };
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  return { kind: 'partial', range: { start, end } };
}
