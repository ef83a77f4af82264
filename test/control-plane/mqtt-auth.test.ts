import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { type Socket, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { pino } from 'pino';
import { topics } from '../../contract/index.ts';
import { type ControlPlane, controlPlaneConfig, startControlPlane } from '../../control-plane/index.ts';
import { eventually } from '../helpers/eventually.ts';
import { eventMessage } from './fixtures.ts';
import {
  apiFetch,
  deviceClient,
  getJson,
  metric,
  startTestControlPlane,
  TEST_DEVICES,
  TOKEN,
  tokenOf,
} from './setup.ts';

const MAX_CONNECTIONS_PER_ADDRESS = 6;
/** CONNACK reason 133 (v5), from return code 2 of aedes */
const ID_REFUSED = /Client Identifier not valid/i;
const CONNECT_TIMEOUT_S = 1.5;

const refused = (cp: ControlPlane, reason: string) =>
  metric(cp.httpUrl, `argus_mqtt_connections_refused_total{reason="${reason}"}`);
const notAuthorized = (cp: ControlPlane) =>
  metric(cp.httpUrl, 'argus_ingest_rejected_total{reason="not_authorized"}');

/** a raw TCP connection to the broker; `closed` resolves when the broker ends it */
async function rawSocket(url: string): Promise<{ socket: Socket; closed: Promise<void> }> {
  const { port } = new URL(url);
  const socket = tcpConnect(Number(port), '127.0.0.1');
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await once(socket, 'connect');
  return { socket, closed };
}

/** connects as box-1 over a raw socket (MQTT `version`) and waits for the CONNACK */
async function rawDevice(url: string, version: 4 | 5): Promise<{ socket: Socket; closed: Promise<void> }> {
  const raw = await rawSocket(url);
  const parser = mqttPacket.parser({ protocolVersion: version });
  const connack = new Promise<mqttPacket.Packet>((resolve) => parser.once('packet', resolve));
  raw.socket.on('data', (d: Buffer) => parser.parse(d));
  raw.socket.write(
    mqttPacket.generate(
      {
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: version,
        clean: true,
        clientId: 'argus-box-1',
        keepalive: 30,
        username: 'box-1',
        password: Buffer.from(TOKEN),
      },
      { protocolVersion: version },
    ),
  );
  const ack = (await connack) as mqttPacket.IConnackPacket;
  assert.equal(version === 5 ? ack.reasonCode : ack.returnCode, 0, 'box-1 connected');
  return raw;
}

/**
 * Writes the header of a PUBLISH announcing `announced` bytes, then body bytes in 64 KiB chunks
 * until the broker closes the connection; answers how many bytes were written by then.
 */
async function streamHugePublish(socket: Socket, closed: Promise<void>, announced: number): Promise<number> {
  const length: number[] = [];
  let n = announced;
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    length.push(byte);
  } while (n > 0);
  let written = 0;
  let done = false;
  void closed.then(() => {
    done = true;
  });
  socket.write(Buffer.from([0x32, ...length]));
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  while (!done && written < announced) {
    if (!socket.write(chunk)) await Promise.race([once(socket, 'drain').catch(() => undefined), closed]);
    written += chunk.length;
    await new Promise((r) => setImmediate(r));
  }
  await closed;
  return written;
}

