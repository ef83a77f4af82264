import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { ArgusError } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { SpoolSettings } from './config.ts';

export type SpoolKind = 'event' | 'status' | 'cmd_result' | 'update';

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
  harvest: { pending: number; bytes: number; dropped: number };
  /** how full the fullest of the spool's limits is (0..1): messages, bytes, snapshots, snapshot bytes */
  fill: number;
}

/**
 * the queues of pictures waiting for upload, each bounded on its own: event snapshots, and frames
 * harvested for the loop (which must never push an event's snapshot out)
 */
export type BlobQueue = 'snapshot' | 'harvest';

export interface SnapshotBlob {
  id: string;
  jpeg: Buffer;
  /** of a harvested frame: the query string of its upload (what the box knows of it) */
  upload?: string;
}

/** a harvested frame kept: when (ms, epoch) and its bytes, for the budget to carry over restarts */
export interface HarvestSpentRecord {
  at: number;
  bytes: number;
}

/** the last spooled message of an event not ended yet, kept so that a restart can end it */
export interface OpenEventRecord {
  id: string;
  camera: string;
  /** the event message as it was spooled (JSON) */
  message: string;
}

export type SpoolLimits = Pick<
  SpoolSettings,
  | 'maxMessages'
  | 'maxBytes'
  | 'maxSnapshots'
  | 'maxSnapshotBytes'
  | 'maxHarvestFrames'
  | 'maxHarvestBytes'
  | 'sync'
>;

/** open events recorded at most (a pipeline keeps far fewer open; beyond it they are not recorded) */
export const MAX_OPEN_EVENTS = 10_000;

export const SCHEMA_VERSION = 3;
const DROP_LOG_INTERVAL_MS = 60_000;

/**
 * One step per schema version, run in order in one transaction from the file's `user_version`.
 * Never edit a step: add one.
 */
const MIGRATIONS: readonly string[] = [
  // 1: messages, snapshots with their JPEG in the row, per-camera numbering, counters
  `
CREATE TABLE messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  topic TEXT NOT NULL,
  payload TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  created_ms INTEGER NOT NULL
);
CREATE TABLE snapshots (
  n INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  jpeg BLOB NOT NULL,
  bytes INTEGER NOT NULL,
  created_ms INTEGER NOT NULL
);
CREATE TABLE camera_seq (camera TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
`,
  // 2: snapshot metadata apart from the JPEGs (choosing victims reads no picture), running totals
  // (no sum over the rows at start), the record of open events
  `
CREATE TABLE snapshot_meta (
  n INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  bytes INTEGER NOT NULL,
  created_ms INTEGER NOT NULL
);
CREATE TABLE snapshot_data (n INTEGER PRIMARY KEY, jpeg BLOB NOT NULL);
INSERT INTO snapshot_meta (n, id, bytes, created_ms) SELECT n, id, bytes, created_ms FROM snapshots;
INSERT INTO snapshot_data (n, jpeg) SELECT n, jpeg FROM snapshots;
DROP TABLE snapshots;
INSERT INTO counters (name, value) SELECT name, value FROM (
  SELECT 'rows' AS name, count(*) AS value FROM messages UNION ALL
  SELECT 'rowBytes', coalesce(sum(bytes), 0) FROM messages UNION ALL
  SELECT 'snapshotRows', count(*) FROM snapshot_meta UNION ALL
  SELECT 'snapshotBytes', coalesce(sum(bytes), 0) FROM snapshot_meta
) WHERE true ON CONFLICT (name) DO UPDATE SET value = excluded.value;
CREATE TABLE open_events (id TEXT PRIMARY KEY, camera TEXT NOT NULL, message TEXT NOT NULL);
`,
  // 3: a second queue of pictures, harvested frames (issue 18), with its upload's query string;
  // the record of frames harvested in the last day, so the budget carries over a restart
  `
ALTER TABLE snapshot_meta ADD COLUMN queue TEXT NOT NULL DEFAULT 'snapshot';
ALTER TABLE snapshot_meta ADD COLUMN upload TEXT;
CREATE INDEX snapshot_meta_queue ON snapshot_meta (queue, n);
CREATE TABLE harvest_spent (at_ms INTEGER NOT NULL, bytes INTEGER NOT NULL);
CREATE INDEX harvest_spent_at ON harvest_spent (at_ms);
`,
];

