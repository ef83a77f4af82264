import { randomBytes } from 'node:crypto';
import { sha256Hex } from '../../common/hash.ts';
import type { Role } from '../api/access.ts';
import type { SqlAccess } from './sql-access.ts';

/** a session as its holder sees it once: the id goes into the cookie, the CSRF token into a header */
export interface NewSession {
  id: string;
  csrfToken: string;
  expiresAt: number;
}

export interface Session {
  user: string;
  role: Role;
  csrfToken: string;
  expiresAt: number;
}

/**
 * Browser sessions, in the database so that every control-plane replica knows them. Only the
 * sha256 of a session id is stored (the id is 256 random bits, so a database dump lets nobody in);
 * each session has its own CSRF token and an absolute expiry. The role is read from the account
 * at every request, so a changed role or a removed account takes effect at once.
 */
export class Sessions {
  constructor(private readonly sql: SqlAccess) {}

  async create(user: string, ttlMs: number, now = Date.now()): Promise<NewSession> {
    const id = randomBytes(32).toString('base64url');
    const csrfToken = randomBytes(32).toString('base64url');
    const expiresAt = now + ttlMs;
    const { p } = this.sql;
    await this.sql.write([
      { sql: `DELETE FROM sessions WHERE expires_at <= ${p(1)}`, params: [now] },
      {
        sql: `INSERT INTO sessions (id_sha256, user_name, csrf_token, created_at, expires_at) VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)})`,
        params: [sha256Hex(id), user, csrfToken, now, expiresAt],
      },
    ]);
    return { id, csrfToken, expiresAt };
  }

  /** the live session of `id`, with its account's current role */
  async find(id: string, now = Date.now()): Promise<Session | undefined> {
    const { p } = this.sql;
    const rows = await this.sql.read<{
      user_name: string;
      role: Role;
      csrf_token: string;
      expires_at: number | string;
    }>(
      `SELECT s.user_name, u.role, s.csrf_token, s.expires_at FROM sessions s JOIN users u ON u.name = s.user_name
       WHERE s.id_sha256 = ${p(1)} AND s.expires_at > ${p(2)}`,
      [sha256Hex(id), now],
    );
    const r = rows[0];
    return r
      ? { user: r.user_name, role: r.role, csrfToken: r.csrf_token, expiresAt: Number(r.expires_at) }
      : undefined;
  }

  /** ends a session; false when it did not exist */
  async end(id: string): Promise<boolean> {
    const [out] = await this.sql.write([
      { sql: `DELETE FROM sessions WHERE id_sha256 = ${this.sql.p(1)}`, params: [sha256Hex(id)] },
    ]);
    return out!.changes === 1;
  }
}
