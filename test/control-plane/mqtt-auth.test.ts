import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { topics } from '../../contract/index.ts';
import { type ControlPlane, controlPlaneConfig, startControlPlane } from '../../control-plane/index.ts';
import { eventually } from '../helpers/eventually.ts';
import { eventMessage } from './fixtures.ts';
import { createAdminToken, getJson, metric, TOKEN, useToken } from './setup.ts';

/** connects; resolves the client, or the error that ended the attempt */
function attempt(url: string, options: IClientOptions): Promise<MqttClient | Error> {
  const client = connect(url, { protocolVersion: 5, reconnectPeriod: 0, ...options });
  return new Promise((resolve) => {
    client.once('connect', () => resolve(client));
    client.once('error', (err) => {
      client.end(true);
      resolve(err);
    });
  });
}

describe('embedded broker with device credentials', () => {
  let dir: string;
  let cp: ControlPlane;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-mqtt-auth-'));
    cp = await startControlPlane(
      controlPlaneConfig({
        http: { port: 0 },
        mqtt: { embedded: { port: 0, deviceCredentials: true } },
        storage: { sqlite: { path: join(dir, 'argus.db') } },
        devices: [{ id: 'box-1', token: TOKEN }],
      }),
    );
    useToken(cp.httpUrl, await createAdminToken(cp.repository.sql));
  });
  after(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a connection without the device token', async () => {
    for (const options of [
      {},
      { username: 'box-1', password: 'wrong-token' },
      { username: 'box-9', password: TOKEN },
    ]) {
      const outcome = await attempt(cp.mqttUrl, options);
      assert.ok(outcome instanceof Error, JSON.stringify(options));
      assert.match(outcome.message, /Bad User Name or Password/);
    }
    assert.equal(await metric(cp.httpUrl, 'argus_ingest_rejected_total{reason="not_authorized"}'), 3);
  });

  it("stores a device's own messages and refuses another device's topic", async () => {
    const client = await attempt(cp.mqttUrl, { username: 'box-1', password: TOKEN });
    assert.ok(!(client instanceof Error));
    const own = eventMessage({ device: 'box-1' });
    await client.publishAsync(topics.events('box-1'), JSON.stringify(own), { qos: 1 });
    const granted = await client.subscribeAsync(topics.commandFilter('box-1'), { qos: 1 });
    assert.equal(granted[0]?.qos, 1, 'its own commands');
    await assert.rejects(client.subscribeAsync(topics.commandFilter('box-2'), { qos: 1 }), /Subscribe error/);
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    void client
      .publishAsync(topics.events('box-2'), JSON.stringify(eventMessage({ device: 'box-2' })), { qos: 1 })
      .catch(() => undefined);
    await closed;
    client.end(true);
    await eventually(
      async () =>
        (await metric(cp.httpUrl, 'argus_ingest_rejected_total{reason="not_authorized"}')) === 4
          ? true
          : undefined,
      5000,
      'the refusal counted',
    );
    const page = await getJson<{ events: { event: { id: string } }[] }>(`${cp.httpUrl}/api/v1/events`);
    assert.deepEqual(
      page.events.map((e) => e.event.id),
      [own.id],
    );
  });
});
