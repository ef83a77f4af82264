import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { httpPaths, MAX_PAYLOAD_BYTES, topics } from '../../contract/index.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import { AgentProcess, RECORDING, writeAgentConfig } from '../helpers/device-setup.ts';
import { eventually } from '../helpers/eventually.ts';
import { MosquittoBroker } from '../helpers/mosquitto-broker.ts';
import { PostgresServer } from '../helpers/postgres.ts';
import { eventMessage } from './fixtures.ts';
import {
  apiFetch,
  deviceClient,
  getJson,
  metric,
  openClient,
  startTestControlPlane,
  TOKEN,
} from './setup.ts';

interface EventsPage {
  events: {
    cursor: string;
    event: { id: string; seq: number; camera: string; cameraSeq: number; snapshot?: { id: string } };
  }[];
  nextCursor: string | null;
}
interface Device {
  id: string;
  status: string;
  identity: { cameras: unknown[] } | null;
  telemetry: { cameras: { id: string }[] } | null;
  cameras: { camera: string; state: string }[];
}
interface CommandView {
  id: string;
  resultUrl: string;
  result: { ok: boolean; data?: { snapshot?: { id: string } } } | null;
}

/**
 * event messages per camera that a recording played once stores: the recording's, and an `end`
 * for each event it leaves open, which the recorded host sends when the recording ends
 */
const RECORDED_EVENTS = (() => {
  const lines = readFileSync(RECORDING, 'utf8').split('\n').filter(Boolean);
  const lastPhase = new Map<string, string>();
  for (const line of lines) {
    const e = JSON.parse(line) as { id: string; phase: string };
    lastPhase.set(e.id, e.phase);
  }
  return lines.length + [...lastPhase.values()].filter((phase) => phase !== 'end').length;
})();
const CAMERAS = ['cam-1', 'cam-2'];

async function allEvents(cp: ControlPlane, device: string): Promise<EventsPage['events']> {
  const out: EventsPage['events'] = [];
  let cursor: string | null = null;
  do {
    const page: EventsPage = await getJson<EventsPage>(
      `${cp.httpUrl}/api/v1/events?device=${device}&limit=500${cursor ? `&cursor=${cursor}` : ''}`,
    );
    out.push(...page.events);
    cursor = page.nextCursor;
  } while (cursor);
  return out;
}