/** the running totals, kept in `counters` in the transaction that changes them */
const TOTALS = [
  'rows',
  'rowBytes',
  'dropped',
  'snapshotRows',
  'snapshotBytes',
  'snapshotsDropped',
  'harvestRows',
  'harvestBytes',
  'harvestDropped',
] as const;
type Totals = Record<(typeof TOTALS)[number], number>;
type Total = (typeof TOTALS)[number];

/** each picture queue's running totals and limits */
const QUEUES: Record<
  BlobQueue,
  { rows: Total; bytes: Total; dropped: Total; maxRows: keyof SpoolLimits; maxBytes: keyof SpoolLimits }
> = {
  snapshot: {
    rows: 'snapshotRows',
    bytes: 'snapshotBytes',
    dropped: 'snapshotsDropped',
    maxRows: 'maxSnapshots',
    maxBytes: 'maxSnapshotBytes',
  },
  harvest: {
    rows: 'harvestRows',
    bytes: 'harvestBytes',
    dropped: 'harvestDropped',
    maxRows: 'maxHarvestFrames',
    maxBytes: 'maxHarvestBytes',
  },
};
const DAY_MS = 86_400_000;

/**
 * The on-box store-and-forward queue (SQLite, WAL). Every outgoing event, camera status and command
 * result is written here in one transaction before it is published, and deleted only after the
 * broker's PUBACK. Messages are handed to the uplink in `seq` order through a lease cursor: a
 * message is leased once per process lifetime unless the transport gives it back (`unlease`), so
 * the agent itself never publishes a message twice while the MQTT client still holds it. The spool
 * is bounded by count and bytes: when full, the oldest messages are dropped and counted — also one
 * the transport still holds (sent, its PUBACK outstanding): if that PUBACK comes after all, the
 * message was delivered and the count goes back down, so the count is what the receiver misses.
 * Per-camera `cameraSeq` counters live here too, so they keep increasing across restarts.
 * Snapshots waiting for upload are a second queue, bounded by count and bytes the same way; their
 * metadata sits apart from the JPEGs, so choosing what to drop reads no picture.
 *
 * Upkeep costs the same with 10 items or 10 million: counts and bytes are running totals (kept in
 * the same transaction as the rows), victims are read oldest-first from the primary key, a few at a
 * time. The last message of every event not ended yet is recorded (`openEvents`), so that the next
 * start can end what a crash left open.
 *
 * One agent per spool: the file is locked exclusively while open.
 */
export class Spool {
  private readonly db: Database.Database;
  private readonly limits: SpoolLimits;
  private readonly log: Logger;
  private readonly t: Totals;
  private openRows = 0;
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
  private openEventsFullLogged = false;
  private readonly dropLoggedAt = { messages: 0, snapshots: 0, harvest: 0 };

