import { randomBytes } from 'node:crypto';
import { ArgusError } from '../common/errors.ts';
import { sha256Hex } from '../common/hash.ts';
import type { ProvisionedDevice } from './config.ts';
import type { BrokerAccessControl } from './mqtt/access-control.ts';
import type { ClaimRefusal, DeviceCredentialStore } from './storage/device-credentials.ts';

/** a fresh secret: 32 random bytes, base64url (43 characters) */
const newSecret = (): string => randomBytes(32).toString('base64url');

/** the longest a claim token may live */
export const MAX_CLAIM_TTL_S = 30 * 24 * 3600;

const at = (ms: number): string => new Date(ms).toISOString();

/** the refusal of a claim exchange, saying what to do */
export function claimRefusalMessage(device: string, refusal: ClaimRefusal): { error: string; hint: string } {
  const hint = `make a new claim token with \`argus control-plane enroll ${device} --config control-plane.yaml\` and put it in the device config (controlPlane.claimToken)`;
  switch (refusal.reason) {
    case 'unknown':
      return { error: `this claim token was not issued for device "${device}"`, hint };
    case 'used':
      return { error: `this claim token of device "${device}" was already used at ${at(refusal.at)}`, hint };
    case 'expired':
      return { error: `this claim token of device "${device}" expired at ${at(refusal.at)}`, hint };
  }
}

/**
 * How long after spending a claim token its box may ask again with the same exchange key, for a
 * first answer it never got
 */
export const EXCHANGE_RETRY_WINDOW_MS = 15 * 60_000;

export interface Claim {
  device: string;
  /** shown once; only its sha256 is stored */
  token: string;
  expiresAt: number;
}

/**
 * Device enrollment and credential life cycle: one-time claim tokens, their exchange for a
 * device's own credential, rotation and revocation. Secrets are generated here and stored only
 * as digests; the broker is told of every change through `BrokerAccessControl` (absent in the CLI:
 * the running control planes see the change at their next credential check).
 */
export class Enrollment {
  constructor(
    private readonly store: DeviceCredentialStore,
    private readonly broker: BrokerAccessControl | undefined,
  ) {}

  async createClaim(device: string, ttlS: number, createdBy: string): Promise<Claim> {
    if (!Number.isInteger(ttlS) || ttlS < 60 || ttlS > MAX_CLAIM_TTL_S)
      throw new ArgusError(
        `a claim token lives between 60 s and ${MAX_CLAIM_TTL_S} s, not ${ttlS} s`,
        'give another --ttl',
      );
    const token = newSecret();
    const now = Date.now();
    const expiresAt = now + ttlS * 1000;
    await this.store.createClaim({
      tokenSha256: sha256Hex(token),
      device,
      createdBy,
      createdAt: now,
      expiresAt,
    });
    return { device, token, expiresAt };
  }

  /**
   * The device's new credential, or why the claim token is refused. `exchangeKey` is the box's
   * own secret for this exchange: presented again with the spent token within
   * `EXCHANGE_RETRY_WINDOW_MS` (the box never got the first answer), the claim's credential is
   * replaced by a new one instead of the token being refused as used.
   */
  async exchange(
    device: string,
    claimToken: string,
    exchangeKey?: string,
  ): Promise<{ credential: string } | ClaimRefusal> {
    const credential = newSecret();
    const tokenSha256 = sha256Hex(claimToken);
    const exchangeSha256 = exchangeKey === undefined ? null : sha256Hex(exchangeKey);
    const now = Date.now();
    let refusal = await this.store.exchangeClaim({
      tokenSha256,
      device,
      secretSha256: sha256Hex(credential),
      exchangeSha256,
      now,
    });
    if (refusal?.reason === 'used' && exchangeSha256)
      refusal = await this.store.reissueClaim({
        tokenSha256,
        device,
        exchangeSha256,
        secretSha256: sha256Hex(credential),
        now,
        windowMs: EXCHANGE_RETRY_WINDOW_MS,
      });
    if (refusal) return refusal;
    await this.broker?.grant(device, credential);
    return { credential };
  }

  /**
   * Grants on the broker the pre-provisioned devices (the config's `devices`, already in the store)
   * whose config credential is still theirs, through the same `grant` as a claim exchange or a
   * rotation; one rotated, re-enrolled or revoked since is not given its config token back. Only a
   * broker that checks passwords itself needs it. Returns the devices granted.
   */
  async grantProvisioned(devices: readonly ProvisionedDevice[]): Promise<string[]> {
    if (!this.broker?.checksSecrets) return [];
    const stored = await this.store.getMany(devices.map((d) => d.id));
    const inForce = devices.filter((d) => {
      const r = stored.get(d.id);
      return r !== undefined && r.secretSha256 === d.tokenSha256 && r.revokedAt === null;
    });
    const digestOnly = inForce.filter((d) => !d.token).map((d) => d.id);
    if (digestOnly.length > 0)
      throw new ArgusError(
        `the broker checks device passwords itself, and the config gives only the tokenSha256 of ${digestOnly.map((d) => `"${d}"`).join(', ')}: the control plane cannot give it their passwords`,
        'give "token" instead of "tokenSha256" for these devices in the control-plane config, or enroll them with a claim token (`argus control-plane enroll <device-id>`)',
      );
    for (const d of inForce) await this.broker.grant(d.id, d.token as string);
    return inForce.map((d) => d.id);
  }

  /** a new credential for the device, which authenticated with `presented`; undefined if refused */
  async rotate(device: string, presented: string): Promise<string | undefined> {
    const credential = newSecret();
    if (!(await this.store.rotate(device, sha256Hex(presented), sha256Hex(credential), Date.now())))
      return undefined;
    await this.broker?.grant(device, credential);
    return credential;
  }

  /** asks the device to rotate (it is sent `rotate-credential`); false when it has no valid credential */
  requestRotation(device: string): Promise<boolean> {
    return this.store.requestRotation(device, Date.now());
  }

  /** of `devices`, those whose rotation request is now to be sent, each taken once */
  takeRotationRequests(devices: readonly string[]): Promise<string[]> {
    return this.store.takeRotationRequests(devices, Date.now());
  }

  /** revokes the device's credential and unused claims, and disconnects it; false when it had none */
  async revoke(device: string): Promise<boolean> {
    const revoked = await this.store.revoke(device, Date.now());
    if (revoked) await this.broker?.revoke(device);
    return revoked;
  }
}