/** the embedded broker with SQLite (the defaults), and Mosquitto with PostgreSQL */
for (const [broker, storage] of [
  ['embedded', 'sqlite'],
  ['external', 'postgres'],
] as const) {
  describe(`ingest from a device agent (${broker} broker, ${storage})`, () => {
    let dir: string;
    let mosquitto: MosquittoBroker | undefined;
    let pg: PostgresServer | undefined;
    let cp: ControlPlane;
    let agent: AgentProcess | undefined;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), `argus-ingest-${broker}-`));
      if (broker === 'external') mosquitto = await MosquittoBroker.create({ dir: join(dir, 'mosquitto') });
      if (storage === 'postgres') pg = await PostgresServer.start({ fsync: false });
      cp = await startTestControlPlane({
        dir,
        ...(mosquitto ? { brokerUrl: mosquitto.url } : {}),
        ...(pg ? { postgresUrl: await pg.createDatabase('argus_ingest') } : {}),
      });
    });
    after(async () => {
      await agent?.terminate('SIGKILL').catch(() => undefined);
      await cp?.close();
      await mosquitto?.stop();
      await pg?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it('stores every event of a device agent exactly once, in order per camera, with its snapshots', async () => {
      const file = await writeAgentConfig(dir, {
        device: 'box-1',
        brokerUrl: cp.mqttUrl,
        controlPlaneUrl: cp.httpUrl,
        token: TOKEN,
        cameras: CAMERAS,
        eventsPerSecond: 50,
        loop: false,
        spool: { sync: 'normal' },
      });
      agent = await AgentProcess.start(file);
      const expected = RECORDED_EVENTS * CAMERAS.length;
      const events = await eventually(
        async () => {
          const all = await allEvents(cp, 'box-1');
          return all.length >= expected ? all : undefined;
        },
        30_000,
        `${expected} stored events`,
      );
      assert.equal(events.length, expected, 'no duplicates');
      assert.equal(new Set(events.map((e) => `${e.event.id}/${e.event.seq}`)).size, expected);
      for (const camera of CAMERAS) {
        const seqs = events
          .filter((e) => e.event.camera === camera)
          .sort((a, b) => Number(a.cursor) - Number(b.cursor))
          .map((e) => e.event.cameraSeq);
        assert.equal(seqs.length, RECORDED_EVENTS);
        assert.ok(
          seqs.every((s, i) => i === 0 || s > seqs[i - 1]!),
          `${camera}: stored in cameraSeq order`,
        );
      }
      const snapshots = events.flatMap((e) => (e.event.snapshot ? [e.event.snapshot.id] : []));
      assert.ok(snapshots.length > 10);
      await eventually(
        async () => {
          for (const id of snapshots)
            if ((await apiFetch(`${cp.httpUrl}${httpPaths.snapshot('box-1', id)}`)).status !== 200)
              return undefined;
          return true;
        },
        20_000,
        'every referenced snapshot uploaded',
      );
      const res = await apiFetch(`${cp.httpUrl}${httpPaths.snapshot('box-1', snapshots[0]!)}`);
      assert.equal(res.headers.get('content-type'), 'image/jpeg');
      assert.equal(Buffer.from(await res.arrayBuffer()).readUInt16BE(0), 0xffd8);
      assert.equal(await metric(cp.httpUrl, 'argus_ingest_rejected_total{reason="schema"}'), 0);
    });

    it('shows the device online with identity, telemetry and camera status', async () => {
      const device = await eventually(
        async () => {
          const d = await getJson<Device>(`${cp.httpUrl}/api/v1/devices/box-1`);
          return d.telemetry && d.cameras.length === 2 ? d : undefined;
        },
        10_000,
        'telemetry and camera statuses',
      );
      assert.equal(device.status, 'online');
      assert.equal(device.identity?.cameras.length, 2);
      assert.deepEqual(device.telemetry?.cameras.map((c) => c.id).sort(), CAMERAS);
      assert.equal(await metric(cp.httpUrl, 'argus_devices_online'), 1);
    });

    it('sends a command and keeps its result; the snapshot it took is stored', async () => {
      const res = await apiFetch(`${cp.httpUrl}/api/v1/devices/box-1/commands/snapshot`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ args: { camera: 'cam-2' } }),
      });
      assert.equal(res.status, 202);
      const command = (await res.json()) as CommandView;
      const done = await eventually(
        async () => {
          const c = await getJson<CommandView>(`${cp.httpUrl}${command.resultUrl}`);
          return c.result ? c : undefined;
        },
        15_000,
        'the command result',
      );
      assert.equal(done.result?.ok, true);
      const snapshot = done.result?.data?.snapshot?.id;
      assert.ok(snapshot);
      assert.equal((await apiFetch(`${cp.httpUrl}${httpPaths.snapshot('box-1', snapshot)}`)).status, 200);
    });

    it('marks the device offline when the agent stops', async () => {
      await agent!.terminate('SIGTERM');
      agent = undefined;
      await eventually(
        async () =>
          (await getJson<Device>(`${cp.httpUrl}/api/v1/devices/box-1`)).status === 'offline'
            ? true
            : undefined,
        10_000,
        'status offline',
      );
    });

    it('leaves retained on the broker only the availability and identity messages it stored', {
      skip: broker === 'embedded' ? 'on the embedded broker: poison.test.ts' : false,
    }, async () => {
      const client = await openClient(cp.mqttUrl);
      const cleared = () => metric(cp.httpUrl, 'argus_ingest_retain_cleared_total');
      const before = await cleared();
      const retain = { qos: 1 as const, retain: true };
      await client.publishAsync(topics.identity('box-r1'), '{"v":1,', retain);
      await client.publishAsync(topics.available('box-r2'), JSON.stringify({ v: 1, state: 'gone' }), retain);
      await client.publishAsync(
        topics.telemetry('box-r3'),
        JSON.stringify({ v: 1, device: 'box-r3', hello: 1 }),
        retain,
      );
      await client.publishAsync(
        topics.available('box-r4'),
        JSON.stringify({ v: 1, state: 'online' }),
        retain,
      );
      await eventually(
        async () => ((await cleared()) - before === 3 ? true : undefined),
        10_000,
        'three retained messages cleared',
      );
      const watcher = await openClient(cp.mqttUrl);
      const retained: string[] = [];
      watcher.on('message', (topic, payload, packet) => {
        if (packet.retain && payload.length > 0) retained.push(topic);
      });
      await watcher.subscribeAsync(['argus/v1/+/identity', 'argus/v1/+/available', 'argus/v1/+/telemetry'], {
        qos: 1,
      });
      // what the broker keeps reaches a new subscriber before a message published after it subscribed
      const ping = new Promise<void>((resolve) =>
        watcher.on('message', (topic) => topic === topics.available('box-r5') && resolve()),
      );
      await client.publishAsync(topics.available('box-r5'), JSON.stringify({ v: 1, state: 'online' }), {
        qos: 1,
      });
      await ping;
      assert.deepEqual(
        retained.filter((t) => /\/box-r\d\//.test(t)),
        [topics.available('box-r4')],
      );
      await watcher.endAsync();
      await client.endAsync();
    });

    it('marks a device offline by its Last Will when its connection drops', async () => {
      const will = {
        topic: topics.available('box-5'),
        payload: Buffer.from('{"v":1,"state":"offline"}'),
        qos: 1 as const,
        retain: true,
      };
      const client = await deviceClient(cp.mqttUrl, 'box-5', { will });
      await client.publishAsync(topics.available('box-5'), JSON.stringify({ v: 1, state: 'online' }), {
        qos: 1,
        retain: true,
      });
      const status = async () => (await getJson<Device>(`${cp.httpUrl}/api/v1/devices/box-5`)).status;
      await eventually(
        async () => ((await status()) === 'online' ? true : undefined),
        10_000,
        'box-5 online',
      );
      client.stream.destroy();
      await eventually(
        async () =>
          (await getJson<Device>(`${cp.httpUrl}/api/v1/devices/box-5`)).status === 'offline'
            ? true
            : undefined,
        10_000,
        'the Last Will to mark box-5 offline',
      );
      await client.endAsync(true);
    });

    it('stores a redelivered event message once', async () => {
      const client = await deviceClient(cp.mqttUrl, 'box-2');
      const message = eventMessage({ device: 'box-2' });
      const before = await metric(cp.httpUrl, 'argus_ingest_duplicates_total');
      for (let i = 0; i < 3; i++)
        await client.publishAsync(topics.events('box-2'), JSON.stringify(message), { qos: 1, dup: i > 0 });
      await client.endAsync();
      await eventually(
        async () =>
          (await metric(cp.httpUrl, 'argus_ingest_duplicates_total')) === before + 2 ? true : undefined,
        5000,
        'two duplicates counted',
      );
      assert.equal((await allEvents(cp, 'box-2')).length, 1);
    });

    it('quarantines a message the database refuses without holding back the messages around it', async () => {
      // a value the database refuses (SQLSTATE class 22 / a SQLite constraint): a trigger for one rule
      await cp.repository.sql.write(
        storage === 'sqlite'
          ? [
              {
                sql: `CREATE TRIGGER refused_rule BEFORE INSERT ON events WHEN NEW.rule = 'refused-rule'
                  BEGIN SELECT RAISE(ABORT, 'refused value'); END`,
              },
            ]
          : [
              {
                sql: `CREATE FUNCTION refused_rule() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN IF NEW.rule = 'refused-rule' THEN RAISE EXCEPTION 'refused value' USING ERRCODE = '22023'; END IF;
                  RETURN NEW; END $$`,
              },
              {
                sql: 'CREATE TRIGGER refused_rule BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refused_rule()',
              },
            ],
      );
      const client = await deviceClient(cp.mqttUrl, 'box-5');
      const refused = () =>
        metric(cp.httpUrl, 'argus_ingest_quarantined_total{reason="refused_by_database"}');
      const before = await refused();
      const messages = Array.from({ length: 41 }, (_, i) =>
        eventMessage({ device: 'box-5', cameraSeq: i, ...(i === 20 ? { rule: 'refused-rule' } : {}) }),
      );
      await Promise.all(
        messages.map((m) => client.publishAsync(topics.events('box-5'), JSON.stringify(m), { qos: 1 })),
      );
      await client.endAsync();
      const stored = await eventually(
        async () => {
          const events = await allEvents(cp, 'box-5');
          return events.length === 40 ? events : undefined;
        },
        10_000,
        '40 events stored',
      );
      assert.deepEqual(
        stored.map((e) => e.event.cameraSeq).sort((a, b) => a - b),
        messages.map((m) => m.cameraSeq).filter((seq) => seq !== 20),
      );
      assert.equal((await refused()) - before, 1);
      await cp.repository.sql.write([
        { sql: `DROP TRIGGER refused_rule${storage === 'postgres' ? ' ON events' : ''}` },
      ]);
    });

    it('rejects, counts and logs malformed, oversized, wrong-schema, foreign and unknown-topic messages, and keeps going', async () => {
      const client = await deviceClient(cp.mqttUrl, 'box-3');
      const count = (reason: string) => metric(cp.httpUrl, `argus_ingest_rejected_total{reason="${reason}"}`);
      // with device credentials (the embedded broker's default) a topic that is not the device's
      // own never reaches ingest: the broker refuses it (not_authorized) and ends the connection
      const foreign = broker === 'embedded' ? 'not_authorized' : 'unknown_topic';
      const reasons = ['malformed_json', 'oversized', 'schema', 'device_mismatch', foreign];
      const before = await Promise.all(reasons.map(count));
      const publish = (topic: string, payload: string | Buffer) =>
        client.publishAsync(topic, payload, { qos: 1 });
      await publish(topics.events('box-3'), '{"v":1,"id":');
      await publish(topics.events('box-3'), Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x20));
      await publish(
        topics.events('box-3'),
        JSON.stringify({ ...eventMessage({ device: 'box-3' }), score: 7 }),
      );
      await publish(topics.telemetry('box-3'), JSON.stringify({ v: 1, hello: 'world' }));
      // valid RFC 3339 (a leap second) that Date.parse cannot read: refused before it reaches storage
      await publish(
        topics.events('box-3'),
        JSON.stringify({ ...eventMessage({ device: 'box-3' }), at: '2026-06-30T23:59:60Z' }),
      );
      // a NUL character, which PostgreSQL cannot store in a text column, is outside the contract
      await publish(
        topics.events('box-3'),
        JSON.stringify(eventMessage({ device: 'box-3', rule: 'a\u0000b' })),
      );
      await publish(topics.events('box-3'), JSON.stringify(eventMessage({ device: 'box-4' })));
      const valid = eventMessage({ device: 'box-3' });
      await publish(topics.events('box-3'), JSON.stringify(valid));
      await client.endAsync();
      for (const topic of ['argus/v1/box-3/bogus', 'argus/v1/Not A Device/events']) {
        const other = await deviceClient(cp.mqttUrl, 'box-3');
        const closed = new Promise<void>((resolve) => other.once('close', () => resolve()));
        const published = other.publishAsync(topic, '{}', { qos: 1 });
        if (broker === 'embedded') {
          published.catch(() => undefined);
          await closed;
          other.end(true);
        } else {
          await published;
          await other.endAsync();
        }
      }
      const after = await eventually(
        async () => {
          const now = await Promise.all(reasons.map(count));
          return now[4]! - before[4]! === 2 ? now : undefined;
        },
        5000,
        'rejections counted',
      );
      assert.deepEqual(
        after.map((n, i) => n - before[i]!),
        [1, 1, 4, 1, 2],
        reasons.join(', '),
      );
      const stored = await allEvents(cp, 'box-3');
      assert.deepEqual(
        stored.map((e) => e.event.id),
        [valid.id],
        'only the valid message is stored',
      );
      assert.equal((await apiFetch(`${cp.httpUrl}/healthz`)).status, 200);
    });
  });
}
