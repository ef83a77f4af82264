/**
 * Honest health on the box: real agent processes (recorded events) with a real Mosquitto and a
 * snapshot endpoint. /healthz and the telemetry heartbeat carry the same verdict: `degraded` with
 * a reason for each problem, `ok` only when there is none.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectAsync, type MqttClient } from 'mqtt';
import sharp from 'sharp';
import { freeTcpPort } from '../../common/net.ts';
import type { EventMessage, Telemetry } from '../../contract/index.ts';
import { MAX_SNAPSHOT_BYTES, topics } from '../../contract/index.ts';
import { healthVerdict } from '../../device/health.ts';
import type { SpoolStats } from '../../device/spool.ts';
import { AgentProcess, RECORDING, SnapshotReceiver, writeAgentConfig } from '../helpers/device-setup.ts';
import { eventually } from '../helpers/eventually.ts';
import { MosquittoBroker } from '../helpers/mosquitto-broker.ts';

describe('box health', () => {
  let dir: string;
  let broker: MosquittoBroker;
  let receiver: SnapshotReceiver;
  let watcher: MqttClient;
  const telemetry = new Map<string, Telemetry>();
  const events: EventMessage[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-health-'));
    broker = await MosquittoBroker.create({ dir: join(dir, 'broker') });
    receiver = await SnapshotReceiver.start({
      'box-ok': 'token-of-box-ok-for-tests',
      'box-refused': 'the-right-token',
      'box-alone': 'token-of-box-alone-for-tests',
      'box-big': 'token-of-box-big-for-tests',
    });
    watcher = await connectAsync(broker.url, { protocolVersion: 5 });
    watcher.on('message', (topic, payload) => {
      if (topic === topics.events('box-big')) {
        events.push(JSON.parse(payload.toString()) as EventMessage);
        return;
      }
      const t = JSON.parse(payload.toString()) as Telemetry;
      telemetry.set(t.device, t);
    });
    await watcher.subscribeAsync([topics.telemetry('+'), topics.events('box-big')], { qos: 1 });
  });
  after(async () => {
    await watcher?.endAsync();
    await receiver?.close();
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const start = async (device: string, o: Partial<Parameters<typeof writeAgentConfig>[1]> = {}) =>
    AgentProcess.start(
      await writeAgentConfig(dir, {
        device,
        brokerUrl: broker.url,
        controlPlaneUrl: receiver.url,
        cameras: ['cam-1'],
        ...o,
      }),
    );

  it('is ok when nothing is wrong, in /healthz and in telemetry', async () => {
    const agent = await start('box-ok');
    try {
      const h = await eventually(
        async () => {
          const r = await agent.health();
          return r.status === 'ok' && receiver.snapshots.size > 0 ? r : undefined;
        },
        15_000,
        'an ok box that uploaded a snapshot',
      );
      assert.deepEqual(h.reasons, []);
      const t = await eventually(
        async () => (telemetry.get('box-ok')?.health?.status === 'ok' ? telemetry.get('box-ok') : undefined),
        10_000,
        'ok telemetry',
      );
      assert.deepEqual(t.health, { status: 'ok', reasons: [] });
      assert.ok(t.spool.snapshots, 'telemetry counts the snapshot queue');
    } finally {
      await agent.terminate('SIGTERM');
    }
  });

  it('is degraded while snapshot uploads are refused (wrong token), in /healthz and in telemetry', async () => {
    const agent = await start('box-refused', { token: 'a-wrong-token-for-this-box' });
    try {
      const h = await eventually(
        async () => {
          const r = await agent.health();
          return r.reasons.some((x) => /snapshot uploads refused/.test(x)) ? r : undefined;
        },
        15_000,
        'refused uploads in /healthz',
      );
      assert.equal(h.status, 'degraded');
      assert.ok(h.mqtt.connected, 'everything else is fine');
      assert.deepEqual(
        h.reasons.filter((x) => !/snapshot uploads refused/.test(x)),
        [],
      );
      assert.match(h.reasons[0]!, /HTTP 401.*controlPlane\.token/);
      const t = await eventually(
        async () => {
          const health = telemetry.get('box-refused')?.health;
          return health?.reasons.some((x) => /snapshot uploads refused/.test(x)) ? health : undefined;
        },
        10_000,
        'refused uploads in telemetry',
      );
      assert.equal(t.status, 'degraded');
    } finally {
      await agent.terminate('SIGTERM');
    }
  });

  it('is degraded with a reason each when MQTT is down, the spool near full and a camera offline', async () => {
    const agent = await start('box-alone', {
      brokerUrl: `mqtt://127.0.0.1:${await freeTcpPort()}`,
      loop: false,
      eventsPerSecond: 50,
      spool: { maxMessages: 30 },
    });
    try {
      const h = await eventually(
        async () => {
          const r = await agent.health();
          return r.reasons.length >= 3 ? r : undefined;
        },
        15_000,
        'three reasons',
      );
      assert.equal(h.status, 'degraded');
      assert.equal(h.reasons.length, 3, JSON.stringify(h.reasons));
      assert.match(h.reasons[0]!, /^mqtt disconnected for \d+ s/);
      assert.match(h.reasons[1]!, /^spool 100 % full, \d+ dropped oldest-first/);
      assert.equal(h.reasons[2], 'camera cam-1 offline: end of recording');
    } finally {
      await agent.terminate('SIGTERM');
    }
  });

  it('names a recent detector restart and failing uploads only after a grace time', () => {
    const spool: SpoolStats = {
      pending: 0,
      bytes: 0,
      dropped: 0,
      snapshots: { pending: 0, bytes: 0, dropped: 0 },
      harvest: { pending: 0, bytes: 0, dropped: 0 },
      fill: 0.2,
    };
    const now = 1_000_000_000;
    const base = {
      now,
      mqttDisconnectedSince: undefined,
      uploads: { failing: undefined, since: undefined, detail: undefined },
      spool,
      cameras: [],
      offlineReasons: new Map(),
      detectorRestart: undefined,
    };
    assert.deepEqual(healthVerdict(base), { status: 'ok', reasons: [] });
    assert.deepEqual(healthVerdict({ ...base, detectorRestart: { at: now - 65_000, restarts: 2 } }).reasons, [
      'detector restarted 65 s ago (2 restarts since start)',
    ]);
    assert.equal(
      healthVerdict({ ...base, detectorRestart: { at: now - 11 * 60_000, restarts: 2 } }).status,
      'ok',
    );
    const unreachable = { failing: 'unreachable' as const, detail: 'fetch failed' };
    assert.equal(healthVerdict({ ...base, uploads: { ...unreachable, since: now - 5_000 } }).status, 'ok');
    assert.deepEqual(healthVerdict({ ...base, uploads: { ...unreachable, since: now - 45_000 } }).reasons, [
      'snapshot uploads failing for 45 s: control plane unreachable (fetch failed)',
    ]);
    assert.deepEqual(healthVerdict({ ...base, spool: { ...spool, fill: 0.9 } }).reasons, ['spool 90 % full']);
  });

  it('sends an event whose snapshot is larger than the contract allows, and counts the snapshot lost', async () => {
    // noise at quality 100 without chroma subsampling does not compress: well over 4 MiB
    const [width, height] = [2000, 1500];
    const noise = Buffer.alloc(width * height * 3);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 2654435761) >>> 24;
    const big = await sharp(noise, { raw: { width, height, channels: 3 } })
      .jpeg({ quality: 100, chromaSubsampling: '4:4:4' })
      .toBuffer();
    assert.ok(big.length > MAX_SNAPSHOT_BYTES, `the test's JPEG is only ${big.length} bytes`);
    await writeFile(join(dir, 'big.jpg'), big);
    // the fixture's first event with the big picture, the next one with its own
    const [first, second] = (await readFile(RECORDING, 'utf8'))
      .split('\n')
      .slice(0, 2)
      .map((l) => JSON.parse(l));
    second.snapshotFile = resolve(dirname(RECORDING), second.snapshotFile);
    second.id = 'a-second-event-of-the-recording';
    second.seq = 0;
    second.phase = 'new';
    first.snapshotFile = join(dir, 'big.jpg');
    const recording = join(dir, 'big.events.jsonl');
    await writeFile(recording, `${JSON.stringify(first)}\n${JSON.stringify(second)}\n`);
    const agent = await start('box-big', { recording, loop: false });
    try {
      const t = await eventually(
        async () => {
          const sent = telemetry.get('box-big');
          return (sent?.spool.snapshots?.lost ?? 0) > 0 && events.filter((e) => e.phase === 'new').length >= 2
            ? sent
            : undefined;
        },
        15_000,
        'both events sent and the big snapshot counted lost',
      );
      assert.equal(t.spool.snapshots?.lost, 1);
      // the recorded host replays the lines in order, each as an event of its own
      const [withBig, withSmall] = events.filter((e) => e.phase === 'new');
      assert.ok(withBig?.snapshot && withSmall?.snapshot, 'both events carry their snapshot reference');
      await eventually(
        async () => receiver.snapshots.has(withSmall.snapshot!.id) || undefined,
        10_000,
        'the small snapshot uploaded',
      );
      assert.equal(receiver.snapshots.has(withBig.snapshot.id), false, 'the big snapshot is never uploaded');
    } finally {
      await agent.terminate('SIGTERM');
    }
  });
});
