import { randomBytes } from 'node:crypto';
import { sha256Hex } from '../../common/hash.ts';
import type { Role } from '../api/access.ts';
import type { SqlAccess } from './sql-access.ts';

export const TOKEN_PREFIX = 'argus_';
/** last use is written at most this often per token, so that a busy script costs no write per request */
const LAST_USED_RESOLUTION_MS = 60_000;

export interface ApiToken {
  id: string;
  name: string;
  role: Role;
  createdBy: string;
  createdAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
}

interface TokenRow {
  id: string;
  name: string;
  role: Role;
  created_by: string;
  created_at: number | string;
  last_used_at: number | string | null;
  revoked_at: number | string | null;
}

const COLUMNS = 'id, name, role, created_by, created_at, last_used_at, revoked_at';
const orNull = (v: number | string | null) => (v === null ? null : Number(v));
const token = (r: TokenRow): ApiToken => ({
  id: r.id,
  name: r.name,
  role: r.role,
  createdBy: r.created_by,
  createdAt: Number(r.created_at),
  lastUsedAt: orNull(r.last_used_at),
  revokedAt: orNull(r.revoked_at),
});

/**
 * API tokens for scripts, sent as `Authorization: Bearer <token>`: each has a role, is shown once
 * when created and kept only as its sha256 (256 random bits: a fast hash is enough), can be
 * revoked, and records when it was last used.
 */
export class ApiTokens {
  constructor(private readonly sql: SqlAccess) {}

  /** a new token; `secret` is the only time the token itself exists */
  async create(
    name: string,
    role: Role,
    createdBy: string,
    now = Date.now(),
  ): Promise<{ token: ApiToken; secret: string }> {
    const id = randomBytes(9).toString('base64url');
    const secret = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
    const { p } = this.sql;
    const [out] = await this.sql.write([
      {
        sql: `INSERT INTO api_tokens (id, name, role, token_sha256, created_by, created_at) VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)}) RETURNING ${COLUMNS}`,
        params: [id, name, role, sha256Hex(secret), createdBy, now],
      },
    ]);
    return { token: token(out!.rows[0] as unknown as TokenRow), secret };
  }

  async list(): Promise<ApiToken[]> {
    return (await this.sql.read<TokenRow>(`SELECT ${COLUMNS} FROM api_tokens ORDER BY created_at, id`)).map(
      token,
    );
  }

  /** revokes a token at once; false when there is no such token or it was revoked before */
  async revoke(id: string, now = Date.now()): Promise<boolean> {
    const { p } = this.sql;
    const [out] = await this.sql.write([
      {
        sql: `UPDATE api_tokens SET revoked_at = ${p(1)} WHERE id = ${p(2)} AND revoked_at IS NULL`,
        params: [now, id],
      },
    ]);
    return out!.changes === 1;
  }

  /** the live token whose secret this is, its last use recorded */
  async authenticate(secret: string, now = Date.now()): Promise<ApiToken | undefined> {
    if (!secret.startsWith(TOKEN_PREFIX)) return undefined;
    const { p } = this.sql;
    const rows = await this.sql.read<TokenRow>(
      `SELECT ${COLUMNS} FROM api_tokens WHERE token_sha256 = ${p(1)} AND revoked_at IS NULL`,
      [sha256Hex(secret)],
    );
    const found = rows[0] ? token(rows[0]) : undefined;
    if (found && (found.lastUsedAt === null || now - found.lastUsedAt >= LAST_USED_RESOLUTION_MS)) {
      await this.sql.write([
        { sql: `UPDATE api_tokens SET last_used_at = ${p(1)} WHERE id = ${p(2)}`, params: [now, found.id] },
      ]);
      found.lastUsedAt = now;
    }
    return found;
  }
}
