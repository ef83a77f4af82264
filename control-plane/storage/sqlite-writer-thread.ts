import { parentPort } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { errorMessage } from '../../common/errors.ts';
import { threadData } from '../../common/thread.ts';
import type { SqliteSettings } from '../config.ts';
import type { VacuumResult } from './repository.ts';
import { existingSnapshotOutcome, type SnapshotIdentity, sameEvent } from './sql.ts';
import type { SqlOutcome, SqlStatement, SqlValue } from './sql-access.ts';
import { openSqlite } from './sqlite-connection.ts';
import {
  type BatchResult,
  type BatchRows,
  CONFLICTING,
  isRefusedData,
  WRITE_SQL,
  type WriteReply,
  type WriteRequest,
  type WriteResult,
  type WriterReady,
} from './sqlite-writes.ts';

/**
 * The SQLite writer thread: the only connection that writes. It takes requests in order, runs
 * each batch as one transaction and replies once it committed, so the main thread keeps serving
 * MQTT and HTTP while SQLite works.
 */
const port = parentPort!;

function serve(db: Database.Database): (req: WriteRequest) => WriteResult {
  const s = Object.fromEntries(
    Object.entries(WRITE_SQL).map(([name, sql]) => [name, db.prepare(sql)]),
  ) as Record<keyof typeof WRITE_SQL, Database.Statement>;
  const writeBatch = db.transaction((rows: BatchRows): BatchResult => {
    const cursors = rows.events.map((p) => {
      const info = s.insertEvent.run(p);
      if (info.changes === 1) return Number(info.lastInsertRowid);
      // columns 3, 0, 1 and 11 of an event row: device, id, seq and the message's text
      const stored = s.storedEvent.get(p[3], p[0], p[1]) as { payload: string };
      return sameEvent(stored.payload, p[11] as string) ? 0 : CONFLICTING;
    });
    let statusDuplicates = 0;
    for (const p of rows.statuses) if (s.insertStatus.run(p).changes === 0) statusDuplicates++;
    for (const p of rows.devices) s.upsertDevice.run(p);
    const unknownResults: number[] = [];
    rows.results.forEach((p, i) => {
      if (s.storeResult.run(p).changes === 0) unknownResults.push(i);
    });
    for (const p of rows.telemetry) s.insertTelemetry.run(p);
    for (const p of rows.availability) s.insertAvailability.run(p);
    return { cursors, statusDuplicates, unknownResults };
  });
  const prepared = new Map<string, Database.Statement>();
  const statement = (sql: string): Database.Statement => {
    let stmt = prepared.get(sql);
    if (!stmt) {
      // statements are the stores' own SQL, a bounded set; keep the cache bounded all the same
      if (prepared.size >= 500) prepared.clear();
      stmt = db.prepare(sql);
      prepared.set(sql, stmt);
    }
    return stmt;
  };
  // a Buffer crosses the thread boundary as a plain Uint8Array
  const bind = (params: readonly SqlValue[] = []) =>
    params.map((v) => (v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v) : v));
  const writeSql = db.transaction((statements: readonly SqlStatement[]): SqlOutcome[] =>
    statements.map(({ sql, params }) => {
      const stmt = statement(sql);
      if (stmt.reader) {
        const rows = stmt.all(...bind(params)) as Record<string, unknown>[];
        return { rows, changes: rows.length };
      }
      return { rows: [], changes: stmt.run(...bind(params)).changes };
    }),
  );
  const vacuum = (pages: number): VacuumResult => {
    const count = () => db.pragma('page_count', { simple: true }) as number;
    const before = count();
    db.pragma(`incremental_vacuum(${Math.floor(pages)})`);
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const more = (db.pragma('freelist_count', { simple: true }) as number) > 0;
    return { bytes: (before - count()) * pageSize, more };
  };
  return (req) => {
    switch (req.op) {
      case 'sql':
        return writeSql(req.statements);
      case 'batch':
        return writeBatch(req.rows);
      case 'snapshot': {
        const x = req.snapshot;
        const created = s.insertSnapshot.run(x.id, x.device, x.contentType, x.sha256, x.bytes, x.createdAt);
        if (created.changes === 1) return 'created';
        return existingSnapshotOutcome(
          s.snapshotIdentity.get(x.device, x.id) as SnapshotIdentity | undefined,
          x,
        );
      }
      case 'command':
        s.insertCommand.run(req.params);
        return null;
      case 'vacuum':
        return vacuum(req.pages);
    }
  };
}

let db: Database.Database | undefined;
try {
  db = openSqlite(threadData<SqliteSettings>());
  const handle = serve(db);
  port.on('message', (req: WriteRequest | 'close') => {
    if (req === 'close') {
      db?.close();
      port.close();
      return;
    }
    let reply: WriteReply;
    try {
      reply = { id: req.id, result: handle(req) };
    } catch (err) {
      reply = { id: req.id, error: errorMessage(err), refusedData: isRefusedData(err) };
    }
    port.postMessage(reply);
  });
  port.postMessage({ ready: true } satisfies WriterReady);
} catch (err) {
  db?.close();
  port.postMessage({ ready: false, error: errorMessage(err) } satisfies WriterReady);
}
