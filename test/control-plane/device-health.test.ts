import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import type { MqttClient } from 'mqtt';
import { type CameraStatus, type Telemetry, topics } from '../../contract/index.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import { eventually } from '../helpers/eventually.ts';
import { PostgresServer } from '../helpers/postgres.ts';
import { followSse } from '../helpers/sse.ts';
import { telemetry } from '../helpers/telemetry.ts';
import { apiFetch, deviceClient, getJson, metric, startTestControlPlane } from './setup.ts';

const iso = (ms: number) => new Date(ms).toISOString();
/** a device silent for this long is offline (the config's `health.staleAfterS`) */
const STALE_S = 3;

interface DeviceView {
  status: string;
  telemetry: Telemetry | null;
  telemetryAt: string | null;
  telemetryReceivedAt: string | null;
  telemetryStale: boolean;
  health: { status: string; reasons: string[]; reported: { status: string; reasons: string[] } | null };
  cameras: { camera: string; state: string }[];
}

interface Change {
  kind: string;
  camera: string | null;
  state: string;
  source: string;
  reason: string | null;
  at: string;
  receivedAt: string;
}

function cameraStatus(
  camera: string,
  cameraSeq: number,
  state: 'online' | 'offline',
  reason?: string,
): CameraStatus {
  return {
    v: 1,
    id: `status-${camera}-${cameraSeq}`,
    device: 'box-1',
    camera,
    cameraSeq,
    state,
    at: iso(Date.now()),
    ...(reason ? { reason } : {}),
  };
}

/** an SSE client collecting the `status` messages of a stream */
async function followStatuses(url: string): Promise<{ changes: Change[]; stop(): Promise<void> }> {
  const { items, stop } = await followSse(url, (b) =>
    b.startsWith('event: status\n') ? (JSON.parse(b.slice(b.indexOf('data: ') + 6)) as Change) : undefined,
  );
  return { changes: items, stop };
}