  private readonly stmt: {
    insert: Database.Statement<[string, string, string, number, number]>;
    nextCameraSeq: Database.Statement<[string], { next: number }>;
    after: Database.Statement<[number, number], SpooledMessage & { bytes: number }>;
    victims: Database.Statement<[number, number], { seq: number; bytes: number }>;
    deleteSeq: Database.Statement<[number]>;
    setCounter: Database.Statement<[string, number]>;
    insertSnapshotMeta: Database.Statement<[string, number, number, string, string | null]>;
    insertSnapshotData: Database.Statement<[number, Buffer]>;
    oldestSnapshot: Database.Statement<[string], SnapshotBlob & { upload: string | null }>;
    snapshotVictims: Database.Statement<[string, number], { n: number; bytes: number; queue: BlobQueue }>;
    snapshotById: Database.Statement<[string], { n: number; bytes: number; queue: BlobQueue }>;
    insertSpent: Database.Statement<[number, number]>;
    pruneSpent: Database.Statement<[number]>;
    deleteSnapshotMeta: Database.Statement<[number]>;
    deleteSnapshotData: Database.Statement<[number]>;
    upsertOpenEvent: Database.Statement<[string, string, string]>;
    deleteOpenEvent: Database.Statement<[string]>;
    hasOpenEvent: Database.Statement<[string], { id: string }>;
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
      insertSnapshotMeta: db.prepare(
        'INSERT OR IGNORE INTO snapshot_meta (id, bytes, created_ms, queue, upload) VALUES (?, ?, ?, ?, ?)',
      ),
      insertSnapshotData: db.prepare('INSERT INTO snapshot_data (n, jpeg) VALUES (?, ?)'),
      oldestSnapshot: db.prepare(
        'SELECT m.id AS id, d.jpeg AS jpeg, m.upload AS upload FROM snapshot_meta m JOIN snapshot_data d ON d.n = m.n WHERE m.queue = ? ORDER BY m.n LIMIT 1',
      ),
      snapshotVictims: db.prepare(
        'SELECT n, bytes, queue FROM snapshot_meta WHERE queue = ? ORDER BY n LIMIT ?',
      ),
      snapshotById: db.prepare('SELECT n, bytes, queue FROM snapshot_meta WHERE id = ?'),
      insertSpent: db.prepare('INSERT INTO harvest_spent (at_ms, bytes) VALUES (?, ?)'),
      pruneSpent: db.prepare('DELETE FROM harvest_spent WHERE at_ms <= ?'),
      deleteSnapshotMeta: db.prepare('DELETE FROM snapshot_meta WHERE n = ?'),
      deleteSnapshotData: db.prepare('DELETE FROM snapshot_data WHERE n = ?'),
      upsertOpenEvent: db.prepare(
        'INSERT INTO open_events (id, camera, message) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET message = excluded.message',
      ),
      deleteOpenEvent: db.prepare('DELETE FROM open_events WHERE id = ?'),
      hasOpenEvent: db.prepare('SELECT id FROM open_events WHERE id = ?'),
    };
    const counter = db.prepare<[string], { value: number }>('SELECT value FROM counters WHERE name = ?');
    this.t = Object.fromEntries(TOTALS.map((name) => [name, counter.get(name)?.value ?? 0])) as Totals;
    this.openRows = (db.prepare('SELECT count(*) AS n FROM open_events').get() as { n: number }).n;
  }

  /** opens (creating or migrating if needed) the spool at `path` and takes its lock */
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
      if (version < SCHEMA_VERSION) {
        const steps = MIGRATIONS.slice(version).join('\n');
        db.exec(`BEGIN IMMEDIATE; ${steps} PRAGMA user_version = ${SCHEMA_VERSION}; COMMIT;`);
        if (version > 0) log.info({ path, from: version, to: SCHEMA_VERSION }, 'spool schema migrated');
      }
      const spool = new Spool(db, limits, log);
      if (spool.t.rows > 0)
        log.info({ pending: spool.t.rows, bytes: spool.t.rowBytes }, 'spool has messages to replay');
      return spool;
    } catch (err) {
      if (db?.inTransaction) db.exec('ROLLBACK');
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
   * In the same transaction: the snapshot, when given, is stored, and with `openEvent` the record
   * of open events takes the payload as the event's last message (`open`) or forgets the event.
   */
  appendForCamera(
    kind: SpoolKind,
    topic: string,
    camera: string,
    build: (cameraSeq: number) => string,
    extras: { snapshot?: SnapshotBlob; openEvent?: { id: string; open: boolean } } = {},
  ): { seq: number; cameraSeq: number } {
    return this.tx(() => {
      const cameraSeq = this.stmt.nextCameraSeq.get(camera)!.next;
      const payload = build(cameraSeq);
      if (extras.snapshot) this.insertSnapshot(extras.snapshot);
      if (extras.openEvent) this.recordOpenEvent(extras.openEvent.id, camera, payload, extras.openEvent.open);
      return { seq: this.insert(kind, topic, payload), cameraSeq };
    });
  }

  /** stores a snapshot for upload (one not referenced by an event, e.g. "snapshot now") */
  addSnapshot(snapshot: SnapshotBlob): void {
    this.tx(() => this.insertSnapshot(snapshot));
  }

  /**
   * stores a harvested frame for upload and, in the same transaction, that it was kept (`at`, ms):
   * the budget's record, which outlives the frame's upload (harvestSpent)
   */
  addHarvested(frame: SnapshotBlob & { upload: string }, at: number): void {
    this.tx(() => {
      this.stmt.pruneSpent.run(at - DAY_MS);
      this.stmt.insertSpent.run(at, frame.jpeg.length);
      this.insertSnapshot(frame, 'harvest');
    });
  }

  /** the harvested frames kept in the 24 hours before `now` (ms): a restarted selector's history */
  harvestSpent(now: number): HarvestSpentRecord[] {
    return this.db
      .prepare<[number], HarvestSpentRecord>(
        'SELECT at_ms AS at, bytes FROM harvest_spent WHERE at_ms > ? ORDER BY at_ms',
      )
      .all(now - DAY_MS);
  }

  /** drops the record of an open event (one that cannot be read) */
  forgetOpenEvent(id: string): void {
    this.tx(() => this.recordOpenEvent(id, '', '', false));
  }

  /** the events whose last spooled message was not an `end`, oldest first */
  openEvents(): OpenEventRecord[] {
    return this.db
      .prepare<[], OpenEventRecord>('SELECT id, camera, message FROM open_events ORDER BY rowid')
      .all();
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
      this.t.dropped--;
      this.stmt.setCounter.run('dropped', this.t.dropped);
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
      this.t.rows -= seqs.length;
      this.t.rowBytes -= bytes;
    });
    this.acked = [];
    this.ackedBytes = 0;
  }

  /** the oldest picture waiting in `queue` */
  oldestSnapshot(queue: BlobQueue = 'snapshot'): SnapshotBlob | undefined {
    const row = this.stmt.oldestSnapshot.get(queue);
    if (!row) return undefined;
    return { id: row.id, jpeg: row.jpeg, ...(row.upload !== null ? { upload: row.upload } : {}) };
  }

  hasSnapshot(id: string): boolean {
    return this.stmt.snapshotById.get(id) !== undefined;
  }

  removeSnapshot(id: string): void {
    if (this.closed) return;
    const row = this.stmt.snapshotById.get(id);
    if (!row) return;
    this.tx(() => this.deleteSnapshot(row));
  }

  stats(): SpoolStats {
    const pending = this.t.rows - this.acked.length;
    const bytes = this.t.rowBytes - this.ackedBytes;
    const l = this.limits;
    const share = (n: number, max: number) => (max > 0 ? n / max : n > 0 ? 1 : 0);
    return {
      pending,
      bytes,
      dropped: this.t.dropped,
      snapshots: {
        pending: this.t.snapshotRows,
        bytes: this.t.snapshotBytes,
        dropped: this.t.snapshotsDropped,
      },
      harvest: {
        pending: this.t.harvestRows,
        bytes: this.t.harvestBytes,
        dropped: this.t.harvestDropped,
      },
      fill: Math.min(
        1,
        Math.max(
          share(pending, l.maxMessages),
          share(bytes, l.maxBytes),
          share(this.t.snapshotRows, l.maxSnapshots),
          share(this.t.snapshotBytes, l.maxSnapshotBytes),
          share(this.t.harvestRows, l.maxHarvestFrames),
          share(this.t.harvestBytes, l.maxHarvestBytes),
        ),
      ),
    };
  }

  close(): void {
    if (this.closed) return;
    this.flushAcks();
    this.closed = true;
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }

  /** runs `fn` in a transaction that also writes the running totals it changed */
  private tx<T>(fn: () => T): T {
    if (this.closed) throw new ArgusError('the spool is closed');
    return this.db.transaction(() => {
      const before = { ...this.t };
      try {
        const result = fn();
        for (const name of TOTALS)
          if (this.t[name] !== before[name]) this.stmt.setCounter.run(name, this.t[name]);
        return result;
      } catch (err) {
        Object.assign(this.t, before);
        throw err;
      }
    })();
  }

  private insert(kind: SpoolKind, topic: string, payload: string): number {
    const bytes = Buffer.byteLength(payload) + topic.length;
    const seq = Number(this.stmt.insert.run(kind, topic, payload, bytes, Date.now()).lastInsertRowid);
    this.t.rows++;
    this.t.rowBytes += bytes;
    this.evictMessages(seq);
    return seq;
  }

  /** drops the oldest messages until the spool is within its limits */
  private evictMessages(newest: number): void {
    const over = () =>
      this.t.rows - this.acked.length > this.limits.maxMessages ||
      this.t.rowBytes - this.ackedBytes > this.limits.maxBytes;
    if (!over()) return;
    this.flushAcks();
    const before = this.t.dropped;
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
        this.t.rows--;
        this.t.rowBytes -= v.bytes;
        this.t.dropped++;
      }
    }
    if (this.t.dropped !== before && this.dropLogDue('messages')) {
      this.log.warn(
        { dropped: this.t.dropped, maxMessages: this.limits.maxMessages, maxBytes: this.limits.maxBytes },
        'spool full: dropping the oldest messages',
      );
    }
  }

  private insertSnapshot(s: SnapshotBlob, queue: BlobQueue = 'snapshot'): void {
    const q = QUEUES[queue];
    const bytes = s.jpeg.length;
    const meta = this.stmt.insertSnapshotMeta.run(s.id, bytes, Date.now(), queue, s.upload ?? null);
    if (meta.changes === 0) return;
    this.stmt.insertSnapshotData.run(Number(meta.lastInsertRowid), s.jpeg);
    this.t[q.rows]++;
    this.t[q.bytes] += bytes;
    const over = () =>
      this.t[q.bytes] > (this.limits[q.maxBytes] as number) ||
      this.t[q.rows] > (this.limits[q.maxRows] as number);
    if (!over()) return;
    const start = this.t[q.dropped];
    while (over()) {
      const victims = this.stmt.snapshotVictims.all(queue, 16);
      if (victims.length === 0) break;
      for (const v of victims) {
        if (!over()) break;
        this.deleteSnapshot(v);
        this.t[q.dropped]++;
      }
    }
    if (this.t[q.dropped] !== start && this.dropLogDue(queue === 'snapshot' ? 'snapshots' : 'harvest')) {
      this.log.warn(
        { queue, dropped: this.t[q.dropped], max: this.limits[q.maxRows], maxBytes: this.limits[q.maxBytes] },
        `${queue === 'snapshot' ? 'snapshot' : 'harvested frame'} queue full: dropping the oldest`,
      );
    }
  }

  /** dropping is logged when it starts, then at most once a minute (telemetry counts every drop) */
  private dropLogDue(queue: 'messages' | 'snapshots' | 'harvest'): boolean {
    const now = Date.now();
    if (now - this.dropLoggedAt[queue] < DROP_LOG_INTERVAL_MS) return false;
    this.dropLoggedAt[queue] = now;
    return true;
  }

  private deleteSnapshot(row: { n: number; bytes: number; queue: BlobQueue }): void {
    const q = QUEUES[row.queue];
    this.stmt.deleteSnapshotMeta.run(row.n);
    this.stmt.deleteSnapshotData.run(row.n);
    this.t[q.rows]--;
    this.t[q.bytes] -= row.bytes;
  }

  private recordOpenEvent(id: string, camera: string, payload: string, open: boolean): void {
    if (!open) {
      if (this.stmt.deleteOpenEvent.run(id).changes > 0) this.openRows--;
      return;
    }
    if (this.openRows >= MAX_OPEN_EVENTS && !this.stmt.hasOpenEvent.get(id)) {
      if (!this.openEventsFullLogged)
        this.log.warn(
          { max: MAX_OPEN_EVENTS },
          'too many open events to record; a restart will not end the newest ones',
        );
      this.openEventsFullLogged = true;
      return;
    }
    const existed = this.stmt.hasOpenEvent.get(id) !== undefined;
    this.stmt.upsertOpenEvent.run(id, camera, payload);
    if (!existed) this.openRows++;
  }
}
