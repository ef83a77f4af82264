import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { ArgusError } from '../../common/errors.ts';
import type { SqliteSettings } from '../config.ts';

/**
 * A connection to the control plane's SQLite file (created if absent), in WAL mode. A new file is
 * created with incremental auto-vacuum, so that retention can give deleted pages back to the file
 * system (an older file is converted once by SqliteRepository.open)
 */
export function openSqlite(settings: SqliteSettings): Database.Database {
  let db: Database.Database;
  try {
    mkdirSync(dirname(settings.path), { recursive: true });
    db = new Database(settings.path);
  } catch (err) {
    throw new ArgusError(
      `cannot open the SQLite database ${settings.path}: ${(err as Error).message}`,
      'check storage.sqlite.path and that its directory is writable',
    );
  }
  // takes effect only on a file without tables, and only before WAL mode is set
  db.pragma('auto_vacuum = INCREMENTAL');
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${settings.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
  db.pragma('busy_timeout = 5000');
  return db;
}
