import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { ArgusError } from '../../common/errors.ts';
import { createLogger } from '../../common/logger.ts';
import { SCHEMA_VERSION, Spool, type SpoolLimits } from '../../device/spool.ts';

const log = createLogger('spool-test');
const roomy: SpoolLimits = {
  maxMessages: 100_000,
  maxBytes: 64 * 1024 * 1024,
  maxSnapshots: 1000,
  maxSnapshotBytes: 1024 * 1024,
  maxHarvestFrames: 100,
  maxHarvestBytes: 1024 * 1024,
  sync: 'full',
};
const tick = () => new Promise((r) => setImmediate(r));

describe('event spool', () => {
  let dir: string;
  let n = 0;
  const path = () => join(dir, `spool-${n++}.db`);
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-spool-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('hands messages out in order, once each, and deletes them on ack', async () => {
    const spool = Spool.open(path(), roomy, log);
    for (let i = 0; i < 10; i++) spool.append('event', 't', `m${i}`);
    const first = spool.lease(4);
    assert.deepEqual(
      first.map((m) => m.payload),
      ['m0', 'm1', 'm2', 'm3'],
    );
    assert.deepEqual(
      spool.lease(3).map((m) => m.payload),
      ['m4', 'm5', 'm6'],
      'leased messages are not handed out again',
    );
    assert.equal(spool.leasedCount, 7);
    for (const m of first) spool.ack(m.seq);
    assert.equal(spool.stats().pending, 6);
    await tick();
    assert.equal(spool.leasedCount, 3);
    spool.close();
  });

  it('hands a message given back by the transport out again, in order, before newer ones', () => {
    const spool = Spool.open(path(), roomy, log);
    for (let i = 0; i < 6; i++) spool.append('event', 't', `m${i}`);
    const leased = spool.lease(4);
    spool.ack(leased[0]!.seq);
    spool.ack(leased[1]!.seq);
    spool.unlease(leased[2]!.seq);
    spool.unlease(leased[3]!.seq);
    assert.deepEqual(
      spool.lease(10).map((m) => m.payload),
      ['m2', 'm3', 'm4', 'm5'],
    );
    spool.close();
  });

  it('replays everything unacknowledged after a restart, oldest first', () => {
    const file = path();
    const a = Spool.open(file, roomy, log);
    for (let i = 0; i < 5; i++) a.append('event', 't', `m${i}`);
    const leased = a.lease(5);
    a.ack(leased[0]!.seq);
    a.flushAcks();
    a.close();
    const b = Spool.open(file, roomy, log);
    assert.equal(b.stats().pending, 4);
    assert.deepEqual(
      b.lease(10).map((m) => m.payload),
      ['m1', 'm2', 'm3', 'm4'],
    );
    b.close();
  });

  it('numbers each camera strictly increasing, across restarts, and only for spooled messages', () => {
    const file = path();
    const a = Spool.open(file, roomy, log);
    const seqs = (camera: string) =>
      a.appendForCamera('event', 't', camera, (s) => `${camera}:${s}`).cameraSeq;
    assert.deepEqual([seqs('a'), seqs('a'), seqs('b'), seqs('a')], [0, 1, 0, 2]);
    assert.throws(() =>
      a.appendForCamera('event', 't', 'a', () => {
        throw new Error('invalid message');
      }),
    );
    assert.equal(a.stats().pending, 4, 'a message that failed to build is not spooled');
    a.close();
    const b = Spool.open(file, roomy, log);
    assert.equal(b.appendForCamera('event', 't', 'a', (s) => `a:${s}`).cameraSeq, 3);
    assert.equal(b.appendForCamera('event', 't', 'b', (s) => `b:${s}`).cameraSeq, 1);
    b.close();
  });

  it('when full, drops the oldest messages first and counts them, across restarts', () => {
    const file = path();
    const a = Spool.open(file, { ...roomy, maxMessages: 10 }, log);
    for (let i = 0; i < 25; i++) a.append('event', 't', `m${i}`);
    assert.deepEqual(
      { pending: a.stats().pending, dropped: a.stats().dropped },
      { pending: 10, dropped: 15 },
    );
    assert.deepEqual(
      a.lease(100).map((m) => m.payload),
      Array.from({ length: 10 }, (_, i) => `m${i + 15}`),
    );
    a.close();
    const b = Spool.open(file, { ...roomy, maxMessages: 10 }, log);
    assert.equal(b.stats().dropped, 15);
    b.close();
  });

  it('drops the oldest even while the transport holds it, and counts only what is not delivered', () => {
    const spool = Spool.open(path(), { ...roomy, maxMessages: 10 }, log);
    for (let i = 0; i < 10; i++) spool.append('event', 't', `m${i}`);
    const held = spool.lease(3);
    for (let i = 10; i < 15; i++) spool.append('event', 't', `m${i}`);
    assert.deepEqual(
      { pending: spool.stats().pending, dropped: spool.stats().dropped },
      { pending: 10, dropped: 5 },
    );
    assert.equal(spool.leasedCount, 3, 'the transport still holds m0–m2: they still fill its window');
    // m0 and m1 were delivered after all; m2 came back unsent and stays dropped
    spool.ack(held[0]!.seq);
    spool.ack(held[1]!.seq);
    spool.unlease(held[2]!.seq);
    spool.flushAcks();
    assert.equal(spool.stats().dropped, 3);
    assert.equal(spool.leasedCount, 0);
    assert.deepEqual(
      spool.lease(100).map((m) => m.payload),
      ['m5', 'm6', 'm7', 'm8', 'm9', 'm10', 'm11', 'm12', 'm13', 'm14'],
      'm0–m4 were the oldest; none is handed out again',
    );
    spool.close();
  });

  it('is bounded in bytes too', () => {
    const spool = Spool.open(path(), { ...roomy, maxBytes: 256 * 1024 }, log);
    const payload = 'x'.repeat(1000);
    for (let i = 0; i < 400; i++) spool.append('event', 'topic', payload);
    const { bytes, pending, dropped } = spool.stats();
    assert.ok(bytes <= 256 * 1024, `${bytes} bytes`);
    assert.equal(pending + dropped, 400);
    assert.ok(dropped > 0);
    spool.close();
  });

  it('keeps snapshots for upload within their own byte limit, oldest dropped first', () => {
    const spool = Spool.open(path(), { ...roomy, maxSnapshotBytes: 3000 }, log);
    for (let i = 0; i < 5; i++) spool.addSnapshot({ id: `snapshot-${i}`, jpeg: Buffer.alloc(1000, i) });
    const s = spool.stats().snapshots;
    assert.deepEqual(s, { pending: 3, bytes: 3000, dropped: 2 });
    assert.equal(spool.oldestSnapshot()?.id, 'snapshot-2');
    spool.removeSnapshot('snapshot-2');
    assert.equal(spool.oldestSnapshot()?.id, 'snapshot-3');
    spool.close();
  });

  it('keeps snapshots within their count limit too, and their totals across restarts', () => {
    const file = path();
    const a = Spool.open(file, { ...roomy, maxSnapshots: 4 }, log);
    for (let i = 0; i < 10; i++) a.addSnapshot({ id: `snapshot-${i}`, jpeg: Buffer.alloc(100 + i, i) });
    assert.deepEqual(a.stats().snapshots, { pending: 4, bytes: 106 + 107 + 108 + 109, dropped: 6 });
    assert.equal(a.oldestSnapshot()?.id, 'snapshot-6');
    assert.equal(a.stats().fill, 1);
    a.close();
    const b = Spool.open(file, { ...roomy, maxSnapshots: 4 }, log);
    assert.deepEqual(b.stats().snapshots, { pending: 4, bytes: 106 + 107 + 108 + 109, dropped: 6 });
    assert.deepEqual(b.oldestSnapshot()?.jpeg, Buffer.alloc(106, 6));
    b.close();
  });

  it('reports how full its fullest limit is', () => {
    const spool = Spool.open(path(), { ...roomy, maxMessages: 10 }, log);
    for (let i = 0; i < 9; i++) spool.append('event', 't', `m${i}`);
    assert.equal(spool.stats().fill, 0.9);
    spool.close();
  });

  it('records the events left open, in the transaction of their message, across restarts', () => {
    const file = path();
    const a = Spool.open(file, roomy, log);
    const event = (id: string, phase: string) =>
      a.appendForCamera('event', 't', 'cam-1', (s) => JSON.stringify({ id, phase, s }), {
        openEvent: { id, open: phase !== 'end' },
      });
    event('e1', 'new');
    event('e2', 'new');
    event('e1', 'update');
    event('e3', 'new');
    event('e2', 'end');
    assert.throws(() =>
      a.appendForCamera(
        'event',
        't',
        'cam-1',
        () => {
          throw new Error('invalid');
        },
        { openEvent: { id: 'e4', open: true } },
      ),
    );
    a.close();
    const b = Spool.open(file, roomy, log);
    assert.deepEqual(
      b.openEvents().map((r) => ({ id: r.id, camera: r.camera, message: JSON.parse(r.message) })),
      [
        { id: 'e1', camera: 'cam-1', message: { id: 'e1', phase: 'update', s: 2 } },
        { id: 'e3', camera: 'cam-1', message: { id: 'e3', phase: 'new', s: 3 } },
      ],
    );
    b.close();
  });

  it('keeps harvested frames in a queue of their own: bounded apart, never pushing out a snapshot; their cost outlives their upload', () => {
    const spool = Spool.open(path(), { ...roomy, maxHarvestFrames: 3 }, log);
    const now = Date.now();
    for (let i = 0; i < 2; i++) spool.addSnapshot({ id: `snapshot-${i}`, jpeg: Buffer.alloc(100, i) });
    for (let i = 0; i < 5; i++)
      spool.addHarvested(
        { id: `frame-${i}`, jpeg: Buffer.alloc(200, i), upload: `camera=c&n=${i}` },
        now + i,
      );
    const s = spool.stats();
    assert.deepEqual(s.snapshots, { pending: 2, bytes: 200, dropped: 0 });
    assert.deepEqual(s.harvest, { pending: 3, bytes: 600, dropped: 2 });
    assert.deepEqual(spool.oldestSnapshot('harvest'), {
      id: 'frame-2',
      jpeg: Buffer.alloc(200, 2),
      upload: 'camera=c&n=2',
    });
    assert.equal(spool.oldestSnapshot()?.id, 'snapshot-0');
    spool.removeSnapshot('frame-2');
    assert.equal(spool.stats().harvest.pending, 2);
    assert.equal(spool.harvestSpent(now + 10).length, 5, 'every kept frame counts against the budget');
    assert.equal(spool.harvestSpent(now + 86_400_002).length, 2, 'for 24 hours');
    spool.close();
  });

  it('migrates a schema 1 spool, keeping its messages, snapshots, numbering and counts', () => {
    const file = path();
    const old = new Database(file);
    old.exec(`
      CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, topic TEXT NOT NULL,
        payload TEXT NOT NULL, bytes INTEGER NOT NULL, created_ms INTEGER NOT NULL);
      CREATE TABLE snapshots (n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, jpeg BLOB NOT NULL,
        bytes INTEGER NOT NULL, created_ms INTEGER NOT NULL);
      CREATE TABLE camera_seq (camera TEXT PRIMARY KEY, next INTEGER NOT NULL);
      CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
      INSERT INTO messages (kind, topic, payload, bytes, created_ms) VALUES ('event', 't', 'old-1', 6, 1), ('event', 't', 'old-2', 6, 2);
      INSERT INTO camera_seq VALUES ('cam-1', 41);
      INSERT INTO counters VALUES ('dropped', 7), ('snapshotsDropped', 3);
      PRAGMA user_version = 1;
    `);
    const insert = old.prepare('INSERT INTO snapshots (id, jpeg, bytes, created_ms) VALUES (?, ?, ?, ?)');
    insert.run('snap-a', Buffer.alloc(500, 1), 500, 1);
    insert.run('snap-b', Buffer.alloc(300, 2), 300, 2);
    old.close();
    const spool = Spool.open(file, roomy, log);
    assert.deepEqual(spool.stats(), {
      pending: 2,
      bytes: 12,
      dropped: 7,
      snapshots: { pending: 2, bytes: 800, dropped: 3 },
      harvest: { pending: 0, bytes: 0, dropped: 0 },
      fill: 2 / roomy.maxSnapshots,
    });
    assert.deepEqual(
      spool.lease(10).map((m) => m.payload),
      ['old-1', 'old-2'],
    );
    assert.deepEqual(spool.oldestSnapshot(), { id: 'snap-a', jpeg: Buffer.alloc(500, 1) });
    spool.removeSnapshot('snap-a');
    assert.deepEqual(spool.oldestSnapshot(), { id: 'snap-b', jpeg: Buffer.alloc(300, 2) });
    assert.equal(
      spool.oldestSnapshot('harvest'),
      undefined,
      'the migrated snapshots stay in their own queue',
    );
    assert.equal(spool.appendForCamera('event', 't', 'cam-1', (s) => `m${s}`).cameraSeq, 42);
    spool.close();
    const raw = new Database(file, { readonly: true });
    assert.equal(raw.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    raw.close();
    const again = Spool.open(file, roomy, log);
    assert.equal(again.stats().snapshots.pending, 1);
    again.close();
  });

  it('refuses a second agent on the same spool', () => {
    const file = path();
    const a = Spool.open(file, roomy, log);
    assert.throws(
      () => Spool.open(file, roomy, log),
      (err: unknown) => err instanceof ArgusError && /in use by another process/.test(err.message),
    );
    a.close();
    Spool.open(file, roomy, log).close();
  });

  it('keeps every event of a burst, reopened, with sync=full (an fsync per event); its rate is a diagnostic', (t) => {
    const file = path();
    const spool = Spool.open(file, roomy, log);
    const payload = JSON.stringify({ filler: 'x'.repeat(650) });
    const count = 2000;
    const started = performance.now();
    for (let i = 0; i < count; i++)
      spool.appendForCamera('event', 'argus/v1/box/events', `cam-${i % 4}`, () => payload);
    const perSecond = count / ((performance.now() - started) / 1000);
    // the rate depends on the disk and its other users: bench:spool measures it, not an assertion
    t.diagnostic(`spool append (sync=full): ${perSecond.toFixed(0)} events/s`);
    spool.close();
    const reopened = Spool.open(file, roomy, log);
    assert.equal(reopened.stats().pending, count);
    const seqs = reopened.lease(count).map((m) => m.seq);
    assert.equal(seqs.length, count);
    assert.ok(
      seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]!),
      'handed out in order',
    );
    reopened.close();
  });
});
