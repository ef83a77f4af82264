import { createHash } from 'node:crypto';

/** the sha256 of text (UTF-8) or bytes, as lowercase hex */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