describe('embedded broker: device credentials (the default) and transport bounds', () => {
  let dir: string;
  let cp: ControlPlane;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-mqtt-auth-'));
    cp = await startTestControlPlane({
      dir,
      embedded: {
        maxConnectionsPerAddress: MAX_CONNECTIONS_PER_ADDRESS,
        connectTimeoutS: CONNECT_TIMEOUT_S,
      },
    });
  });
  after(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a connection without the device credential or with a client id not its own', async () => {
    const before = await notAuthorized(cp);
    for (const [options, why] of [
      [{ username: undefined, password: undefined }, /Bad User Name or Password/],
      [{ credential: 'wrong-token-of-box-1' }, /Bad User Name or Password/],
      [{ credential: tokenOf('box-2') }, /Bad User Name or Password/],
      [{ clientId: 'argus-box-2' }, ID_REFUSED],
      [{ clientId: 'my-own-client-id' }, ID_REFUSED],
    ] as const) {
      await assert.rejects(deviceClient(cp.mqttUrl, 'box-1', options), why, JSON.stringify(options));
    }
    await assert.rejects(
      deviceClient(cp.mqttUrl, 'box-9', { credential: TOKEN }),
      /Bad User Name or Password/,
    );
    assert.equal((await notAuthorized(cp)) - before, 6);
  });

  it("stores a device's own messages, and refuses another device's topics, commands, # and $SYS", async () => {
    const before = await notAuthorized(cp);
    const client = await deviceClient(cp.mqttUrl, 'box-1');
    const own = eventMessage({ device: 'box-1' });
    await client.publishAsync(topics.events('box-1'), JSON.stringify(own), { qos: 1 });
    const granted = await client.subscribeAsync(topics.commandFilter('box-1'), { qos: 1 });
    assert.equal(granted[0]?.qos, 1, 'its own commands');
    for (const filter of [
      topics.commandFilter('box-2'),
      '#',
      '$SYS/#',
      '$SYS/+/new/clients',
      'argus/v1/+/cmd/+',
    ])
      await assert.rejects(client.subscribeAsync(filter, { qos: 1 }), /Subscribe error/, filter);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    void client
      .publishAsync(topics.events('box-2'), JSON.stringify(eventMessage({ device: 'box-2' })), { qos: 1 })
      .catch(() => undefined);
    await closed;
    client.end(true);
    assert.equal((await notAuthorized(cp)) - before, 6, '5 subscriptions and 1 publish refused');
    const page = await getJson<{ events: { event: { id: string } }[] }>(
      `${cp.httpUrl}/api/v1/events?device=box-1`,
    );
    assert.ok(page.events.some((e) => e.event.id === own.id));
    assert.equal(
      (await getJson<{ events: unknown[] }>(`${cp.httpUrl}/api/v1/events?device=box-2`)).events.length,
      0,
    );
  });

  it("cannot take over another device's client id: the session and its queued commands stay", async () => {
    // box-4 has a persistent session with its command subscription, then goes away
    const first = await deviceClient(cp.mqttUrl, 'box-4', {
      clean: false,
      properties: { sessionExpiryInterval: 600 },
    });
    await first.subscribeAsync(topics.commandFilter('box-4'), { qos: 1 });
    await first.publishAsync(topics.available('box-4'), JSON.stringify({ v: 1, state: 'online' }), {
      qos: 1,
      retain: true,
    });
    await first.endAsync();
    const res = await apiFetch(`${cp.httpUrl}/api/v1/devices/box-4/commands/reload-config`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ args: {} }),
    });
    assert.equal(res.status, 202);
    const command = (await res.json()) as { id: string };
    // box-5, with its own valid credential, tries box-4's client id with a clean session
    await assert.rejects(
      deviceClient(cp.mqttUrl, 'box-5', { clientId: 'argus-box-4', clean: true }),
      ID_REFUSED,
    );
    const back = await deviceClient(cp.mqttUrl, 'box-4', {
      clean: false,
      properties: { sessionExpiryInterval: 600 },
    });
    const received = await new Promise<{ id: string }>((resolve) =>
      back.once('message', (_topic, payload) => resolve(JSON.parse(payload.toString()) as { id: string })),
    );
    assert.equal(received.id, command.id, 'the queued command is still delivered to box-4');
    await back.endAsync();
  });

  it('a live connection of a device is not kicked by another device presenting its client id', async () => {
    const box1 = await deviceClient(cp.mqttUrl, 'box-1');
    await assert.rejects(deviceClient(cp.mqttUrl, 'box-2', { clientId: 'argus-box-1' }), ID_REFUSED);
    await box1.publishAsync(topics.events('box-1'), JSON.stringify(eventMessage({ device: 'box-1' })), {
      qos: 1,
    });
    assert.equal(box1.connected, true);
    await box1.endAsync();
  });

  for (const version of [4, 5] as const) {
    it(`closes a connection announcing a 100 MB publish before reading it (MQTT ${version === 5 ? 'v5' : '3.1.1'})`, async () => {
      const before = await refused(cp, 'packet_too_large');
      const { socket, closed } = await rawDevice(cp.mqttUrl, version);
      const written = await streamHugePublish(socket, closed, 100 * 1024 * 1024);
      assert.ok(written < 8 * 1024 * 1024, `closed after ${written} bytes of the 100 MB`);
      assert.equal((await refused(cp, 'packet_too_large')) - before, 1);
    });
  }

  it('closes a connection whose CONNECT announces more than the maximum packet size', async () => {
    const before = await refused(cp, 'packet_too_large');
    const { socket, closed } = await rawSocket(cp.mqttUrl);
    const written = await streamHugePublish(socket, closed, 50 * 1024 * 1024);
    assert.ok(written < 8 * 1024 * 1024, `closed after ${written} bytes`);
    assert.equal((await refused(cp, 'packet_too_large')) - before, 1);
  });

  it('closes TCP connections that never complete their CONNECT', async () => {
    const before = await refused(cp, 'connect_timeout');
    const silent = await rawSocket(cp.mqttUrl);
    const slow = await rawSocket(cp.mqttUrl);
    slow.socket.write(Buffer.from([0x10, 0x20, 0x00])); // the first bytes of a CONNECT, then nothing
    await Promise.all([silent.closed, slow.closed]);
    assert.equal((await refused(cp, 'connect_timeout')) - before, 2);
  });

  it('closes connections from one address beyond the limit, and takes new ones when others end', async () => {
    const before = await refused(cp, 'connections_per_address');
    const open = await Promise.all(
      Array.from({ length: MAX_CONNECTIONS_PER_ADDRESS }, (_, i) =>
        deviceClient(cp.mqttUrl, TEST_DEVICES[i]!),
      ),
    );
    const extra = await rawSocket(cp.mqttUrl);
    await extra.closed;
    assert.equal((await refused(cp, 'connections_per_address')) - before, 1);
    assert.ok(
      open.every((c) => c.connected),
      'the connections within the limit stay',
    );
    await open[0]!.endAsync();
    await eventually(
      async () => {
        const c = await deviceClient(cp.mqttUrl, TEST_DEVICES[0]!).catch(() => undefined);
        await c?.endAsync();
        return c ? true : undefined;
      },
      5000,
      'a connection within the limit again',
    );
    await Promise.all(open.slice(1).map((c) => c.endAsync()));
  });

  it('never lets a connection act as another device (property over usernames, client ids, passwords)', async () => {
    const devices = ['box-1', 'box-2', 'box-3'];
    const name = fc.oneof(fc.constantFrom(...devices, 'box-9', ''), fc.string({ maxLength: 20 }));
    const attempt = fc.record({
      username: name,
      clientId: fc.oneof(
        name.map((n) => `argus-${n}`),
        fc.constantFrom('argus-box-1', 'argus-box-2', 'argus-', 'box-1'),
        fc.string({ minLength: 1, maxLength: 30 }),
      ),
      password: fc.oneof(fc.constantFrom(...devices.map(tokenOf), 'box-1', ''), fc.string({ maxLength: 40 })),
      target: fc.constantFrom(...devices),
    });
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(attempt, async (a) => {
        const legit =
          devices.includes(a.username) &&
          a.clientId === `argus-${a.username}` &&
          a.password === tokenOf(a.username);
        let client: MqttClient | undefined;
        try {
          client = await deviceClient(cp.mqttUrl, a.username || 'x', {
            clientId: a.clientId,
            username: a.username,
            credential: a.password,
            connectTimeout: 5000,
          });
        } catch {
          assert.equal(legit, false, `refused a legitimate ${JSON.stringify(a)}`);
          return;
        }
        accepted++;
        assert.equal(legit, true, `accepted ${JSON.stringify(a)}`);
        if (a.target !== a.username) {
          const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
          const forged = eventMessage({ device: a.target });
          void client
            .publishAsync(topics.events(a.target), JSON.stringify(forged), { qos: 1 })
            .catch(() => undefined);
          await closed;
          const stored = await getJson<{ events: { event: { id: string } }[] }>(
            `${cp.httpUrl}/api/v1/events?device=${a.target}&limit=500`,
          );
          assert.ok(!stored.events.some((e) => e.event.id === forged.id), 'a forged event was stored');
        }
        await client.endAsync(true);
      }),
      // the seed is fixed so that a failure replays; the legitimate combinations are added to
      // the random ones so that both sides of the property are exercised
      {
        seed: 20261201,
        numRuns: 150,
        examples: devices.map((d) => [
          { username: d, clientId: `argus-${d}`, password: tokenOf(d), target: 'box-2' },
        ]),
      },
    );
    assert.ok(accepted >= devices.length, `${accepted} connections accepted`);
  });
});

describe('embedded broker in open mode', () => {
  it('is an explicit setting that warns at every start', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'argus-mqtt-open-'));
    const lines: { level: number; msg: string }[] = [];
    const log = pino(
      { level: 'warn' },
      { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) },
    );
    try {
      for (const deviceCredentials of [false, true]) {
        lines.length = 0;
        const cp = await startControlPlane(
          controlPlaneConfig({
            http: { port: 0 },
            mqtt: { embedded: { port: 0, deviceCredentials } },
            storage: { sqlite: { path: join(dir, 'argus.db'), synchronous: 'normal' } },
          }),
          log,
        );
        const warned = lines.some((l) => l.level === 40 && /deviceCredentials is false/.test(l.msg));
        if (deviceCredentials) {
          assert.equal(warned, false);
          await assert.rejects(deviceClient(cp.mqttUrl, 'box-1'), /Bad User Name or Password/);
        } else {
          assert.equal(warned, true, JSON.stringify(lines));
          const anyone = await deviceClient(cp.mqttUrl, 'box-1', {
            clientId: 'whoever',
            credential: 'nothing-at-all',
          });
          await anyone.endAsync();
        }
        await cp.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
