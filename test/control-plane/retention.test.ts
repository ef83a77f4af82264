import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { topics } from '../../contract/index.ts';
import type { StorageSettings } from '../../control-plane/config.ts';
import { controlPlaneConfig, Metrics, openRepository } from '../../control-plane/index.ts';
import { RETENTION_KINDS } from '../../control-plane/retention/kinds.ts';
import { Retention } from '../../control-plane/retention/retention.ts';
import type { IngestRecord, Repository } from '../../control-plane/storage/repository.ts';
import { PostgresServer } from '../helpers/postgres.ts';
import { telemetry } from '../helpers/telemetry.ts';
import { eventMessage } from './fixtures.ts';
import { deviceClient, metric, startTestControlPlane } from './setup.ts';

const DAY = 24 * 3600 * 1000;
/** fast-check's seed for the size property: a failure replays with it */
const PROPERTY_SEED = 1507;
const MIB = 1024 * 1024;
const iso = (ms: number) => new Date(ms).toISOString();

/** limits small enough for a test database to go past them */
const LIMITS = {
  events: { maxAgeDays: 30, maxMiB: 1 },
  snapshots: { maxAgeDays: 7, maxMiB: 1 },
  cameraStatuses: { maxAgeDays: 30, maxMiB: 64 },
  telemetry: { maxAgeDays: 14, maxMiB: 0.125 },
  availability: { maxAgeDays: 30, maxMiB: 16 },
};

function record(
  kind: IngestRecord['kind'],
  device: string,
  message: unknown,
  receivedAt: number,
): IngestRecord {
  return { kind, device, message, payload: JSON.stringify(message), receivedAt } as IngestRecord;
}

/** what the test stored of each kind, oldest first: the keys it can look for afterwards */
interface Filled {
  recentEvents: string[];
  recentSnapshots: string[];
  recentTelemetry: number[];
}

/**
 * Fills a database past every limit of LIMITS: rows older than each kind's age limit, and (for
 * events, snapshots, telemetry) recent rows totalling several times the size limit
 */
async function fill(repo: Repository, now: number): Promise<Filled> {
  const pad = 'x'.repeat(600);
  const records: IngestRecord[] = [];
  const recentEvents: string[] = [];
  // 2000 events 31..40 days old, 3000 from the last day (~1 KB each: 3 MB, three times the limit)
  for (let i = 0; i < 5000; i++) {
    const old = i < 2000;
    const receivedAt = old ? now - 40 * DAY + i * 400_000 : now - DAY + (i - 2000) * 20_000;
    const m = eventMessage({ cameraSeq: i, at: iso(receivedAt), before: { pad } });
    if (!old) recentEvents.push(m.id);
    records.push(record('event', 'box-1', m, receivedAt));
  }
  // camera statuses over 60 days; cam-9's only status is old, and stays as its latest
  for (let i = 0; i < 600; i++) {
    const receivedAt = now - 60 * DAY + (i * DAY) / 10 + 3600_000; // none at the 30-day boundary
    const camera = `cam-${i % 3}`;
    records.push(
      record(
        'status',
        'box-1',
        {
          v: 1,
          id: `status-${String(i).padStart(6, '0')}`,
          device: 'box-1',
          camera,
          cameraSeq: i,
          state: i % 2 === 0 ? 'online' : 'offline',
          at: iso(receivedAt),
        },
        receivedAt,
      ),
    );
  }
  records.push(
    record(
      'status',
      'box-1',
      {
        v: 1,
        id: 'status-cam-9',
        device: 'box-1',
        camera: 'cam-9',
        cameraSeq: 0,
        state: 'online',
        at: iso(now - 45 * DAY),
      },
      now - 45 * DAY,
    ),
  );
  // telemetry: 500 messages 20 days old, 500 recent (~0.4 MB, three times the limit)
  const recentTelemetry: number[] = [];
  for (let i = 0; i < 1000; i++) {
    const at = i < 500 ? now - 20 * DAY + i * 1000 : now - 3600_000 + i * 1000;
    if (i >= 500) recentTelemetry.push(at);
    records.push(record('telemetry', 'box-1', telemetry('box-1', at), at));
  }
  // availability: 100 transitions 40 days old; quiet-box's only one is old and stays
  for (let i = 0; i < 100; i++) {
    const at = now - 40 * DAY + i * 60_000;
    records.push(
      record('available', 'box-1', { v: 1, state: i % 2 === 0 ? 'online' : 'offline', at: iso(at) }, at),
    );
  }
  records.push(record('available', 'quiet-box', { v: 1, state: 'online' }, now - 50 * DAY));
  for (let i = 0; i < records.length; i += 2500) await repo.writeBatch(records.slice(i, i + 2500));
  // snapshots: 50 of 10 days, 300 of the last day (10 KB each: 3 MB, three times the limit)
  const recentSnapshots: string[] = [];
  for (let i = 0; i < 350; i++) {
    const bytes = Buffer.alloc(10_000, i);
    const id = `snap-${String(i).padStart(6, '0')}`;
    const createdAt = i < 50 ? now - 10 * DAY + i * 1000 : now - DAY + i * 60_000;
    if (i >= 50) recentSnapshots.push(id);
    await repo.putSnapshot({
      id,
      device: 'box-1',
      contentType: 'image/jpeg',
      sha256: createHash('sha256').update(bytes).digest('hex'),
      bytes,
      createdAt,
    });
  }
  return { recentEvents, recentSnapshots, recentTelemetry };
}

