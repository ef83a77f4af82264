import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import pgModule from 'pg';
import type { CommandResult, Identity } from '../../contract/index.ts';
import { openRepository } from '../../control-plane/index.ts';
import {
  CREATE_MIGRATIONS_TABLE,
  MIGRATIONS,
  POSTGRES,
  SQLITE,
} from '../../control-plane/storage/migrations.ts';
import type { DeviceFilter, IngestRecord, Repository } from '../../control-plane/storage/repository.ts';
import { PostgresServer } from '../helpers/postgres.ts';
import { telemetry } from '../helpers/telemetry.ts';
import { eventMessage, jpeg } from './fixtures.ts';

const PgClient = pgModule.Client;

const T0 = Date.parse('2026-05-01T10:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

/** a record as decode makes it: the message and its text */
function record<K extends IngestRecord['kind']>(
  kind: K,
  device: string,
  message: Extract<IngestRecord, { kind: K }>['message'],
  receivedAt: number,
): IngestRecord {
  return { kind, device, message, payload: JSON.stringify(message), receivedAt } as IngestRecord;
}

function eventRecord(over: Parameters<typeof eventMessage>[0], receivedAt = Date.now()): IngestRecord {
  const message = eventMessage(over);
  return record('event', message.device, message, receivedAt);
}

const identity = (device: string): Identity => ({
  v: 1,
  device,
  hardwareClass: 'x86_64-avx512',
  executionProviders: ['cpu'],
  software: { version: '0.1.0', node: 'v20' },
  models: [],
  cameras: [{ id: 'cam-1', scene: 'scenes/cam-1.yaml' }],
  startedAt: iso(T0),
});

/** the same suite against both backends */
function repositorySuite(name: string, open: () => Promise<Repository>): void {
  describe(`repository (${name})`, () => {
    let repo: Repository;
    before(async () => {
      repo = await open();
    });
    after(async () => {
      await repo.close();
    });

    it('stores each event message once by (id, seq), however often it is delivered', async () => {
      const first = eventRecord({ device: 'dup-box', cameraSeq: 1 });
      const next = eventRecord({
        device: 'dup-box',
        id: (first as { message: { id: string } }).message.id,
        seq: 1,
        phase: 'end',
        cameraSeq: 2,
      });
      const a = await repo.writeBatch([first, first, next]);
      assert.equal(a.inserted.length, 2);
      assert.equal(a.duplicates, 1);
      const b = await repo.writeBatch([next, first]);
      assert.equal(b.inserted.length, 0);
      assert.equal(b.duplicates, 2);
      const stored = await repo.queryEvents({ device: 'dup-box', limit: 10 });
      assert.deepEqual(
        stored.map((e) => [e.event.seq, e.event.phase]),
        [
          [1, 'end'],
          [0, 'new'],
        ],
        'both lifecycle messages, newest ingested first',
      );
      assert.ok(stored[0]!.cursor > stored[1]!.cursor);
    });

    it('keeps tabs, line breaks and backslashes in values and in the payload text as they came', async () => {
      const message = eventMessage({ device: 'text-box', rule: 'gate\tnorth\\2', label: 'person\nbike' });
      const payload = JSON.stringify(message, null, '\t').replace(/\n/g, '\r\n');
      const outcome = await repo.writeBatch([
        { kind: 'event', device: 'text-box', message, payload, receivedAt: Date.now() },
      ]);
      assert.equal(outcome.inserted.length, 1);
      const [stored] = await repo.queryEvents({ rule: 'gate\tnorth\\2', label: 'person\nbike', limit: 10 });
      assert.deepEqual(stored?.event, message);
    });

    it('keeps device status from availability, the latest identity and telemetry, and camera status', async () => {
      const device = 'status-box';
      const status = (state: 'online' | 'offline', cameraSeq: number): IngestRecord =>
        record(
          'status',
          device,
          {
            v: 1,
            id: `st-${cameraSeq}-${state}-x`,
            device,
            camera: 'cam-1',
            cameraSeq,
            state,
            at: iso(T0 + cameraSeq),
          },
          T0 + cameraSeq,
        );
      await repo.writeBatch([
        record('available', device, { v: 1, state: 'online', at: iso(T0) }, T0),
        record('identity', device, identity(device), T0),
        record('telemetry', device, telemetry(device, T0, {}, { fpsIn: 9, fpsDetect: 4.5 }), T0 + 1),
        status('online', 5),
      ]);
      await repo.writeBatch([
        record('telemetry', device, telemetry(device, T0 + 5, {}, { fpsIn: 7, fpsDetect: 3.5 }), T0 + 5),
        status('offline', 7),
        status('online', 6),
      ]);
      let d = await repo.getDevice(device);
      assert.ok(d);
      assert.equal(d.status, 'online');
      assert.equal(d.identity?.hardwareClass, 'x86_64-avx512');
      assert.equal(d.telemetry?.cameras[0]?.fpsIn, 7);
      assert.equal(d.firstSeen, T0);
      assert.equal(d.lastSeen, T0 + 7);
      assert.deepEqual(
        d.cameras.map((c) => [c.camera, c.state]),
        [['cam-1', 'offline']],
        'the status with the highest cameraSeq wins, whatever the arrival order',
      );
      await repo.writeBatch([record('available', device, { v: 1, state: 'offline' }, T0 + 9)]);
      d = await repo.getDevice(device);
      assert.equal(d?.status, 'offline', 'the Last Will (no `at`) marks it offline');
      assert.equal(d?.statusAt, T0 + 9);
      assert.ok((await repo.listDevices({ limit: 500, maxChars: 1e9 })).devices.some((x) => x.id === device));
      assert.equal(await repo.getDevice('never-seen'), undefined);
    });

    it('lists devices a page at a time, filtered in the database, each page bounded in size', async () => {
      const boxes = Array.from({ length: 12 }, (_, i) => `page-${String(i).padStart(2, '0')}`);
      await repo.writeBatch(
        boxes.flatMap((id, i) => [
          record('available', id, { v: 1, state: i % 3 === 0 ? 'offline' : 'online', at: iso(T0) }, T0),
          record(
            'identity',
            id,
            { ...identity(id), hardwareClass: i % 2 ? 'rk3588-npu' : 'x86_64-avx512' },
            T0,
          ),
        ]),
      );
      await repo.writeBatch([
        record(
          'telemetry',
          'page-nostatus',
          telemetry('page-nostatus', T0, {}, { fpsIn: 5, fpsDetect: 2.5 }),
          T0,
        ),
      ]);
      const all = async (
        filter: Omit<DeviceFilter, 'limit' | 'maxChars' | 'after'>,
        limit: number,
        maxChars = 1e9,
      ) => {
        const ids: string[] = [];
        let after: string | undefined;
        let pages = 0;
        do {
          const page = await repo.listDevices({ ...filter, limit, maxChars, ...(after ? { after } : {}) });
          assert.ok(page.devices.length <= limit);
          ids.push(...page.devices.map((d) => d.id));
          after = page.next ?? undefined;
          pages++;
        } while (after);
        return { ids, pages };
      };
      const paged = await all({ idPrefix: 'page-' }, 5);
      assert.deepEqual(paged.ids, [...boxes, 'page-nostatus']);
      assert.equal(paged.pages, 3);
      assert.deepEqual((await all({ idPrefix: 'page-', status: 'offline' }, 2)).ids, [
        'page-00',
        'page-03',
        'page-06',
        'page-09',
      ]);
      assert.deepEqual((await all({ idPrefix: 'page-', status: 'unknown' }, 10)).ids, ['page-nostatus']);
      assert.deepEqual(
        (await all({ idPrefix: 'page-', hardwareClass: 'rk3588-npu', status: 'online' }, 10)).ids,
        ['page-01', 'page-05', 'page-07', 'page-11'],
      );
      assert.deepEqual((await all({ idPrefix: 'page-1' }, 10)).ids, ['page-10', 'page-11']);
      assert.deepEqual((await all({ idPrefix: 'nothing-' }, 10)).ids, []);
      const size = JSON.stringify(identity('page-00')).length;
      const small = await repo.listDevices({ idPrefix: 'page-', limit: 10, maxChars: size * 2.5 });
      assert.deepEqual(
        small.devices.map((d) => d.id),
        ['page-00', 'page-01'],
        'the page ends at its size bound',
      );
      assert.equal(small.cut, true);
      assert.equal(small.next, 'page-01');
      const tiny = await repo.listDevices({ idPrefix: 'page-', limit: 10, maxChars: 1 });
      assert.equal(tiny.devices.length, 1, 'one device at least, however large');
    });

    it('filters devices by software version and by the model and scene versions their cameras run', async () => {
      // each box: a software version, and per camera a model and scene version (or none reported)
      const boxes = Array.from({ length: 9 }, (_, i) => ({
        id: `ver-${i}`,
        software: `1.${i % 3}.0`,
        cameras: [{ model: 1 + (i % 2), scene: i % 4 }, ...(i % 3 === 0 ? [] : [{ model: 3, scene: 7 }])],
      }));
      await repo.writeBatch(
        boxes.flatMap((b) => {
          const t = telemetry(b.id, T0, {}, { fpsIn: 5, fpsDetect: 2.5 });
          t.cameras = b.cameras.map((c, k) => ({
            ...t.cameras[0]!,
            id: `cam-${k}`,
            model: { name: 'nanodet', version: c.model },
            ...(c.scene === 0 ? {} : { scene: { name: 'campus', version: c.scene } }),
          }));
          return [
            record(
              'identity',
              b.id,
              { ...identity(b.id), software: { version: b.software, node: 'v20' } },
              T0,
            ),
            record('telemetry', b.id, t, T0),
          ];
        }),
      );
      const ids = async (f: Omit<DeviceFilter, 'limit' | 'maxChars'>) =>
        (await repo.listDevices({ idPrefix: 'ver-', ...f, limit: 100, maxChars: 1e9 })).devices.map(
          (d) => d.id,
        );
      for (const software of ['1.0.0', '1.1.0', '1.2.0', '9.9.9'])
        for (const modelVersion of [undefined, 1, 2, 3, 4])
          for (const sceneVersion of [undefined, 1, 2, 3, 7, 8]) {
            const expected = boxes
              .filter(
                (b) =>
                  b.software === software &&
                  (modelVersion === undefined || b.cameras.some((c) => c.model === modelVersion)) &&
                  (sceneVersion === undefined || b.cameras.some((c) => c.scene === sceneVersion)),
              )
              .map((b) => b.id);
            const filter: Omit<DeviceFilter, 'limit' | 'maxChars'> = { softwareVersion: software };
            if (modelVersion !== undefined) filter.modelVersion = modelVersion;
            if (sceneVersion !== undefined) filter.sceneVersion = sceneVersion;
            assert.deepEqual(await ids(filter), expected, JSON.stringify(filter));
          }
    });

    it('stores a batch of 20,000 events and camera statuses in one transaction', async () => {
      const device = 'big-box';
      const records: IngestRecord[] = [];
      for (let i = 0; i < 10_000; i++) {
        records.push(eventRecord({ device, cameraSeq: i }, T0 + i));
        records.push(
          record(
            'status',
            device,
            { v: 1, id: `big-${i}`, device, camera: 'cam-1', cameraSeq: i, state: 'online', at: iso(T0 + i) },
            T0 + i,
          ),
        );
      }
      const outcome = await repo.writeBatch(records);
      assert.equal(outcome.inserted.length, 10_000);
      assert.equal(outcome.duplicates, 0);
      assert.deepEqual(
        outcome.inserted.map((e) => e.event.cameraSeq),
        Array.from({ length: 10_000 }, (_, i) => i),
      );
      assert.equal((await repo.writeBatch(records)).duplicates, 20_000);
      assert.equal((await repo.getDevice(device))?.cameras[0]?.state, 'online');
    });

    it('gives the events of batches written at once cursors in the order the batches were given', async () => {
      const batches = Array.from({ length: 4 }, (_, b) =>
        Array.from({ length: 200 }, (_, i) => eventRecord({ device: 'order-box', cameraSeq: b * 200 + i })),
      );
      const outcomes = await Promise.all(batches.map((batch) => repo.writeBatch(batch)));
      const cursors = outcomes.flatMap((o) => o.inserted.map((e) => e.cursor));
      assert.equal(cursors.length, 800);
      assert.deepEqual(
        cursors,
        [...cursors].sort((a, b) => a - b),
      );
    });

    it('filters events by device, camera, rule, class and time range', async () => {
      const records = [
        eventRecord({ device: 'f-a', camera: 'c1', rule: 'zone-1', label: 'person', at: iso(T0) }),
        eventRecord({ device: 'f-a', camera: 'c2', rule: 'zone-1', label: 'car', at: iso(T0 + 1000) }),
        eventRecord({
          device: 'f-a',
          camera: 'c1',
          rule: 'line-1',
          ruleType: 'line',
          label: 'person',
          at: iso(T0 + 2000),
        }),
        eventRecord({ device: 'f-b', camera: 'c1', rule: 'zone-1', label: 'person', at: iso(T0 + 3000) }),
      ];
      await repo.writeBatch(records);
      const ids = async (f: Omit<Parameters<Repository['queryEvents']>[0], 'limit'>) =>
        (await repo.queryEvents({ ...f, limit: 50 })).map(
          (e) => `${e.event.device}/${e.event.camera}/${e.event.rule}/${e.event.label}`,
        );
      assert.deepEqual(await ids({ device: 'f-a', camera: 'c1' }), [
        'f-a/c1/line-1/person',
        'f-a/c1/zone-1/person',
      ]);
      assert.deepEqual(await ids({ device: 'f-a', label: 'car' }), ['f-a/c2/zone-1/car']);
      assert.deepEqual(await ids({ rule: 'zone-1', label: 'person', from: T0, to: T0 + 5000 }), [
        'f-b/c1/zone-1/person',
        'f-a/c1/zone-1/person',
      ]);
      assert.deepEqual(
        await ids({ device: 'f-a', from: T0 + 1000, to: T0 + 2000 }),
        ['f-a/c2/zone-1/car'],
        'from inclusive, to exclusive',
      );
    });

    it('pages with a cursor that stays stable while events are inserted', async () => {
      const device = 'page-box';
      await repo.writeBatch(Array.from({ length: 25 }, (_, i) => eventRecord({ device, cameraSeq: i })));
      const seen: number[] = [];
      let before: number | undefined;
      for (let page = 0; ; page++) {
        const events = await repo.queryEvents({
          device,
          limit: 10,
          ...(before !== undefined ? { before } : {}),
        });
        seen.push(...events.map((e) => e.event.cameraSeq));
        if (page === 0)
          await repo.writeBatch(
            Array.from({ length: 5 }, (_, i) => eventRecord({ device, cameraSeq: 100 + i })),
          );
        if (events.length < 10) break;
        before = events.at(-1)!.cursor;
      }
      assert.deepEqual(
        seen,
        Array.from({ length: 25 }, (_, i) => 24 - i),
        'every event once, none of the later ones',
      );
    });

    it('stores snapshots idempotently and refuses other bytes under the same id', async () => {
      const bytes = jpeg('one');
      const snap = {
        id: 'snap-0001',
        device: 'box-1',
        contentType: 'image/jpeg',
        sha256: createHash('sha256').update(bytes).digest('hex'),
        bytes,
        createdAt: T0,
      };
      assert.equal(await repo.putSnapshot(snap), 'created');
      assert.equal(await repo.putSnapshot(snap), 'unchanged');
      assert.equal(
        await repo.putSnapshot({ ...snap, sha256: 'f'.repeat(64), bytes: jpeg('two') }),
        'conflict',
      );
      const got = await repo.getSnapshot('box-1', 'snap-0001');
      assert.ok(got);
      assert.deepEqual(Buffer.from(got.bytes), bytes);
      assert.equal(got.createdAt, T0);
      assert.equal(await repo.getSnapshot('box-1', 'snap-none'), undefined);
      assert.equal(await repo.getSnapshot('box-2', 'snap-0001'), undefined);
    });

    it("keeps each device's snapshot ids its own: one cannot squat another's", async () => {
      const snap = (device: string, fill: string) => {
        const bytes = jpeg(fill);
        return {
          id: 'snap-squat',
          device,
          contentType: 'image/jpeg',
          sha256: createHash('sha256').update(bytes).digest('hex'),
          bytes,
          createdAt: T0,
        };
      };
      assert.equal(await repo.putSnapshot(snap('squatter', 'theirs')), 'created');
      assert.equal(await repo.putSnapshot(snap('owner', 'mine')), 'created');
      assert.deepEqual(Buffer.from((await repo.getSnapshot('owner', 'snap-squat'))!.bytes), jpeg('mine'));
      assert.deepEqual(
        Buffer.from((await repo.getSnapshot('squatter', 'snap-squat'))!.bytes),
        jpeg('theirs'),
      );
    });

    it('keeps event ids scoped to their device, and tells another content under a stored (device, id, seq) from a redelivery', async () => {
      const owner = eventRecord({ device: 'id-owner', cameraSeq: 1 });
      const id = (owner as { message: { id: string } }).message.id;
      const squat = eventRecord({ device: 'id-squatter', id, cameraSeq: 9, label: 'car' });
      const first = await repo.writeBatch([squat]);
      assert.equal(first.inserted.length, 1);
      const second = await repo.writeBatch([owner]);
      assert.equal(second.inserted.length, 1, "another device's event with the same id does not hide it");
      assert.deepEqual((await repo.queryEvents({ device: 'id-owner', limit: 5 }))[0]?.event, owner.message);
      const respelt = { ...owner, payload: JSON.stringify(owner.message, null, 2) };
      const other = eventRecord({ device: 'id-owner', id, cameraSeq: 2, label: 'truck' });
      const again = await repo.writeBatch([owner, respelt, other, other]);
      assert.equal(again.inserted.length, 0);
      assert.equal(again.duplicates, 2, 'the same content (in any spelling) is a redelivery');
      assert.deepEqual(again.conflicts, [other, other], 'another content is a conflict');
      assert.deepEqual((await repo.queryEvents({ device: 'id-owner', limit: 5 })).length, 1);
    });

    it('stores a command result only for a command sent to the device that answers', async () => {
      await repo.createCommand({
        id: 'cmd-scoped-1',
        device: 'cmd-owner',
        name: 'snapshot',
        args: {},
        issuedAt: T0,
        result: null,
        resultAt: null,
      });
      const result = (device: string, id: string): IngestRecord =>
        record(
          'cmd_result',
          device,
          { v: 1, id, device, name: 'snapshot', ok: true, message: 'forged', at: iso(T0) },
          T0,
        );
      const forged = result('cmd-forger', 'cmd-scoped-1');
      const unknown = result('cmd-owner', 'cmd-never-sent');
      const outcome = await repo.writeBatch([forged, unknown]);
      assert.deepEqual(outcome.unknownResults, [forged, unknown]);
      assert.equal((await repo.getCommand('cmd-scoped-1'))?.result, null);
      assert.equal(await repo.getCommand('cmd-never-sent'), undefined, 'an unknown id inserts nothing');
      const real = result('cmd-owner', 'cmd-scoped-1');
      assert.deepEqual((await repo.writeBatch([real])).unknownResults, []);
      assert.equal((await repo.getCommand('cmd-scoped-1'))?.result?.message, 'forged');
    });

    it('records commands and attaches their results', async () => {
      await repo.createCommand({
        id: 'cmd-00000001',
        device: 'box-1',
        name: 'restart-camera',
        args: { camera: 'cam-1' },
        issuedAt: T0,
        result: null,
        resultAt: null,
      });
      assert.equal((await repo.getCommand('cmd-00000001'))?.result, null);
      const result: CommandResult = {
        v: 1,
        id: 'cmd-00000001',
        device: 'box-1',
        name: 'restart-camera',
        ok: true,
        message: 'camera cam-1 restarted',
        at: iso(T0 + 100),
      };
      await repo.writeBatch([record('cmd_result', 'box-1', result, T0 + 200)]);
      const c = await repo.getCommand('cmd-00000001');
      assert.deepEqual(c?.args, { camera: 'cam-1' });
      assert.equal(c?.issuedAt, T0);
      assert.deepEqual(c?.result, result);
      assert.equal(c?.resultAt, T0 + 200);
    });

    it('counts online devices and stored events', async () => {
      assert.ok((await repo.countEvents()) >= 10_835);
      assert.equal(typeof (await repo.countDevicesOnline(0)), 'number');
    });
  });
}

let dir: string;
let pg: PostgresServer;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'argus-repo-'));
  pg = await PostgresServer.start({ fsync: false });
});
after(async () => {
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
});

