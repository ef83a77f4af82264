import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, type MqttClient } from 'mqtt';
import { MAX_PAYLOAD_BYTES, topics } from '../../contract/index.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import { AgentProcess, writeAgentConfig } from '../helpers/device-setup.ts';
import { eventually } from '../helpers/eventually.ts';
import { MosquittoBroker } from '../helpers/mosquitto-broker.ts';
import { PostgresServer } from '../helpers/postgres.ts';
import { eventMessage } from './fixtures.ts';
import { apiFetch, getJson, metric, startTestControlPlane, TOKEN } from './setup.ts';

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

/** events and statuses per camera in the fixture recording */
const RECORDED_EVENTS = 40;
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

async function v5Client(url: string): Promise<MqttClient> {
  const client = connect(url, { protocolVersion: 5, reconnectPeriod: 0 });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
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
        spool: { sync: 'normal' },
      });
      await writeFile(file, (await readFile(file, 'utf8')).replace(/(recorded:\n)/, '$1  loop: false\n'));
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
            if ((await apiFetch(`${cp.httpUrl}/api/v1/snapshots/${id}`)).status !== 200) return undefined;
          return true;
        },
        20_000,
        'every referenced snapshot uploaded',
      );
      const res = await apiFetch(`${cp.httpUrl}/api/v1/snapshots/${snapshots[0]}`);
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
      assert.equal((await apiFetch(`${cp.httpUrl}/api/v1/snapshots/${snapshot}`)).status, 200);
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

    it('marks a device offline by its Last Will when its connection drops', async () => {
      const will = {
        topic: topics.available('box-5'),
        payload: Buffer.from('{"v":1,"state":"offline"}'),
        qos: 1 as const,
        retain: true,
      };
      const client = connect(cp.mqttUrl, { protocolVersion: 5, reconnectPeriod: 0, will });
      await new Promise<void>((resolve) => client.once('connect', () => resolve()));
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
      const client = await v5Client(cp.mqttUrl);
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

    it('drops a message the database refuses without holding back the messages around it', async () => {
      const client = await v5Client(cp.mqttUrl);
      const refused = () => metric(cp.httpUrl, 'argus_ingest_rejected_total{reason="refused_by_database"}');
      const before = await refused();
      // a NUL character follows the contract but PostgreSQL cannot store it in text; SQLite can
      const messages = Array.from({ length: 41 }, (_, i) =>
        eventMessage({ device: 'box-5', cameraSeq: i, ...(i === 20 ? { rule: 'left\u0000road' } : {}) }),
      );
      await Promise.all(
        messages.map((m) => client.publishAsync(topics.events('box-5'), JSON.stringify(m), { qos: 1 })),
      );
      await client.endAsync();
      const expected = storage === 'postgres' ? 40 : 41;
      const stored = await eventually(
        async () => {
          const events = await allEvents(cp, 'box-5');
          return events.length === expected ? events : undefined;
        },
        10_000,
        `${expected} events stored`,
      );
      assert.deepEqual(
        stored.map((e) => e.event.cameraSeq).sort((a, b) => a - b),
        messages.map((m) => m.cameraSeq).filter((seq) => storage === 'sqlite' || seq !== 20),
      );
      assert.equal((await refused()) - before, storage === 'postgres' ? 1 : 0);
    });

    it('rejects, counts and logs malformed, oversized, wrong-schema, foreign and unknown-topic messages, and keeps going', async () => {
      const client = await v5Client(cp.mqttUrl);
      const count = (reason: string) => metric(cp.httpUrl, `argus_ingest_rejected_total{reason="${reason}"}`);
      const reasons = ['malformed_json', 'oversized', 'schema', 'device_mismatch', 'unknown_topic'];
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
      await publish(topics.events('box-3'), JSON.stringify(eventMessage({ device: 'box-4' })));
      await publish('argus/v1/box-3/bogus', '{}');
      await publish('argus/v1/Not A Device/events', '{}');
      const valid = eventMessage({ device: 'box-3' });
      await publish(topics.events('box-3'), JSON.stringify(valid));
      await client.endAsync();
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
        [1, 1, 3, 1, 2],
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
