import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { ArgusError } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { SpoolSettings } from './config.ts';

export type SpoolKind = 'event' | 'status' | 'cmd_result';

export interface SpooledMessage {
  seq: number;
  topic: string;
  payload: string;
}

export interface SpoolStats {
  /** messages not yet acknowledged by the broker */
  pending: number;
  bytes: number;
  /** messages dropped oldest-first because the spool was full, since the spool was created */
  dropped: number;
  snapshots: { pending: number; bytes: number; dropped: number };
}

export interface SnapshotBlob {
  id: string;
  jpeg: Buffer;
}

export type SpoolLimits = Pick<SpoolSettings, 'maxMessages' | 'maxBytes' | 'maxSnapshotBytes' | 'sync'>;

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  topic TEXT NOT NULL,
  payload TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
  n INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  jpeg BLOB NOT NULL,
  bytes INTEGER NOT NULL,
  created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS camera_seq (camera TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
`;

/**
 * The on-box store-and-forward queue (SQLite, WAL). Every outgoing event, camera status and command
 * result is written here in one transaction before it is published, and deleted only after the
 * broker's PUBACK. Messages are handed to the uplink in `seq` order through a lease cursor: a
 * message is leased once per process lifetime unless the transport gives it back (`unlease`), so
 * the agent itself never publishes a message twice while the MQTT client still holds it. The spool
 * is bounded by count and bytes: when full, the oldest messages are dropped and counted — also one
 * the transport still holds (sent, its PUBACK outstanding): if that PUBACK comes after all, the
 * message was delivered and the count goes back down, so the count is what the receiver misses. Per-camera `cameraSeq` counters live here too, so they keep increasing
 * across restarts. Snapshots waiting for upload are a second, separately bounded queue.
 *
 * One agent per spool: the file is locked exclusively while open.
 */
export class Spool {
  private readonly db: Database.Database;
  private readonly limits: SpoolLimits;
  private readonly log: Logger;
  private rows = 0;
  private rowBytes = 0;
  private dropped = 0;
  private snapshotRows = 0;
  private snapshotBytes = 0;
  private snapshotsDropped = 0;
  /** highest seq handed to the transport */
  private cursor = 0;
  /** seq → bytes of messages held by the transport */
  private readonly leased = new Map<number, number>();
  /** leased messages dropped from the spool while the transport still holds them */
  private readonly droppedInFlight = new Set<number>();
  /** acknowledged, deleted at the next flush */
  private acked: number[] = [];
  private ackedBytes = 0;
  private flushScheduled = false;
  private closed = false;

  private readonly stmt: {
    insert: Database.Statement<[string, string, string, number, number]>;
    nextCameraSeq: Database.Statement<[string], { next: number }>;
    after: Database.Statement<[number, number], SpooledMessage & { bytes: number }>;
    victims: Database.Statement<[number, number], { seq: number; bytes: number }>;
    deleteSeq: Database.Statement<[number]>;
    setCounter: Database.Statement<[string, number]>;
    insertSnapshot: Database.Statement<[string, Buffer, number, number]>;
    oldestSnapshot: Database.Statement<[], SnapshotBlob>;
    snapshotVictims: Database.Statement<[number], { id: string; bytes: number }>;
    deleteSnapshot: Database.Statement<[string], unknown>;
    snapshotBytes: Database.Statement<[string], { bytes: number }>;
  };

  private constructor(db: Database.Database, limits: SpoolLimits, log: Logger) {
    this.db = db;
    this.limits = limits;
    this.log = log;
    this.stmt = {
      insert: db.prepare(
        'INSERT INTO messages (kind, topic, payload, bytes, created_ms) VALUES (?, ?, ?, ?, ?)',
      ),
      nextCameraSeq: db.prepare(
        'INSERT INTO camera_seq (camera, next) VALUES (?, 0) ON CONFLICT (camera) DO UPDATE SET next = next + 1 RETURNING next',
      ),
      after: db.prepare('SELECT seq, topic, payload, bytes FROM messages WHERE seq > ? ORDER BY seq LIMIT ?'),
      victims: db.prepare('SELECT seq, bytes FROM messages WHERE seq > ? ORDER BY seq LIMIT ?'),
      deleteSeq: db.prepare('DELETE FROM messages WHERE seq = ?'),
      setCounter: db.prepare(
        'INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
      ),
      insertSnapshot: db.prepare(
        'INSERT OR IGNORE INTO snapshots (id, jpeg, bytes, created_ms) VALUES (?, ?, ?, ?)',
      ),
      oldestSnapshot: db.prepare('SELECT id, jpeg FROM snapshots ORDER BY n LIMIT 1'),
      snapshotVictims: db.prepare('SELECT id, bytes FROM snapshots ORDER BY n LIMIT ?'),
      deleteSnapshot: db.prepare('DELETE FROM snapshots WHERE id = ?'),
      snapshotBytes: db.prepare('SELECT bytes FROM snapshots WHERE id = ?'),
    };
    const totals = db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM messages').get() as {
      n: number;
      b: number;
    };
    this.rows = totals.n;
    this.rowBytes = totals.b;
    const snaps = db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM snapshots').get() as {
      n: number;
      b: number;
    };
    this.snapshotRows = snaps.n;
    this.snapshotBytes = snaps.b;
    const counter = (name: string) =>
      (db.prepare('SELECT value FROM counters WHERE name = ?').get(name) as { value: number } | undefined)
        ?.value ?? 0;
    this.dropped = counter('dropped');
    this.snapshotsDropped = counter('snapshotsDropped');
  }

  /** opens (creating if needed) the spool at `path` and takes its lock */
  static open(path: string, limits: SpoolLimits, log: Logger): Spool {
    let db: Database.Database | undefined;
    try {
      mkdirSync(dirname(path), { recursive: true });
      db = new Database(path, { timeout: 0 });
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${limits.sync === 'full' ? 'FULL' : 'NORMAL'}`);
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new ArgusError(
          `spool ${path} was written by a newer Argus (spool schema ${version}, this one knows ${SCHEMA_VERSION})`,
          'run the newer agent, or move the file away to start an empty spool (its pending events are lost)',
        );
      }
      db.exec(`BEGIN IMMEDIATE; ${SCHEMA} PRAGMA user_version = ${SCHEMA_VERSION}; COMMIT;`);
      const spool = new Spool(db, limits, log);
      if (spool.rows > 0)
        log.info({ pending: spool.rows, bytes: spool.rowBytes }, 'spool has messages to replay');
      return spool;
    } catch (err) {
      db?.close();
      if (err instanceof ArgusError) throw err;
      const code = (err as { code?: string }).code;
      if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
        throw new ArgusError(
          `spool ${path} is in use by another process`,
          'run one agent per spool: stop the other agent or set spool.path to a different file',
        );
      }
      throw new ArgusError(
        `cannot open spool ${path}: ${(err as Error).message}`,
        'check that the directory is writable and the disk is not full; a corrupt file can be moved away (its pending events are lost)',
        { cause: err },
      );
    }
  }

  /** spools a message that is not numbered per camera (command results) */
  append(kind: SpoolKind, topic: string, payload: string): number {
    return this.tx(() => this.insert(kind, topic, payload));
  }

  /**
   * Spools a camera's message numbered with the camera's next `cameraSeq`: `build` receives it and
   * returns the payload. If `build` throws, nothing is written and the counter does not advance.
   * A snapshot, when given, is stored in the same transaction.
   */
  appendForCamera(
    kind: SpoolKind,
    topic: string,
    camera: string,
    build: (cameraSeq: number) => string,
    snapshot?: SnapshotBlob,
  ): { seq: number; cameraSeq: number } {
    return this.tx(() => {
      const cameraSeq = this.stmt.nextCameraSeq.get(camera)!.next;
      const payload = build(cameraSeq);
      if (snapshot) this.insertSnapshot(snapshot);
      return { seq: this.insert(kind, topic, payload), cameraSeq };
    });
  }

  /** stores a snapshot for upload (one not referenced by an event, e.g. "snapshot now") */
  addSnapshot(snapshot: SnapshotBlob): void {
    this.tx(() => this.insertSnapshot(snapshot));
  }

  /** the next messages for the transport, oldest first; each is handed out once until `unlease` */
  lease(limit: number): SpooledMessage[] {
    this.flushAcks();
    const out: SpooledMessage[] = [];
    while (out.length < limit) {
      const rows = this.stmt.after.all(this.cursor, limit - out.length);
      if (rows.length === 0) break;
      for (const row of rows) {
        this.cursor = row.seq;
        if (this.leased.has(row.seq)) continue;
        this.leased.set(row.seq, row.bytes);
        out.push({ seq: row.seq, topic: row.topic, payload: row.payload });
      }
    }
    return out;
  }

  /**
   * the transport gave the message back unsent: it is handed out again, in order, by the next
   * `lease` (unless it was dropped meanwhile)
   */
  unlease(seq: number): void {
    this.leased.delete(seq);
    if (this.droppedInFlight.delete(seq)) return;
    this.cursor = Math.min(this.cursor, seq - 1);
  }

  /** the broker acknowledged the message: it is deleted (in a batch, right after the current tick) */
  ack(seq: number): void {
    const bytes = this.leased.get(seq);
    if (bytes === undefined) return;
    this.leased.delete(seq);
    if (this.droppedInFlight.delete(seq)) {
      // dropped while in flight, delivered after all
      this.dropped--;
      this.stmt.setCounter.run('dropped', this.dropped);
      return;
    }
    this.acked.push(seq);
    this.ackedBytes += bytes;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flushAcks());
    }
  }

  /** how many messages the transport holds */
  get leasedCount(): number {
    return this.leased.size;
  }

  flushAcks(): void {
    this.flushScheduled = false;
    if (this.acked.length === 0 || this.closed) return;
    const seqs = this.acked;
    const bytes = this.ackedBytes;
    this.tx(() => {
      for (const seq of seqs) this.stmt.deleteSeq.run(seq);
    });
    this.acked = [];
    this.ackedBytes = 0;
    this.rows -= seqs.length;
    this.rowBytes -= bytes;
  }

  oldestSnapshot(): SnapshotBlob | undefined {
    return this.stmt.oldestSnapshot.get();
  }

  hasSnapshot(id: string): boolean {
    return this.stmt.snapshotBytes.get(id) !== undefined;
  }

  removeSnapshot(id: string): void {
    if (this.closed) return;
    const row = this.stmt.snapshotBytes.get(id);
    if (!row) return;
    this.stmt.deleteSnapshot.run(id);
    this.snapshotRows--;
    this.snapshotBytes -= row.bytes;
  }

  stats(): SpoolStats {
    return {
      pending: this.rows - this.acked.length,
      bytes: this.rowBytes - this.ackedBytes,
      dropped: this.dropped,
      snapshots: { pending: this.snapshotRows, bytes: this.snapshotBytes, dropped: this.snapshotsDropped },
    };
  }

  close(): void {
    if (this.closed) return;
    this.flushAcks();
    this.closed = true;
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }

  private tx<T>(fn: () => T): T {
    if (this.closed) throw new ArgusError('the spool is closed');
    return this.db.transaction(fn)();
  }

  private insert(kind: SpoolKind, topic: string, payload: string): number {
    const bytes = Buffer.byteLength(payload) + topic.length;
    const seq = Number(this.stmt.insert.run(kind, topic, payload, bytes, Date.now()).lastInsertRowid);
    this.rows++;
    this.rowBytes += bytes;
    this.evictMessages(seq);
    return seq;
  }

  /** drops the oldest messages until the spool is within its limits */
  private evictMessages(newest: number): void {
    const over = () =>
      this.rows - this.acked.length > this.limits.maxMessages ||
      this.rowBytes - this.ackedBytes > this.limits.maxBytes;
    if (!over()) return;
    this.flushAcks();
    const before = this.dropped;
    let from = 0;
    while (over()) {
      const victims = this.stmt.victims.all(from, 64).filter((v) => v.seq !== newest);
      if (victims.length === 0) break;
      for (const v of victims) {
        from = v.seq;
        if (!over()) break;
        // the transport keeps a leased one (its window stays full) until its PUBACK or its return
        if (this.leased.has(v.seq)) this.droppedInFlight.add(v.seq);
        this.stmt.deleteSeq.run(v.seq);
        this.rows--;
        this.rowBytes -= v.bytes;
        this.dropped++;
      }
    }
    if (this.dropped !== before) {
      this.stmt.setCounter.run('dropped', this.dropped);
      if (Math.floor(before / 1000) !== Math.floor(this.dropped / 1000) || before === 0) {
        this.log.warn(
          { dropped: this.dropped, maxMessages: this.limits.maxMessages, maxBytes: this.limits.maxBytes },
          'spool full: dropping the oldest messages',
        );
      }
    }
  }

  private insertSnapshot(s: SnapshotBlob): void {
    const bytes = s.jpeg.length;
    if (this.stmt.insertSnapshot.run(s.id, s.jpeg, bytes, Date.now()).changes === 0) return;
    this.snapshotRows++;
    this.snapshotBytes += bytes;
    if (this.snapshotBytes <= this.limits.maxSnapshotBytes) return;
    const start = this.snapshotsDropped;
    for (const v of this.stmt.snapshotVictims.all(this.snapshotRows)) {
      if (this.snapshotBytes <= this.limits.maxSnapshotBytes) break;
      this.stmt.deleteSnapshot.run(v.id);
      this.snapshotRows--;
      this.snapshotBytes -= v.bytes;
      this.snapshotsDropped++;
    }
    this.stmt.setCounter.run('snapshotsDropped', this.snapshotsDropped);
    if (start === 0 || Math.floor(start / 100) !== Math.floor(this.snapshotsDropped / 100)) {
      this.log.warn(
        { dropped: this.snapshotsDropped, maxSnapshotBytes: this.limits.maxSnapshotBytes },
        'snapshot queue full: dropping the oldest snapshots',
      );
    }
  }
}
