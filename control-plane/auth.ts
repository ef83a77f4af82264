import { timingSafeEqual } from 'node:crypto';
import { sha256Hex } from '../common/hash.ts';
import type { CredentialRecord, DeviceCredentialStore } from './storage/device-credentials.ts';

const sameDigest = (a: string, b: string | null): boolean =>
  b !== null && a.length === b.length && timingSafeEqual(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'));

/** true when `digest` is a valid credential of the device as stored (current, or previous while rotating) */
export function digestValid(record: CredentialRecord | undefined, digest: string): boolean {
  if (!record || record.revokedAt !== null) return false;
  return sameDigest(digest, record.secretSha256) || sameDigest(digest, record.previousSha256);
}

/**
 * Device credentials, as stored in the database (DeviceCredentialStore): a secret per device, kept
 * as its sha256; digests are compared in constant time. A revoked device is refused. The first use
 * of a rotated credential ends the validity of the one before it.
 */
export class DeviceCredentials {
  constructor(private readonly store: DeviceCredentialStore) {}

  /** true when `authorization` is `Bearer <a valid credential of device>` */
  verify(device: string, authorization: string | undefined): Promise<boolean> {
    const match = /^Bearer\s+(\S{1,512})$/i.exec(authorization ?? '');
    return match ? this.verifyToken(device, match[1]!) : Promise.resolve(false);
  }

  /** true when `token` is a valid credential of `device` */
  async verifyToken(device: string, token: string): Promise<boolean> {
    if (token.length === 0 || token.length > 512) return false;
    const digest = sha256Hex(token);
    const record = await this.store.get(device);
    if (!digestValid(record, digest)) return false;
    if (record!.previousSha256 !== null && sameDigest(digest, record!.secretSha256))
      await this.store.dropPrevious(device, digest);
    return true;
  }
}
