import type { SqlAccess, SqlStatement, SqlValue } from './sql-access.ts';

/** a device's credential as stored: only digests (sha256, hex) of secrets, never the secrets */
export interface CredentialRecord {
  device: string;
  secretSha256: string;
  /** the credential before the last rotation, valid until the device has used the new one */
  previousSha256: string | null;
  /** `config`: listed in the control-plane config; `claim`: issued in exchange for a claim token */
  source: 'config' | 'claim';
  issuedAt: number;
  rotatedAt: number | null;
  rotationRequestedAt: number | null;
  rotationSentAt: number | null;
  revokedAt: number | null;
}

/** why a claim token was not exchanged */
export type ClaimRefusal =
  | { reason: 'unknown' }
  | { reason: 'used'; at: number }
  | { reason: 'expired'; at: number };

export interface NewClaim {
  tokenSha256: string;
  device: string;
  createdBy: string;
  createdAt: number;
  expiresAt: number;
}

/** statement text with its parameters bound in order of appearance (SQLite's `?` is positional) */
function statement(p: SqlAccess['p']): {
  v: (value: SqlValue) => string;
  done: (sql: string) => SqlStatement;
} {
  const params: SqlValue[] = [];
  return {
    v: (value) => {
      params.push(value);
      return p(params.length);
    },
    done: (sql) => ({ sql, params }),
  };
}

const COLUMNS =
  'device, secret_sha256, previous_sha256, source, issued_at, rotated_at, rotation_requested_at, rotation_sent_at, revoked_at';

const orNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

function record(r: Record<string, unknown>): CredentialRecord {
  return {
    device: String(r.device),
    secretSha256: String(r.secret_sha256),
    previousSha256: r.previous_sha256 === null ? null : String(r.previous_sha256),
    source: r.source === 'config' ? 'config' : 'claim',
    issuedAt: Number(r.issued_at),
    rotatedAt: orNull(r.rotated_at),
    rotationRequestedAt: orNull(r.rotation_requested_at),
    rotationSentAt: orNull(r.rotation_sent_at),
    revokedAt: orNull(r.revoked_at),
  };
}

/** devices per `IN (…)` list */
const CHUNK = 500;

/**
 * Device credentials and one-time enrollment claims in the control plane's database (migration
 * 4). Every check-and-set is one statement or one transaction, so that several control-plane
 * replicas (and the CLI) can act on the same rows.
 */
export class DeviceCredentialStore {
  constructor(private readonly sql: SqlAccess) {}

  async get(device: string): Promise<CredentialRecord | undefined> {
    const rows = await this.sql.read(
      `SELECT ${COLUMNS} FROM device_credentials WHERE device = ${this.sql.p(1)}`,
      [device],
    );
    return rows[0] ? record(rows[0]) : undefined;
  }

  /** the credentials of `devices` (those that have one) */
  async getMany(devices: readonly string[]): Promise<Map<string, CredentialRecord>> {
    const out = new Map<string, CredentialRecord>();
    for (let i = 0; i < devices.length; i += CHUNK) {
      const chunk = devices.slice(i, i + CHUNK);
      const list = chunk.map((_, j) => this.sql.p(j + 1)).join(', ');
      for (const r of await this.sql.read(
        `SELECT ${COLUMNS} FROM device_credentials WHERE device IN (${list})`,
        chunk,
      ))
        out.set(String(r.device), record(r));
    }
    return out;
  }

  /**
   * Takes the credentials of the control-plane config's `devices` list. A listed device's digest
   * follows the config until the device is rotated, re-enrolled or revoked; from then on the
   * database decides (a revoked device stays revoked whatever the config says).
   */
  async provision(devices: readonly { id: string; tokenSha256: string }[], now: number): Promise<void> {
    if (devices.length === 0) return;
    await this.sql.write(
      devices.map((d) => {
        const s = statement(this.sql.p);
        return s.done(
          `INSERT INTO device_credentials (device, secret_sha256, source, issued_at)
           VALUES (${s.v(d.id)}, ${s.v(d.tokenSha256)}, 'config', ${s.v(now)})
           ON CONFLICT (device) DO UPDATE SET secret_sha256 = excluded.secret_sha256
           WHERE device_credentials.source = 'config' AND device_credentials.rotated_at IS NULL
             AND device_credentials.revoked_at IS NULL`,
        );
      }),
    );
  }

  async createClaim(claim: NewClaim): Promise<void> {
    const s = statement(this.sql.p);
    await this.sql.write([
      s.done(
        `INSERT INTO device_claims (token_sha256, device, created_by, created_at, expires_at)
         VALUES (${s.v(claim.tokenSha256)}, ${s.v(claim.device)}, ${s.v(claim.createdBy)}, ${s.v(claim.createdAt)}, ${s.v(claim.expiresAt)})`,
      ),
    ]);
  }