function healthSuite(name: string, storage: () => Promise<{ dir: string; postgresUrl?: string }>): void {
  describe(`device health and history (${name})`, () => {
    let cp: ControlPlane;
    let replica: ControlPlane;
    let client: MqttClient;
    let dir: string;
    /** live streams of both replicas, open from the start */
    let streams: { changes: Change[]; stop(): Promise<void> }[];
    const config = { health: { staleAfterS: STALE_S, sweepS: 0.1 } };
    before(async () => {
      const s = await storage();
      dir = s.dir;
      cp = await startTestControlPlane({ ...s, config });
      // a second replica on the same database: it answers from the same stored times
      replica = await startTestControlPlane({ ...s, config });
      streams = [
        await followStatuses(`${cp.httpUrl}/api/v1/events/stream?device=box-1`),
        await followStatuses(`${replica.httpUrl}/api/v1/events/stream`),
      ];
      client = await deviceClient(cp.mqttUrl, 'box-1');
    });
    after(async () => {
      for (const s of streams ?? []) await s.stop();
      await client?.endAsync();
      await cp?.close();
      await replica?.close();
      await rm(dir, { recursive: true, force: true });
    });

    const publish = (topic: string, body: unknown) =>
      client.publishAsync(topic, JSON.stringify(body), { qos: 1 });
    const device = (on: ControlPlane = cp) => getJson<DeviceView>(`${on.httpUrl}/api/v1/devices/box-1`);

    it('shows the device, its telemetry and its own verdict, degraded also for what the control plane sees', async () => {
      const stream = streams[0]!;
      const t0 = Date.now() - 10_000;
      await publish(topics.available('box-1'), { v: 1, state: 'online', at: iso(t0) });
      await publish(topics.status('box-1'), cameraStatus('cam-1', 1, 'online'));
      await publish(topics.status('box-1'), cameraStatus('cam-2', 1, 'offline', 'end of stream'));
      const verdict = { status: 'degraded' as const, reasons: ['snapshot uploads refused: 401'] };
      for (let i = 0; i < 5; i++)
        await publish(
          topics.telemetry('box-1'),
          telemetry('box-1', t0 + i * 1000, verdict ? { health: verdict } : {}),
        );
      // a redelivered telemetry message is stored once
      await publish(
        topics.telemetry('box-1'),
        telemetry('box-1', t0 + 4000, verdict ? { health: verdict } : {}),
      );

      const d = await device();
      assert.equal(d.status, 'online');
      assert.equal(d.telemetryStale, false);
      assert.equal(d.telemetryAt, iso(t0 + 4000));
      assert.ok(d.telemetryReceivedAt);
      assert.deepEqual(d.health.reported, verdict);
      assert.equal(d.health.status, 'degraded');
      assert.deepEqual(d.health.reasons, [
        'snapshot uploads refused: 401',
        'camera cam-2 offline: end of stream',
      ]);
      assert.deepEqual(
        d.cameras.map((c) => [c.camera, c.state]),
        [
          ['cam-1', 'online'],
          ['cam-2', 'offline'],
        ],
      );
      assert.deepEqual(await device(replica), d, 'the other replica answers the same');

      // live: the camera statuses and the availability message
      await eventually(
        async () => (stream.changes.length >= 3 ? true : undefined),
        5000,
        'three status frames',
      );
      assert.deepEqual(
        stream.changes.map((c) => [c.kind, c.camera, c.state]),
        [
          ['device', null, 'online'],
          ['camera', 'cam-1', 'online'],
          ['camera', 'cam-2', 'offline'],
        ],
      );
    });

    it('serves the telemetry history in pages, oldest first, by time range', async () => {
      const base = `${cp.httpUrl}/api/v1/devices/box-1/telemetry`;
      type Page = { telemetry: { at: string; telemetry: Telemetry }[]; nextCursor: string | null };
      const all = await getJson<Page>(base);
      assert.equal(all.telemetry.length, 5, 'five messages, the redelivered one stored once');
      const first = await getJson<Page>(`${base}?limit=2`);
      assert.equal(first.telemetry.length, 2);
      const second = await getJson<Page>(`${base}?limit=2&cursor=${first.nextCursor}`);
      const third = await getJson<Page>(`${base}?limit=2&cursor=${second.nextCursor}`);
      assert.deepEqual(
        [...first.telemetry, ...second.telemetry, ...third.telemetry].map((t) => t.at),
        all.telemetry.map((t) => t.at),
      );
      assert.equal(third.nextCursor, null);
      const window = await getJson<Page>(`${base}?from=${all.telemetry[1]!.at}&to=${all.telemetry[3]!.at}`);
      assert.deepEqual(
        window.telemetry.map((t) => t.at),
        [all.telemetry[1]!.at, all.telemetry[2]!.at],
      );
      assert.equal(
        (await apiFetch(`${base}?from=${all.telemetry[3]!.at}&to=${all.telemetry[1]!.at}`)).status,
        400,
      );
      assert.equal((await getJson<Page>(`${cp.httpUrl}/api/v1/devices/box-9/telemetry`)).telemetry.length, 0);
    });

    it('marks a device that stops reporting offline everywhere, its cameras unknown, its figures stale', async () => {
      const d = await eventually(
        async () => {
          const v = await device();
          return v.status === 'offline' ? v : undefined;
        },
        10_000,
        'box-1 offline',
      );
      assert.equal(d.telemetryStale, true);
      assert.ok(d.telemetry, 'the last figures stay, marked stale');
      assert.deepEqual(
        d.cameras.map((c) => c.state),
        ['unknown', 'unknown'],
      );
      assert.equal(d.health.status, 'offline');
      assert.match(d.health.reasons[0]!, /^no message for \d+ s$/);
      assert.equal((await device(replica)).status, 'offline', 'on the other replica too');
      assert.equal(await metric(cp.httpUrl, 'argus_devices_online'), 0);
      assert.equal(await metric(replica.httpUrl, 'argus_devices_silent'), 1);
      // the sweep records it once, whichever replica holds its lease; live on that replica
      const offline = await eventually(
        async () => {
          const h = await getJson<{ changes: Change[] }>(`${cp.httpUrl}/api/v1/devices/box-1/status-history`);
          const found = h.changes.filter((c) => c.kind === 'device' && c.source === 'control-plane');
          return found.length > 0 ? found : undefined;
        },
        5000,
        'the offline transition in the history',
      );
      assert.equal(offline.length, 1);
      assert.equal(offline[0]!.state, 'offline');
      assert.match(offline[0]!.reason!, /health\.staleAfterS/);
      // live on the replica that recorded it, and only there
      const live = await eventually(
        async () => {
          const seen = streams.map((s) =>
            s.changes.filter((c) => c.source === 'control-plane' && c.state === 'offline'),
          );
          return seen.some((c) => c.length > 0) ? seen : undefined;
        },
        5000,
        'the offline frame on a live stream',
      );
      assert.deepEqual(live.map((c) => c.length).sort(), [0, 1]);

      // it reports again: online, and the history says so
      await publish(topics.telemetry('box-1'), telemetry('box-1', Date.now()));
      const back = await device();
      assert.equal(back.status, 'online');
      assert.equal(back.telemetryStale, false);
      assert.equal(back.cameras[0]!.state, 'online');
      await eventually(
        async () => {
          const h = await getJson<{ changes: Change[] }>(`${cp.httpUrl}/api/v1/devices/box-1/status-history`);
          return h.changes[0]?.state === 'online' && h.changes[0].source === 'control-plane'
            ? true
            : undefined;
        },
        5000,
        'the return in the history',
      );
    });

    it('pages through the status history, newest first, by camera and time', async () => {
      const base = `${cp.httpUrl}/api/v1/devices/box-1/status-history`;
      type Page = { changes: Change[]; nextCursor: string | null };
      const all = await getJson<Page>(base);
      assert.deepEqual(
        all.changes.map((c) => [c.kind, c.camera, c.state, c.source]),
        [
          ['device', null, 'online', 'control-plane'],
          ['device', null, 'offline', 'control-plane'],
          ['camera', 'cam-2', 'offline', 'device'],
          ['camera', 'cam-1', 'online', 'device'],
          ['device', null, 'online', 'device'],
        ],
      );
      const walked: Change[] = [];
      let cursor: string | null = null;
      do {
        const page: Page = await getJson<Page>(`${base}?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        walked.push(...page.changes);
        cursor = page.nextCursor;
      } while (cursor);
      assert.deepEqual(walked, all.changes);
      const cam1 = await getJson<Page>(`${base}?camera=cam-1`);
      assert.deepEqual(
        cam1.changes.map((c) => c.camera),
        [null, null, 'cam-1', null],
      );
      const from = all.changes[1]!.receivedAt;
      const since = await getJson<Page>(`${base}?from=${from}`);
      assert.ok(since.changes.every((c) => c.receivedAt >= from));
      assert.ok(since.changes.length >= 2 && since.changes.length < all.changes.length);
    });
  });
}

let pg: PostgresServer;
before(async () => {
  pg = await PostgresServer.start({ fsync: false });
});
after(async () => {
  await pg?.stop();
});

healthSuite('sqlite', async () => ({ dir: await mkdtemp(`${tmpdir()}/argus-health-`) }));
healthSuite('postgres', async () => ({
  dir: await mkdtemp(`${tmpdir()}/argus-health-pg-`),
  postgresUrl: await pg.createDatabase('argus_health'),
}));
