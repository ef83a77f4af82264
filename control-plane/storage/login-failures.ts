import type { SqlAccess } from './sql-access.ts';

/**
 * Failed logins per account, in the database so that every replica counts the same: an account
 * with too many recent failures is refused (429) without its password being tried, whoever tries.
 */
export class LoginFailures {
  constructor(private readonly sql: SqlAccess) {}

  /** failures of `account` since `since` */
  async count(account: string, since: number): Promise<number> {
    const { p } = this.sql;
    const [row] = await this.sql.read<{ n: number | string }>(
      `SELECT count(*) AS n FROM login_failures WHERE account = ${p(1)} AND at >= ${p(2)}`,
      [account, since],
    );
    return Number(row?.n ?? 0);
  }

  /** records a failure, forgetting those of every account older than `forgetBefore` */
  async record(account: string, now: number, forgetBefore: number): Promise<void> {
    const { p } = this.sql;
    await this.sql.write([
      { sql: `DELETE FROM login_failures WHERE at < ${p(1)}`, params: [forgetBefore] },
      { sql: `INSERT INTO login_failures (account, at) VALUES (${p(1)}, ${p(2)})`, params: [account, now] },
    ]);
  }

  /** a successful login clears the account's failures */
  async clear(account: string): Promise<void> {
    await this.sql.write([
      { sql: `DELETE FROM login_failures WHERE account = ${this.sql.p(1)}`, params: [account] },
    ]);
  }
}