  /**
   * Consumes the claim token (digest `tokenSha256`) of `device` and gives the device the
   * credential `secretSha256`, in one transaction: the claim is marked used only if it was unused
   * and unexpired, and the credential is written only if this very call marked it. A re-enrolled
   * device loses its previous credential, revocation and pending rotation. The claim keeps
   * `exchangeSha256`, the digest of the box's own exchange key, for `reissueClaim`.
   */
  async exchangeClaim(o: {
    tokenSha256: string;
    device: string;
    secretSha256: string;
    exchangeSha256: string | null;
    now: number;
  }): Promise<ClaimRefusal | undefined> {
    const { dialect: d } = this.sql;
    const consume = statement(this.sql.p);
    const issue = statement(this.sql.p);
    const [consumed] = await this.sql.write([
      consume.done(
        `UPDATE device_claims SET used_at = ${consume.v(o.now)}, credential_sha256 = ${consume.v(o.secretSha256)},
           exchange_sha256 = ${consume.v(o.exchangeSha256)}
         WHERE token_sha256 = ${consume.v(o.tokenSha256)} AND device = ${consume.v(o.device)}
           AND used_at IS NULL AND expires_at > ${consume.v(o.now)}
         RETURNING device`,
      ),
      issue.done(
        `INSERT INTO device_credentials (device, secret_sha256, source, issued_at)
         SELECT device, credential_sha256, 'claim', CAST(${issue.v(o.now)} AS ${d.bigint}) FROM device_claims
         WHERE token_sha256 = ${issue.v(o.tokenSha256)} AND credential_sha256 = ${issue.v(o.secretSha256)}
         ON CONFLICT (device) DO UPDATE SET secret_sha256 = excluded.secret_sha256,
           previous_sha256 = NULL, source = excluded.source, issued_at = excluded.issued_at,
           rotated_at = NULL, rotation_requested_at = NULL, rotation_sent_at = NULL, revoked_at = NULL`,
      ),
    ]);
    if (consumed!.rows.length === 1) return undefined;
    return this.claimRefusal(o.tokenSha256, o.device);
  }

  /**
   * The box that spent the claim token `tokenSha256` never got the answer (a time-out, a dropped
   * connection) and asks again with the same exchange key (digest `exchangeSha256`) within
   * `windowMs` of the exchange: the credential that claim issued, if still the device's, not
   * rotated and not revoked, is replaced by `secretSha256`. Anyone else holding the spent token
   * is refused as before; so is a box whose credential has been used to rotate, or revoked.
   */
  async reissueClaim(o: {
    tokenSha256: string;
    device: string;
    exchangeSha256: string;
    secretSha256: string;
    now: number;
    windowMs: number;
  }): Promise<ClaimRefusal | undefined> {
    const cred = statement(this.sql.p);
    const claim = statement(this.sql.p);
    const [reissued] = await this.sql.write([
      cred.done(
        `UPDATE device_credentials SET secret_sha256 = ${cred.v(o.secretSha256)}, issued_at = ${cred.v(o.now)}
         WHERE device = ${cred.v(o.device)} AND source = 'claim' AND revoked_at IS NULL AND previous_sha256 IS NULL
           AND secret_sha256 = (SELECT credential_sha256 FROM device_claims
             WHERE token_sha256 = ${cred.v(o.tokenSha256)} AND device = ${cred.v(o.device)}
               AND exchange_sha256 = ${cred.v(o.exchangeSha256)} AND used_at >= ${cred.v(o.now - o.windowMs)})
         RETURNING device`,
      ),
      claim.done(
        `UPDATE device_claims SET credential_sha256 = ${claim.v(o.secretSha256)}
         WHERE token_sha256 = ${claim.v(o.tokenSha256)} AND device = ${claim.v(o.device)}
           AND exchange_sha256 = ${claim.v(o.exchangeSha256)}
           AND EXISTS (SELECT 1 FROM device_credentials c
             WHERE c.device = ${claim.v(o.device)} AND c.secret_sha256 = ${claim.v(o.secretSha256)})`,
      ),
    ]);
    if (reissued!.rows.length === 1) return undefined;
    return this.claimRefusal(o.tokenSha256, o.device);
  }

  /** why the claim token `tokenSha256` of `device` is not (or no longer) exchanged */
  private async claimRefusal(tokenSha256: string, device: string): Promise<ClaimRefusal> {
    const rows = await this.sql.read(
      `SELECT used_at, expires_at FROM device_claims WHERE token_sha256 = ${this.sql.p(1)} AND device = ${this.sql.p(2)}`,
      [tokenSha256, device],
    );
    const claim = rows[0];
    if (!claim) return { reason: 'unknown' };
    if (claim.used_at !== null) return { reason: 'used', at: Number(claim.used_at) };
    return { reason: 'expired', at: Number(claim.expires_at) };
  }

