import type { SqlAccess } from './sql-access.ts';

/**
 * Leases in the database (table `leases`): a job that must run once across several control-plane
 * replicas (retention, the device-health sweep) runs only while its replica holds the job's lease.
 * Taking and renewing are one atomic statement: the row is written only when it is free, expired
 * or already the caller's, so of replicas racing for a lease exactly one gets it. A holder that
 * stops renewing loses the lease once `expires_at` passes. Times are the callers' clocks (ms since
 * the epoch): replicas need clocks that agree to well within a lease's time to live (NTP).
 */
export class LeaseStore {
  constructor(private readonly sql: SqlAccess) {}

  /**
   * Takes the lease `name` for `holder` until `now + ttlMs`, or renews it when `holder` has it;
   * answers whether `holder` has it now
   */
  async take(name: string, holder: string, ttlMs: number, now = Date.now()): Promise<boolean> {
    const { p } = this.sql;
    const [outcome] = await this.sql.write([
      {
        sql: `INSERT INTO leases (name, holder, expires_at) VALUES (${p(1)}, ${p(2)}, ${p(3)})
          ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
          WHERE leases.holder = excluded.holder OR leases.expires_at <= ${p(4)}
          RETURNING holder`,
        params: [name, holder, now + ttlMs, now],
      },
    ]);
    return outcome!.rows.length === 1;
  }

  /** gives the lease up (only when `holder` has it), so another replica may take it at once */
  async release(name: string, holder: string): Promise<void> {
    const { p } = this.sql;
    await this.sql.write([
      { sql: `DELETE FROM leases WHERE name = ${p(1)} AND holder = ${p(2)}`, params: [name, holder] },
    ]);
  }

  /** who holds the lease at `now`, if anyone */
  async holder(name: string, now = Date.now()): Promise<string | undefined> {
    const { p } = this.sql;
    const rows = await this.sql.read<{ holder: string }>(
      `SELECT holder FROM leases WHERE name = ${p(1)} AND expires_at > ${p(2)}`,
      [name, now],
    );
    return rows[0]?.holder;
  }
}
