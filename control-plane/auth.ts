import { timingSafeEqual } from 'node:crypto';
import { sha256Hex } from '../common/hash.ts';

/**
 * Device credentials: a bearer token per device, kept as its sha256. `verify` compares digests in
 * constant time, so neither the token nor its length leaks through timing.
 */
export class DeviceCredentials {
  private readonly digests: Map<string, Buffer>;

  constructor(devices: readonly { id: string; tokenSha256: string }[]) {
    this.digests = new Map(devices.map((d) => [d.id, Buffer.from(d.tokenSha256, 'hex')]));
  }

  /** true when `authorization` is `Bearer <the token of device>` */
  verify(device: string, authorization: string | undefined): boolean {
    const match = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
    return match ? this.verifyToken(device, match[1]!) : false;
  }

  /** true when `token` is the token of `device` */
  verifyToken(device: string, token: string): boolean {
    const expected = this.digests.get(device);
    if (!expected) return false;
    return timingSafeEqual(Buffer.from(sha256Hex(token), 'hex'), expected);
  }
}