  /**
   * The device, authenticated by a credential whose digest is `presentedSha256`, takes the
   * credential `newSha256`. Presented with the current credential, that one stays valid as the
   * previous until the device uses the new one; presented with the previous (the device never got
   * the answer of an earlier rotation), the previous stays and the unused one is replaced.
   */
  async rotate(device: string, presentedSha256: string, newSha256: string, now: number): Promise<boolean> {
    const s = statement(this.sql.p);
    const [out] = await this.sql.write([
      s.done(
        `UPDATE device_credentials SET
           previous_sha256 = CASE WHEN secret_sha256 = ${s.v(presentedSha256)} THEN secret_sha256 ELSE previous_sha256 END,
           secret_sha256 = ${s.v(newSha256)}, rotated_at = ${s.v(now)},
           rotation_requested_at = NULL, rotation_sent_at = NULL
         WHERE device = ${s.v(device)} AND revoked_at IS NULL
           AND (secret_sha256 = ${s.v(presentedSha256)} OR previous_sha256 = ${s.v(presentedSha256)})
         RETURNING device`,
      ),
    ]);
    return out!.rows.length === 1;
  }

  /** the device has used its current credential: the previous one is no longer valid */
  async dropPrevious(device: string, currentSha256: string): Promise<void> {
    const s = statement(this.sql.p);
    await this.sql.write([
      s.done(
        `UPDATE device_credentials SET previous_sha256 = NULL
         WHERE device = ${s.v(device)} AND secret_sha256 = ${s.v(currentSha256)} AND previous_sha256 IS NOT NULL`,
      ),
    ]);
  }

  /** marks the device's credential for rotation; false when it has none or it is revoked */
  async requestRotation(device: string, now: number): Promise<boolean> {
    const s = statement(this.sql.p);
    const [out] = await this.sql.write([
      s.done(
        `UPDATE device_credentials SET rotation_requested_at = ${s.v(now)}, rotation_sent_at = NULL
         WHERE device = ${s.v(device)} AND revoked_at IS NULL RETURNING device`,
      ),
    ]);
    return out!.rows.length === 1;
  }

  /**
   * Of `devices` (those connected here), the ones with a rotation requested and not yet sent,
   * each marked sent by this call, so that one replica sends each request once.
   */
  async takeRotationRequests(devices: readonly string[], now: number): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < devices.length; i += CHUNK) {
      const s = statement(this.sql.p);
      const at = s.v(now);
      const list = devices
        .slice(i, i + CHUNK)
        .map((d) => s.v(d))
        .join(', ');
      const [taken] = await this.sql.write([
        s.done(
          `UPDATE device_credentials SET rotation_sent_at = ${at}
           WHERE device IN (${list}) AND rotation_requested_at IS NOT NULL AND rotation_sent_at IS NULL
             AND revoked_at IS NULL
           RETURNING device`,
        ),
      ]);
      out.push(...taken!.rows.map((r) => String(r.device)));
    }
    return out;
  }

  /** devices whose credential is revoked now, revoked at or after `since` (ms since the epoch) */
  async revokedSince(since: number): Promise<string[]> {
    const rows = await this.sql.read<{ device: string }>(
      `SELECT device FROM device_credentials WHERE revoked_at >= ${this.sql.p(1)} ORDER BY device LIMIT 10000`,
      [since],
    );
    return rows.map((r) => r.device);
  }

  /** devices with a rotation requested and not sent yet, at most `limit` */
  async rotationsPending(limit: number): Promise<string[]> {
    const rows = await this.sql.read<{ device: string }>(
      `SELECT device FROM device_credentials
       WHERE rotation_requested_at IS NOT NULL AND rotation_sent_at IS NULL AND revoked_at IS NULL
       ORDER BY device LIMIT ${this.sql.p(1)}`,
      [limit],
    );
    return rows.map((r) => r.device);
  }

  /** revokes the device's credential and every unused claim token of it; false when it had none */
  async revoke(device: string, now: number): Promise<boolean> {
    const s = statement(this.sql.p);
    const c = statement(this.sql.p);
    const [out] = await this.sql.write([
      s.done(
        `UPDATE device_credentials SET revoked_at = ${s.v(now)}, previous_sha256 = NULL,
           rotation_requested_at = NULL, rotation_sent_at = NULL
         WHERE device = ${s.v(device)} AND revoked_at IS NULL RETURNING device`,
      ),
      c.done(
        `UPDATE device_claims SET expires_at = ${c.v(now)} WHERE device = ${c.v(device)} AND used_at IS NULL AND expires_at > ${c.v(now)}`,
      ),
    ]);
    return out!.rows.length === 1;
  }
}
