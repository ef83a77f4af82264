import Type from 'typebox';
import { ArgusError } from '../../common/errors.ts';
import type { Role } from '../api/access.ts';
import {
  hashPassword,
  MAX_PASSWORD_LENGTH,
  MIN_PASSWORD_LENGTH,
  UNUSABLE_HASH,
  verifyPassword,
} from '../passwords.ts';
import type { SqlAccess } from './sql-access.ts';

export const USER_NAME_PATTERN = '^[a-z0-9][a-z0-9._@-]{0,63}$';
export const UserName = Type.String({
  pattern: USER_NAME_PATTERN,
  description: 'lower-case letters, digits and . _ @ -, at most 64',
});
export const Password = Type.String({ minLength: MIN_PASSWORD_LENGTH, maxLength: MAX_PASSWORD_LENGTH });

export interface User {
  name: string;
  role: Role;
  createdAt: number;
  updatedAt: number;
}

interface UserRow {
  name: string;
  role: Role;
  password_hash: string;
  created_at: number | string;
  updated_at: number | string;
}

const user = (r: UserRow): User => ({
  name: r.name,
  role: r.role,
  createdAt: Number(r.created_at),
  updatedAt: Number(r.updated_at),
});

function checkPassword(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH)
    throw new ArgusError(
      `a password has ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters`,
      'leave the password out to have one generated',
    );
}

/** operators' accounts: a name, a role and a scrypt password hash; removing one ends its sessions */
export class Users {
  constructor(private readonly sql: SqlAccess) {}

  /** adds an account; false when the name is taken */
  async add(name: string, role: Role, password: string, now = Date.now()): Promise<boolean> {
    if (!new RegExp(USER_NAME_PATTERN).test(name))
      throw new ArgusError(`"${name}" is not a user name`, 'use lower-case letters, digits and . _ @ -');
    checkPassword(password);
    const { p } = this.sql;
    const hash = await hashPassword(password);
    const [out] = await this.sql.write([
      {
        sql: `INSERT INTO users (name, role, password_hash, created_at, updated_at) VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}) ON CONFLICT (name) DO NOTHING`,
        params: [name, role, hash, now, now],
      },
    ]);
    return out!.changes === 1;
  }

  async get(name: string): Promise<User | undefined> {
    const rows = await this.sql.read<UserRow>(
      `SELECT name, role, password_hash, created_at, updated_at FROM users WHERE name = ${this.sql.p(1)}`,
      [name],
    );
    return rows[0] ? user(rows[0]) : undefined;
  }

  async list(): Promise<User[]> {
    const rows = await this.sql.read<UserRow>(
      'SELECT name, role, password_hash, created_at, updated_at FROM users ORDER BY name',
    );
    return rows.map(user);
  }

  /** the account when `password` is its password; takes as long when the account does not exist */
  async authenticate(name: string, password: string): Promise<User | undefined> {
    const rows = await this.sql.read<UserRow>(
      `SELECT name, role, password_hash, created_at, updated_at FROM users WHERE name = ${this.sql.p(1)}`,
      [name],
    );
    const row = rows[0];
    const ok = await verifyPassword(password, row?.password_hash ?? UNUSABLE_HASH);
    return ok && row ? user(row) : undefined;
  }

  /**
   * sets a new password, ends the account's sessions and forgets its failed logins; false when
   * there is no such account
   */
  async setPassword(name: string, password: string, now = Date.now()): Promise<boolean> {
    checkPassword(password);
    const { p } = this.sql;
    const hash = await hashPassword(password);
    const [out] = await this.sql.write([
      {
        sql: `UPDATE users SET password_hash = ${p(1)}, updated_at = ${p(2)} WHERE name = ${p(3)}`,
        params: [hash, now, name],
      },
      { sql: `DELETE FROM sessions WHERE user_name = ${p(1)}`, params: [name] },
      // a new password lifts the throttling of the account's failed logins
      { sql: `DELETE FROM login_failures WHERE account = ${p(1)}`, params: [name] },
    ]);
    return out!.changes === 1;
  }

  /**
   * changes the role (effective at the account's next request); `last-admin` when that would
   * leave no admin
   */
  async setRole(name: string, role: Role, now = Date.now()): Promise<Change> {
    const { p } = this.sql;
    const [out] = await this.sql.write([
      {
        sql: `UPDATE users SET role = ${p(1)}, updated_at = ${p(2)} WHERE name = ${p(3)} AND (${p(4)} = 'admin' OR ${KEEPS_AN_ADMIN})`,
        params: [role, now, name, role],
      },
    ]);
    return this.change(name, out!.changes);
  }

  /** removes the account and its sessions; `last-admin` when it is the only admin */
  async remove(name: string): Promise<Change> {
    const { p } = this.sql;
    const [out] = await this.sql.write([
      { sql: `DELETE FROM users WHERE name = ${p(1)} AND ${KEEPS_AN_ADMIN}`, params: [name] },
      {
        sql: `DELETE FROM sessions WHERE user_name = ${p(1)} AND NOT EXISTS (SELECT 1 FROM users WHERE name = ${p(2)})`,
        params: [name, name],
      },
    ]);
    return this.change(name, out!.changes);
  }

  private async change(name: string, changes: number): Promise<Change> {
    if (changes === 1) return 'done';
    return (await this.get(name)) ? 'last-admin' : 'missing';
  }
}

/** the account changed is not an admin, or another admin remains */
const KEEPS_AN_ADMIN = "(role <> 'admin' OR (SELECT count(*) FROM users WHERE role = 'admin') > 1)";

export type Change = 'done' | 'missing' | 'last-admin';
