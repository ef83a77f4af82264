import type { Dialect } from './migrations.ts';
import type { Placeholder } from './sql.ts';

/** a value bound to a statement parameter */
export type SqlValue = string | number | null | Uint8Array;

export interface SqlStatement {
  sql: string;
  params?: readonly SqlValue[];
}

/** what one statement of a `write` did: its rows (for a SELECT or `RETURNING`) and rows changed */
export interface SqlOutcome<Row = Record<string, unknown>> {
  rows: Row[];
  changes: number;
}

/**
 * Plain SQL on the control plane's database, for the stores beside ingest (operators, audit,
 * device credentials, quarantine, retention …): each such store is a module of its own that
 * writes the same SQL for both backends with `p(n)` placeholders and its own migration step,
 * instead of a method on every backend. Times are ms since the epoch in `bigint` columns; SQLite
 * returns them as numbers, PostgreSQL as strings: read them with `Number()`.
 *
 * `write` runs its statements in one transaction (all or nothing), on SQLite in the writer thread
 * so the event loop is not held; `read` sees every committed write.
 */
export interface SqlAccess {
  readonly backend: 'sqlite' | 'postgres';
  readonly dialect: Dialect;
  /** the placeholder of parameter `index` (1-based): `?` or `$index` */
  readonly p: Placeholder;
  read<Row = Record<string, unknown>>(sql: string, params?: readonly SqlValue[]): Promise<Row[]>;
  write(statements: readonly SqlStatement[]): Promise<SqlOutcome[]>;
}