/** the kind's estimated bytes, by the descriptor's own expression */
async function storedBytes(repo: Repository, name: string): Promise<number> {
  const kind = RETENTION_KINDS.find((k) => k.name === name)!;
  const [row] = await repo.sql.read<{ s: number | string | null }>(
    `SELECT sum(${kind.rowBytes}) AS s FROM ${kind.table}`,
  );
  return Number(row?.s ?? 0);
}

const count = async (repo: Repository, sql: string, params: (string | number)[] = []) =>
  Number((await repo.sql.read<{ n: number | string }>(sql, params))[0]!.n);

function retentionSuite(name: string, storage: () => Promise<StorageSettings>): void {
  describe(`retention (${name})`, () => {
    it('deletes by age and by size, oldest first, keeps the current state, and gives the space back', async () => {
      const settings = await storage();
      const repo = await openRepository(settings);
      try {
        const now = Date.now();
        const filled = await fill(repo, now);
        const pagesBefore =
          repo.backend === 'sqlite'
            ? await count(repo, 'SELECT page_count AS n FROM pragma_page_count()')
            : 0;
        const metrics = new Metrics();
        const config = controlPlaneConfig({ retention: { ...LIMITS, batchRows: 500, pauseMs: 0 } });
        // the run's clock starts at `now`, whatever the filling took
        const offset = Date.now() - now;
        const clock = () => Date.now() - offset;
        const report = await new Retention(
          repo,
          config.retention,
          metrics.retention,
          RETENTION_KINDS,
          clock,
        ).run();
        assert.equal(report.complete, true);

        // age: nothing older than each kind's limit is left, but each camera's and device's latest
        const { p } = repo.sql;
        assert.equal(
          await count(repo, `SELECT count(*) AS n FROM events WHERE received_at < ${p(1)}`, [now - 30 * DAY]),
          0,
        );
        assert.equal(
          await count(repo, `SELECT count(*) AS n FROM snapshots WHERE created_at < ${p(1)}`, [
            now - 7 * DAY,
          ]),
          0,
        );
        assert.equal(
          await count(repo, `SELECT count(*) AS n FROM telemetry_history WHERE received_at < ${p(1)}`, [
            now - 14 * DAY,
          ]),
          0,
        );
        const oldStatuses = await repo.sql.read<{ camera: string }>(
          `SELECT camera FROM camera_statuses WHERE received_at < ${p(1)} ORDER BY camera`,
          [now - 30 * DAY],
        );
        assert.deepEqual(
          oldStatuses.map((r) => r.camera),
          ['cam-9'],
        );
        assert.equal((await repo.getDevice('box-1'))?.cameras.length, 4);
        const oldAvailability = await repo.sql.read<{ device: string }>(
          `SELECT device FROM device_availability WHERE received_at < ${p(1)} ORDER BY device`,
          [now - 30 * DAY],
        );
        assert.deepEqual(
          oldAvailability.map((r) => r.device),
          ['box-1', 'quiet-box'],
          "each device's latest transition stays",
        );
        assert.equal(report.kinds.events!.deletedByAge, 2000);
        assert.equal(report.kinds.snapshots!.deletedByAge, 50);
        assert.equal(report.kinds.telemetry!.deletedByAge, 500);
        assert.equal(report.kinds.cameraStatuses!.deletedByAge, 300);

        // size: within the limit, and no more deleted than needed (the next newer row would not fit)
        for (const kind of ['events', 'snapshots', 'telemetry']) {
          const limit = LIMITS[kind as keyof typeof LIMITS].maxMiB * MIB;
          const stored = await storedBytes(repo, kind);
          assert.ok(stored <= limit, `${kind}: ${stored} > ${limit}`);
          assert.ok(stored > limit * 0.95, `${kind}: ${stored} bytes left, limit ${limit}`);
          assert.ok(report.kinds[kind]!.deletedBySize > 0, kind);
          assert.equal(report.kinds[kind]!.storedBytes, stored, `${kind}: the run's estimate`);
        }
        // the newest stay: what is left of the recent rows is their newest part
        const events = await repo.sql.read<{ id: string }>('SELECT id FROM events ORDER BY received_at');
        assert.deepEqual(
          events.map((r) => r.id),
          filled.recentEvents.slice(filled.recentEvents.length - events.length),
        );
        const snapshots = await repo.sql.read<{ id: string }>('SELECT id FROM snapshots ORDER BY created_at');
        assert.deepEqual(
          snapshots.map((r) => r.id),
          filled.recentSnapshots.slice(filled.recentSnapshots.length - snapshots.length),
        );
        const points = await repo.sql.read<{ at: number | string }>(
          'SELECT at FROM telemetry_history ORDER BY at',
        );
        assert.deepEqual(
          points.map((r) => Number(r.at)),
          filled.recentTelemetry.slice(filled.recentTelemetry.length - points.length),
        );

        // counted in /metrics
        const text = metrics.render({
          devicesOnline: 0,
          devicesSilent: 0,
          pending: 0,
          streamsCut: 0,
          retentionLeader: true,
        });
        assert.match(text, /argus_retention_rows_deleted_total\{kind="events",limit="age"\} 2000\n/);
        const bySize = Number(
          /argus_retention_rows_deleted_total\{kind="events",limit="size"\} (\d+)/.exec(text)?.[1],
        );
        assert.equal(bySize, report.kinds.events!.deletedBySize);
        assert.equal(2000 + bySize + events.length, 5000);
        assert.match(text, /argus_retention_runs_total 1\n/);
        assert.match(text, /argus_retention_last_run_duration_seconds \d/);

        if (repo.backend === 'sqlite') {
          // the file gave the deleted pages back (incremental vacuum)
          const pagesAfter = await count(repo, 'SELECT page_count AS n FROM pragma_page_count()');
          const pageSize = await count(repo, 'SELECT page_size AS n FROM pragma_page_size()');
          assert.equal(await count(repo, 'SELECT freelist_count AS n FROM pragma_freelist_count()'), 0);
          assert.ok(report.reclaimedBytes > 4 * MIB, `reclaimed ${report.reclaimedBytes}`);
          assert.equal((pagesBefore - pagesAfter) * pageSize, report.reclaimedBytes);
        }
        console.log(
          `retention (${name}): deleted`,
          Object.fromEntries(
            Object.entries(report.kinds).map(([k, r]) => [k, r.deletedByAge + r.deletedBySize]),
          ),
          `reclaimed ${(report.reclaimedBytes / MIB).toFixed(1)} MiB in ${metrics.retention.lastRunSeconds} s`,
        );
      } finally {
        await repo.close();
      }
    });

    it('keeps, of any rows and any size limit, the newest that fit and not one fewer (property)', async () => {
      const repo = await openRepository(await storage());
      const snapshots = RETENTION_KINDS.filter((k) => k.name === 'snapshots');
      const rowBytes = (n: number) => n + 200; // the snapshots descriptor: length(bytes) + 200
      try {
        await fc.assert(
          fc.asyncProperty(
            fc.array(
              fc.record({
                size: fc.integer({ min: 1, max: 40_000 }),
                age: fc.integer({ min: 0, max: 5000 }),
              }),
              {
                maxLength: 60,
              },
            ),
            fc.integer({ min: 1, max: 1_000_000 }),
            fc.integer({ min: 1, max: 25 }),
            async (rows, limitBytes, batchRows) => {
              await repo.sql.write([{ sql: 'DELETE FROM snapshots' }]);
              const now = Date.now();
              const stored = rows.map((r, i) => ({
                id: `prop-${String(i).padStart(4, '0')}`,
                ...r,
                createdAt: now - r.age,
              }));
              for (const r of stored) {
                const bytes = Buffer.alloc(r.size, 1);
                await repo.putSnapshot({
                  id: r.id,
                  device: 'box-1',
                  contentType: 'image/jpeg',
                  sha256: createHash('sha256').update(bytes).digest('hex'),
                  bytes,
                  createdAt: r.createdAt,
                });
              }
              const config = controlPlaneConfig({
                retention: { snapshots: { maxAgeDays: 1, maxMiB: limitBytes / MIB }, batchRows, pauseMs: 0 },
              });
              await new Retention(repo, config.retention, new Metrics().retention, snapshots).run();
              // oldest first (ties by id): what must stay is the longest newest suffix within the limit
              const order = [...stored].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
              let total = order.reduce((sum, r) => sum + rowBytes(r.size), 0);
              let first = 0;
              while (total > limitBytes) total -= rowBytes(order[first++]!.size);
              const left = await repo.sql.read<{ id: string }>('SELECT id FROM snapshots ORDER BY id');
              assert.deepEqual(
                left.map((r) => r.id),
                order
                  .slice(first)
                  .map((r) => r.id)
                  .sort(),
              );
            },
          ),
          { seed: PROPERTY_SEED, numRuns: 25 },
        );
      } finally {
        await repo.close();
      }
    });

    it('stops between two transactions once the lease is no longer held', async () => {
      const repo = await openRepository(await storage());
      try {
        const now = Date.now();
        await repo.writeBatch(
          Array.from({ length: 3000 }, (_, i) =>
            record('event', 'box-1', eventMessage({ cameraSeq: i }), now - 40 * DAY + i),
          ),
        );
        let checks = 0;
        const config = controlPlaneConfig({ retention: { batchRows: 500, pauseMs: 0 } });
        const report = await new Retention(repo, config.retention, new Metrics().retention).run(
          () => ++checks <= 2,
        );
        assert.equal(report.complete, false);
        assert.equal(report.kinds.events!.deletedByAge, 1000, 'two transactions, then it stopped');
        assert.equal(await repo.countEvents(), 2000);
      } finally {
        await repo.close();
      }
    });

    it('runs in the background of a control plane, under its lease, while ingest goes on', async () => {
      const settings = await storage();
      const seed = await openRepository(settings);
      const now = Date.now();
      // 30,000 events past their age: 60 transactions of 500 with 20 ms between them
      const pad = 'y'.repeat(300);
      for (let b = 0; b < 12; b++) {
        const records = Array.from({ length: 2500 }, (_, i) => {
          const receivedAt = now - 40 * DAY + (b * 2500 + i) * 1000;
          return record(
            'event',
            'box-1',
            eventMessage({ cameraSeq: b * 2500 + i, before: { pad } }),
            receivedAt,
          );
        });
        await seed.writeBatch(records);
      }
      await seed.close();
      const cp = await startTestControlPlane({
        dir: settings.kind === 'sqlite' ? join(settings.sqlite.path, '..') : tmpdir(),
        ...(settings.kind === 'postgres' ? { postgresUrl: settings.postgres.url } : {}),
        config: {
          retention: { ...LIMITS, events: { maxAgeDays: 30, maxMiB: 1024 }, batchRows: 500, pauseMs: 20 },
        },
      });
      const client = await deviceClient(cp.mqttUrl, 'box-1');
      try {
        const acked: number[] = [];
        let seq = 0;
        while (cp.metrics.retention.runs === 0) {
          const m = eventMessage({ device: 'box-1', camera: 'live', cameraSeq: seq++ });
          await client.publishAsync(topics.events('box-1'), JSON.stringify(m), { qos: 1 });
          acked.push(Date.now());
          if (seq > 20_000) throw new Error('the retention run did not end');
        }
        const end = cp.metrics.retention.lastRunAt;
        const start = end - cp.metrics.retention.lastRunSeconds * 1000;
        const during = acked.filter((t) => t >= start && t <= end);
        const gaps = during.slice(1).map((t, i) => t - during[i]!);
        console.log(
          `retention (${name}): run of ${cp.metrics.retention.lastRunSeconds} s; ${during.length} messages acknowledged during it, longest wait between two ${Math.max(...gaps)} ms`,
        );
        assert.ok(during.length >= 10, `${during.length} acknowledged during the run`);
        assert.equal(
          await metric(cp.httpUrl, 'argus_retention_rows_deleted_total{kind="events",limit="age"}'),
          30_000,
        );
        assert.equal(await metric(cp.httpUrl, 'argus_retention_leader'), 1);
        assert.ok((await metric(cp.httpUrl, 'argus_retention_last_run_timestamp_seconds')) > now / 1000);
        assert.equal(await cp.repository.countEvents(), seq, 'every live event stored, every old one gone');
      } finally {
        await client.endAsync();
        await cp.close();
      }
    });
  });
}

