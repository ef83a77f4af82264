/**
 * Reconnects leave nothing behind and log an outage once: the MQTT uplink against a real Mosquitto
 * that is stopped and started again, the snapshot uploader against a real HTTP endpoint that is
 * unreachable, busy and back. Listeners, timers and log lines are counted across 100 retries.
 */
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { freeTcpPort } from '../../common/net.ts';
import type { MqttSettings } from '../../device/config.ts';
import { SnapshotUploader } from '../../device/snapshots.ts';
import { Spool } from '../../device/spool.ts';
import { Uplink } from '../../device/uplink.ts';
import { SnapshotReceiver } from '../helpers/device-setup.ts';
import { eventually } from '../helpers/eventually.ts';
import { MosquittoBroker } from '../helpers/mosquitto-broker.ts';

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** a logger whose lines a test can read */
function capturingLogger() {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as LogLine);
      done();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}
const WARN = 40;

const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('reconnects', () => {
  let dir: string;
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-reconnects-'));
    process.on('warning', onWarning);
  });
  after(async () => {
    process.off('warning', onWarning);
    await rm(dir, { recursive: true, force: true });
  });

  const openSpool = (name: string) =>
    Spool.open(
      join(dir, `${name}.db`),
      {
        maxMessages: 1000,
        maxBytes: 1024 * 1024,
        maxSnapshots: 100,
        maxSnapshotBytes: 1024 * 1024,
        maxHarvestFrames: 100,
        maxHarvestBytes: 1024 * 1024,
        sync: 'normal',
      },
      pino({ level: 'silent' }),
    );

  it('the uplink keeps no listener or timer per attempt over 100 retries and logs the outage once', async () => {
    const broker = await MosquittoBroker.create({ dir: join(dir, 'broker') });
    const spool = openSpool('uplink');
    const { log, lines } = capturingLogger();
    const mqtt: MqttSettings & { clientId: string } = {
      url: broker.url,
      clientId: 'argus-reconnects',
      keepaliveS: 30,
      heartbeatS: 30,
      sessionExpiryS: 3600,
      reconnectS: 0.02,
      inflight: 10,
      shutdownFlushS: 1,
    };
    let connects = 0;
    const uplink = new Uplink({
      device: 'reconnects',
      mqtt,
      credential: 'credential-of-reconnects',
      spool,
      log,
      onCommand: () => undefined,
      onConnected: () => connects++,
    });
    try {
      uplink.start();
      await eventually(async () => (uplink.connected ? true : undefined), 10_000, 'the first connect');
      await broker.stop();
      const client = uplink['client']!;
      const listeners = () => client.eventNames().reduce((n, e) => n + client.listenerCount(e), 0);
      const attempts = () => uplink['attempts'];
      await eventually(async () => (attempts() >= 10 ? true : undefined), 20_000, '10 retries');
      const early = { listeners: listeners(), timers: timers() };
      await eventually(async () => (attempts() >= 110 ? true : undefined), 60_000, '110 retries');
      const late = { listeners: listeners(), timers: timers() };
      assert.ok(
        late.listeners <= early.listeners,
        `client listeners: ${early.listeners} → ${late.listeners}`,
      );
      assert.ok(late.timers <= early.timers + 1, `active timers: ${early.timers} → ${late.timers}`);
      const outageWarnings = lines.filter((l) => l.level >= WARN);
      assert.ok(
        outageWarnings.length <= 2,
        `warnings over 110 retries: ${JSON.stringify(outageWarnings.map((l) => l.msg))}`,
      );
      assert.equal(uplink.disconnectedSince !== undefined, true);
      await broker.start();
      await eventually(async () => (connects >= 2 ? true : undefined), 10_000, 'the reconnect');
      const connected = lines.filter((l) => l.msg === 'mqtt connected').at(-1)!;
      assert.ok(Number(connected.attempts) >= 110, JSON.stringify(connected));
      assert.ok(Number(connected.outageS) > 0);
      assert.equal(uplink.disconnectedSince, undefined);
      assert.deepEqual(
        warnings.filter((w) => w.name === 'MaxListenersExceededWarning'),
        [],
      );
    } finally {
      await uplink.stop();
      spool.close();
      await broker.stop();
    }
  });

  it('the snapshot uploader keeps no listener or timer per attempt over 100 retries and logs the outage once', async () => {
    const spool = openSpool('uploader-retries');
    const { log, lines } = capturingLogger();
    const port = await freeTcpPort();
    const uploader = new SnapshotUploader('box', `http://127.0.0.1:${port}`, 't', spool, log, undefined, {
      backoffStartMs: 2,
      unreachableMaxMs: 5,
      busyMaxMs: 5,
    });
    spool.addSnapshot({ id: 'snapshot-0001', jpeg: Buffer.alloc(100) });
    const stop = uploader['stop$'].signal;
    try {
      uploader.start();
      const attempts = () => uploader['attempts'];
      await eventually(async () => (attempts() >= 10 ? true : undefined), 20_000, '10 attempts');
      const early = { abort: getEventListeners(stop, 'abort').length, timers: timers() };
      await eventually(async () => (attempts() >= 110 ? true : undefined), 60_000, '110 attempts');
      const late = { abort: getEventListeners(stop, 'abort').length, timers: timers() };
      assert.ok(late.abort <= 1 && early.abort <= 1, `abort listeners: ${early.abort} → ${late.abort}`);
      assert.ok(late.timers <= early.timers + 1, `active timers: ${early.timers} → ${late.timers}`);
      assert.equal(uploader.uploadState.failing, 'unreachable');
      const outageLines = lines.filter((l) => l.level >= WARN);
      assert.equal(outageLines.length, 1, JSON.stringify(outageLines.map((l) => l.msg)));
      assert.deepEqual(
        warnings.filter((w) => w.name === 'MaxListenersExceededWarning'),
        [],
      );
    } finally {
      await uploader.stop();
      spool.close();
    }
  });

  it('snapshot uploads resume within seconds of the control plane coming back, at once on retryNow', async () => {
    const spool = openSpool('uploader-resume');
    const { log, lines } = capturingLogger();
    const port = await freeTcpPort();
    const uploader = new SnapshotUploader('box', `http://127.0.0.1:${port}`, 'token-box', spool, log);
    spool.addSnapshot({ id: 'snapshot-0001', jpeg: Buffer.alloc(100) });
    let receiver: SnapshotReceiver | undefined;
    try {
      uploader.start();
      // 15 s unreachable: an uncapped doubling backoff would now wait 16 s, then 32 s
      await new Promise((r) => setTimeout(r, 15_000));
      receiver = await SnapshotReceiver.start({ box: 'token-box' }, port);
      const back = performance.now();
      assert.equal(await uploader.waitFor('snapshot-0001', 10_000), true);
      const resumedS = (performance.now() - back) / 1000;
      assert.ok(resumedS < 7, `uploads resumed ${resumedS.toFixed(1)} s after the control plane came back`);
      assert.ok(lines.some((l) => l.msg === 'snapshot uploads resumed'));

      // busy (503) for a while: the backoff grows towards a minute; retryNow (MQTT back) ends it
      receiver.failWith = 503;
      spool.addSnapshot({ id: 'snapshot-0002', jpeg: Buffer.alloc(100) });
      uploader.kick();
      await new Promise((r) => setTimeout(r, 8_000));
      receiver.failWith = undefined;
      const retried = performance.now();
      uploader.retryNow();
      assert.equal(await uploader.waitFor('snapshot-0002', 5_000), true);
      assert.ok(performance.now() - retried < 2_000);
    } finally {
      await uploader.stop();
      spool.close();
      await receiver?.close();
    }
  });
});