repositorySuite('sqlite', async () => {
  const settings = { path: join(dir, 'argus.db'), synchronous: 'normal' as const };
  // opening twice applies the migrations once
  await (await openRepository({ kind: 'sqlite', sqlite: settings })).close();
  return openRepository({ kind: 'sqlite', sqlite: settings });
});

repositorySuite('postgres', async () => {
  const url = await pg.createDatabase('argus_repo');
  await (await openRepository({ kind: 'postgres', postgres: { url, poolSize: 4 } })).close();
  return openRepository({ kind: 'postgres', postgres: { url, poolSize: 4 } });
});

/** a database left by the first release (migration 1 only), with rows in every table it has */
async function seedVersion1(
  query: (sql: string, params?: unknown[]) => Promise<unknown>,
  p: (i: number) => string,
) {
  const d = p(1) === '?' ? SQLITE : POSTGRES;
  await query(CREATE_MIGRATIONS_TABLE);
  for (const statement of MIGRATIONS[0]!.statements(d)) await query(statement);
  await query(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, 'v1', 'then')`);
  const old = eventMessage({ device: 'old-box', id: 'old-event-1' });
  await query(
    `INSERT INTO events (cursor, id, seq, phase, device, camera, camera_seq, rule, rule_type, label, at, received_at, payload)
     VALUES (${[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13].map(p).join(', ')})`,
    [
      41,
      old.id,
      0,
      'new',
      'old-box',
      'cam-1',
      0,
      old.rule,
      old.ruleType,
      old.label,
      T0,
      T0,
      JSON.stringify(old),
    ],
  );
  // what the first release stored and then could not serve (issue 14): `before` 6,000 levels deep
  const deep = JSON.stringify(eventMessage({ device: 'old-deep', id: 'old-deep-1' })).replace(
    '"before":{"inside":false}',
    `"before":{"x":${'['.repeat(6000)}${']'.repeat(6000)}}`,
  );
  await query(
    `INSERT INTO events (cursor, id, seq, phase, device, camera, camera_seq, rule, rule_type, label, at, received_at, payload)
     VALUES (${[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13].map(p).join(', ')})`,
    [40, 'old-deep-1', 0, 'new', 'old-deep', 'cam-1', 0, old.rule, old.ruleType, old.label, T0, T0, deep],
  );
  await query(
    `INSERT INTO camera_statuses (id, device, camera, camera_seq, state, at, reason, received_at)
     VALUES (${[1, 2, 3, 4, 5, 6, 7, 8].map(p).join(', ')})`,
    ['old-status-1', 'old-box', 'cam-1', 1, 'online', iso(T0), null, T0],
  );
  await query(
    `INSERT INTO snapshots (id, device, content_type, sha256, bytes, created_at) VALUES (${[1, 2, 3, 4, 5, 6].map(p).join(', ')})`,
    ['old-snap-1', 'old-box', 'image/jpeg', 'a'.repeat(64), jpeg('old'), T0],
  );
}

/** what migration 2 must keep of a version-1 database, and what it must change */
async function checkMigrated(repo: Repository): Promise<void> {
  const [old] = await repo.queryEvents({ device: 'old-box', limit: 5 });
  assert.equal(old?.cursor, 41, 'the cursor stays');
  const [deep] = await repo.queryEvents({ device: 'old-deep', limit: 5 });
  assert.ok(deep);
  assert.ok(JSON.stringify(deep).length < 2000, 'an event stored too deep is served without its state');
  assert.match(String(deep.event.before.dropped), /nested deeper than 128 levels/);
  const next = await repo.writeBatch([eventRecord({ device: 'old-box' })]);
  assert.ok(next.inserted[0]!.cursor > 41, 'new cursors continue after the largest');
  const squat = await repo.writeBatch([eventRecord({ device: 'new-box', id: 'old-event-1' })]);
  assert.equal(squat.inserted.length, 1, 'the id is scoped to its device now');
  assert.deepEqual(Buffer.from((await repo.getSnapshot('old-box', 'old-snap-1'))!.bytes), jpeg('old'));
  assert.deepEqual(
    await repo.sql.read('SELECT count(*) AS n FROM quarantine').then((r) => Number(r[0]!.n)),
    0,
  );
  const versions = await repo.sql.read<{ version: number }>(
    'SELECT version FROM schema_migrations ORDER BY version',
  );
  assert.deepEqual(
    versions.map((v) => Number(v.version)),
    MIGRATIONS.map((m) => m.version),
  );
}

describe('migration 2 on a version-1 database', () => {
  it('sqlite: rebuilds the tables with device-scoped keys and keeps every row and cursor', async () => {
    const path = join(dir, 'v1.db');
    const db = new Database(path);
    await seedVersion1(
      async (sql, params = []) => db.prepare(sql).run(...params),
      () => '?',
    );
    db.close();
    const repo = await openRepository({ kind: 'sqlite', sqlite: { path, synchronous: 'normal' } });
    try {
      await checkMigrated(repo);
    } finally {
      await repo.close();
    }
  });

  it('postgres: alters the keys to device-scoped ones and keeps every row and cursor', async () => {
    const url = await pg.createDatabase('argus_v1');
    const client = new PgClient({ connectionString: url });
    await client.connect();
    await seedVersion1(
      (sql, params) => client.query(sql, params),
      (i) => `$${i}`,
    );
    // the sequence as the first release left it (rows were inserted with nextval)
    await client.query(`SELECT setval(pg_get_serial_sequence('events', 'cursor'), 41)`);
    await client.end();
    const repo = await openRepository({ kind: 'postgres', postgres: { url, poolSize: 4 } });
    try {
      await checkMigrated(repo);
    } finally {
      await repo.close();
    }
  });
});