describe('SQLite file made without incremental auto-vacuum', () => {
  it('is converted once when opened, keeping its rows', async () => {
    const path = join(dir, 'old.db');
    const old = new Database(path);
    old.pragma('journal_mode = WAL');
    old.exec('CREATE TABLE kept (x TEXT)');
    old.prepare('INSERT INTO kept VALUES (?)').run('row');
    assert.equal(old.pragma('auto_vacuum', { simple: true }), 0);
    old.close();
    const repo = await openRepository({ kind: 'sqlite', sqlite: { path, synchronous: 'normal' } });
    try {
      assert.equal(await count(repo, 'SELECT auto_vacuum AS n FROM pragma_auto_vacuum()'), 2);
      assert.deepEqual(await repo.sql.read('SELECT x FROM kept'), [{ x: 'row' }]);
    } finally {
      await repo.close();
    }
  });
});

let dir: string;
let pg: PostgresServer;
let databases = 0;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'argus-retention-'));
  pg = await PostgresServer.start({ fsync: false });
});
after(async () => {
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
});

retentionSuite('sqlite', async () => {
  const sub = await mkdtemp(join(dir, 'db-'));
  return { kind: 'sqlite', sqlite: { path: join(sub, 'argus.db'), synchronous: 'normal' } };
});
retentionSuite('postgres', async () => ({
  kind: 'postgres',
  postgres: { url: await pg.createDatabase(`argus_retention_${databases++}`), poolSize: 8 },
}));
