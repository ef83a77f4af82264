import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { initCa, issueCertificate } from '../../common/certificate-authority.ts';
import { sha256Hex } from '../../common/hash.ts';
import { CONTRACT_VERSION, topics } from '../../contract/index.ts';
import { Enrollment } from '../../control-plane/enrollment.ts';
import { type ControlPlane, controlPlaneConfig, startControlPlane } from '../../control-plane/index.ts';
import type { BrokerAccessControl } from '../../control-plane/mqtt/access-control.ts';
import { deviceRoleName } from '../../control-plane/mqtt/mosquitto-dynsec.ts';
import { DeviceCredentialStore } from '../../control-plane/storage/device-credentials.ts';
import { eventually } from '../helpers/eventually.ts';
import { MosquittoBroker } from '../helpers/mosquitto-broker.ts';
import { eventMessage } from './fixtures.ts';
import { apiFetch, createAdminToken, getJson, useToken } from './setup.ts';

const ADMIN = { adminUsername: 'dynsec-admin', adminPassword: 'admin-secret-for-tests' };
const SECRET_A = 'secret-of-box-a-for-tests';
const SECRET_B = 'secret-of-box-b-for-tests';

/** connects once; resolves the client, or the error that ended the attempt */
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

async function device(url: string, id: string, password: string): Promise<MqttClient> {
  const client = await attempt(url, { username: id, password, clientId: `argus-${id}` });
  if (client instanceof Error) throw client;
  return client;
}

/** the reason codes of a SUBACK, or of the error a refused subscription gives */
async function subscribeCodes(client: MqttClient, filter: string): Promise<number[]> {
  try {
    return (await client.subscribeAsync(filter, { qos: 1 })).map((g) => g.qos);
  } catch (err) {
    return ((err as { packet?: { granted?: number[] } }).packet?.granted ?? []) as number[];
  }
}

async function storedEventIds(cp: ControlPlane): Promise<string[]> {
  const page = await getJson<{ events: { event: { id: string } }[] }>(`${cp.httpUrl}/api/v1/events`);
  return page.events.map((e) => e.event.id);
}

describe('external Mosquitto with the dynamic security plugin', () => {
  let dir: string;
  let broker: MosquittoBroker;
  let cp: ControlPlane;
  let access: BrokerAccessControl;
  const open: MqttClient[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-dynsec-'));
    broker = await MosquittoBroker.create({ dir: join(dir, 'broker'), dynamicSecurity: ADMIN });
    cp = await startControlPlane(
      controlPlaneConfig({
        http: { port: 0 },
        mqtt: {
          external: {
            url: broker.url,
            clientId: 'argus-cp-test',
            username: 'argus-control-plane',
            password: 'control-plane-secret-for-tests',
            sharedGroup: 'ingest',
            dynamicSecurity: ADMIN,
          },
        },
        storage: { sqlite: { path: join(dir, 'argus.db'), synchronous: 'normal' } },
        enrollment: { brokerSyncS: 0.5 },
      }),
    );
    useToken(cp.httpUrl, await createAdminToken(cp.repository.sql));
    assert.ok(cp.accessControl, 'the control plane holds the broker access control');
    access = cp.accessControl;
    await access.grant('box-a', SECRET_A);
    await access.grant('box-b', SECRET_B);
  });
  after(async () => {
    for (const c of open) c.end(true);
    await cp?.close();
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses anonymous clients, wrong passwords and a device under another client id', async () => {
    for (const options of [
      {},
      { username: 'box-a', password: 'not-the-secret', clientId: 'argus-box-a' },
      { username: 'box-a', password: SECRET_B, clientId: 'argus-box-a' },
      { username: 'box-a', password: SECRET_A, clientId: 'argus-box-b' },
    ]) {
      const outcome = await attempt(broker.url, options);
      assert.ok(outcome instanceof Error, JSON.stringify(options));
      assert.match(outcome.message, /Not authorized|Bad User Name or Password/);
    }
  });

  it("ingests a device's own messages; a device cannot publish as another", async () => {
    const a = await device(broker.url, 'box-a', SECRET_A);
    open.push(a);
    const own = eventMessage({ device: 'box-a' });
    await a.publishAsync(topics.events('box-a'), JSON.stringify(own), { qos: 1 });
    const forged = eventMessage({ device: 'box-b' });
    await assert.rejects(
      a.publishAsync(topics.events('box-b'), JSON.stringify(forged), { qos: 1 }),
      /Not authorized/,
    );
    for (const topic of [
      topics.available('box-b'),
      topics.commandResult('box-b'),
      topics.command('box-b', 'snapshot'),
      'elsewhere/x',
    ])
      await assert.rejects(a.publishAsync(topic, '{}', { qos: 1 }), /Not authorized/, topic);
    await eventually(
      async () => ((await storedEventIds(cp)).includes(own.id) ? true : undefined),
      5000,
      "box-a's event stored",
    );
    assert.ok(!(await storedEventIds(cp)).includes(forged.id), 'the forged event is not stored');
  });

  it("a device subscribes to its own commands only: not another's, not #, not $SYS", async () => {
    const a = await device(broker.url, 'box-a', SECRET_A);
    open.push(a);
    assert.deepEqual(await subscribeCodes(a, topics.commandFilter('box-a')), [1]);
    for (const filter of [
      topics.commandFilter('box-b'),
      topics.command('box-b', 'snapshot'),
      'argus/v1/+/cmd/+',
      'argus/v1/#',
      '#',
      '$SYS/#',
      '$share/x/argus/v1/#',
    ])
      assert.deepEqual(await subscribeCodes(a, filter), [0x87], filter);
  });

  it('the control plane sends a command to the device it is for, and nobody else reads it', async () => {
    const a = await device(broker.url, 'box-a', SECRET_A);
    const b = await device(broker.url, 'box-b', SECRET_B);
    open.push(a, b);
    const onlineB = JSON.stringify({ v: CONTRACT_VERSION, state: 'online', at: new Date().toISOString() });
    await b.publishAsync(topics.available('box-b'), onlineB, { qos: 1, retain: true });
    await eventually(
      async () => ((await apiFetch(`${cp.httpUrl}/api/v1/devices/box-b`)).ok ? true : undefined),
      5000,
      'box-b known to the control plane',
    );
    const receivedA: string[] = [];
    const receivedB: string[] = [];
    a.on('message', (topic) => receivedA.push(topic));
    b.on('message', (topic) => receivedB.push(topic));
    await subscribeCodes(a, topics.commandFilter('box-a'));
    await subscribeCodes(a, '#');
    await subscribeCodes(b, topics.commandFilter('box-b'));
    const res = await apiFetch(`${cp.httpUrl}/api/v1/devices/box-b/commands/snapshot`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ args: { camera: 'cam-1' } }),
    });
    assert.equal(res.status, 202, await res.text());
    await eventually(async () => (receivedB.length > 0 ? true : undefined), 5000, 'box-b got its command');
    assert.deepEqual(receivedB, [topics.command('box-b', 'snapshot')]);
    assert.deepEqual(receivedA, []);
  });

  it('a revoked device is disconnected and cannot connect again; a new grant replaces the secret', async () => {
    const c = await device(broker.url, 'box-c', SECRET_A).catch((err: Error) => err);
    assert.ok(c instanceof Error, 'not granted yet');
    await access.grant('box-c', 'first-secret-of-box-c');
    const connected = await device(broker.url, 'box-c', 'first-secret-of-box-c');
    const kicked = new Promise<number | undefined>((resolve) => {
      connected.once('disconnect', (packet) => resolve(packet.reasonCode));
      connected.once('close', () => resolve(undefined));
    });
    await access.revoke('box-c');
    assert.equal(await kicked, 152, 'DISCONNECT: administrative action');
    connected.end(true);
    const again = await attempt(broker.url, {
      username: 'box-c',
      password: 'first-secret-of-box-c',
      clientId: 'argus-box-c',
    });
    assert.ok(again instanceof Error);
    assert.match(again.message, /Not authorized/);
    await access.revoke('box-c');

    await access.grant('box-c', 'second-secret-of-box-c');
    assert.ok(
      (await attempt(broker.url, {
        username: 'box-c',
        password: 'first-secret-of-box-c',
        clientId: 'argus-box-c',
      })) instanceof Error,
      'the old secret is refused',
    );
    const renewed = await device(broker.url, 'box-c', 'second-secret-of-box-c');
    renewed.end(true);
  });

  it('an enrolled box gets its broker client; revoked from the CLI (no broker at hand), it is disconnected within seconds', async () => {
    const claim = await cp.enrollment.createClaim('box-d', 600, 'test');
    const issued = await cp.enrollment.exchange('box-d', claim.token);
    assert.ok('credential' in issued, 'the claim is exchanged');
    const connected = await device(broker.url, 'box-d', issued.credential);
    const kicked = new Promise<void>((resolve) => connected.once('close', () => resolve()));
    // what `argus devices revoke` does: the database only, without the broker
    const cli = new Enrollment(new DeviceCredentialStore(cp.repository.sql), undefined);
    const startedAt = Date.now();
    assert.equal(await cli.revoke('box-d'), true);
    await Promise.race([
      kicked,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('box-d still connected after 15 s')), 15_000),
      ),
    ]);
    connected.end(true);
    assert.ok(Date.now() - startedAt < 15_000);
    const again = await attempt(broker.url, {
      username: 'box-d',
      password: issued.credential,
      clientId: 'argus-box-d',
    });
    assert.ok(again instanceof Error, 'the revoked credential no longer connects');
  });

  it("a grant restores a device role changed behind the control plane's back", async () => {
    const admin = await connectAsync(broker.url, {
      protocolVersion: 5,
      username: ADMIN.adminUsername,
      password: ADMIN.adminPassword,
    });
    await admin.publishAsync(
      '$CONTROL/dynamic-security/v1',
      JSON.stringify({
        commands: [
          {
            command: 'addRoleACL',
            rolename: deviceRoleName('box-a'),
            acltype: 'subscribePattern',
            topic: '#',
            allow: true,
          },
        ],
      }),
      { qos: 1 },
    );
    await admin.endAsync();
    const tampered = await device(broker.url, 'box-a', SECRET_A);
    await eventually(
      async () => ((await subscribeCodes(tampered, '#'))[0] === 1 ? true : undefined),
      5000,
      'tampered',
    );
    tampered.end(true);
    await access.grant('box-a', SECRET_A);
    const a = await device(broker.url, 'box-a', SECRET_A);
    open.push(a);
    assert.deepEqual(await subscribeCodes(a, '#'), [0x87]);
    assert.deepEqual(await subscribeCodes(a, topics.commandFilter('box-a')), [1]);
  });

  it('a second control plane start finds the roles in place', async () => {
    const second = await startControlPlane(
      controlPlaneConfig({
        http: { port: 0 },
        mqtt: {
          external: {
            url: broker.url,
            clientId: 'argus-cp-test-2',
            username: 'argus-control-plane-2',
            password: 'control-plane-secret-for-tests-2',
            sharedGroup: 'ingest',
            dynamicSecurity: ADMIN,
          },
        },
        storage: { sqlite: { path: join(dir, 'second.db'), synchronous: 'normal' } },
      }),
    );
    await second.close();
  });

  it('gives the devices of the config their broker client at start, not back to one revoked since; a device given by digest only is refused, saying what to do', async () => {
    const config = (devices: { id: string; token?: string; tokenSha256?: string }[], db = 'provisioned.db') =>
      controlPlaneConfig({
        http: { port: 0 },
        mqtt: {
          external: {
            url: broker.url,
            clientId: 'argus-cp-test-3',
            username: 'argus-control-plane-3',
            password: 'control-plane-secret-for-tests-3',
            sharedGroup: 'ingest',
            dynamicSecurity: ADMIN,
          },
        },
        storage: { sqlite: { path: join(dir, db), synchronous: 'normal' } },
        devices,
      });
    const TOKEN_P = 'config-token-of-box-p-for-tests';
    const TOKEN_Q = 'config-token-of-box-q-for-tests';
    const provisioned = config([
      { id: 'box-p', token: TOKEN_P },
      { id: 'box-q', token: TOKEN_Q },
    ]);
    const first = await startControlPlane(provisioned);
    try {
      const p = await device(broker.url, 'box-p', TOKEN_P);
      assert.deepEqual(await subscribeCodes(p, topics.commandFilter('box-p')), [1]);
      assert.deepEqual(await subscribeCodes(p, topics.commandFilter('box-q')), [0x87]);
      p.end(true);
      const q = await device(broker.url, 'box-q', TOKEN_Q);
      const kicked = new Promise<void>((resolve) => q.once('close', () => resolve()));
      assert.equal(await first.enrollment.revoke('box-q'), true);
      await kicked;
      q.end(true);
    } finally {
      await first.close();
    }
    // started again with the same config: box-q stays revoked on the broker, box-p is granted again
    const again = await startControlPlane(provisioned);
    try {
      const refused = await attempt(broker.url, {
        username: 'box-q',
        password: TOKEN_Q,
        clientId: 'argus-box-q',
      });
      assert.ok(refused instanceof Error, 'the revoked config device does not connect');
      (await device(broker.url, 'box-p', TOKEN_P)).end(true);
    } finally {
      await again.close();
    }
    await assert.rejects(
      startControlPlane(
        config([{ id: 'box-h', tokenSha256: sha256Hex('config-token-of-box-h-for-tests') }], 'digest.db'),
      ),
      { message: /only the tokenSha256 of "box-h"/, hint: /give "token" instead of "tokenSha256"/ },
    );
  });

  it('refuses to start with a wrong admin password, saying what to check', async () => {
    await assert.rejects(
      startControlPlane(
        controlPlaneConfig({
          http: { port: 0 },
          mqtt: {
            external: {
              url: broker.url,
              username: 'argus-control-plane',
              password: 'control-plane-secret-for-tests',
              dynamicSecurity: { adminUsername: ADMIN.adminUsername, adminPassword: 'wrong-password' },
            },
          },
          storage: { sqlite: { path: join(dir, 'third.db'), synchronous: 'normal' } },
        }),
      ),
      /dynamic security plugin .* "dynsec-admin": .*Not authorized/,
    );
  });
});

describe('external Mosquitto over MQTTS', () => {
  let dir: string;
  let broker: MosquittoBroker;
  let ca: string;
  let rogueCa: string;
  const external = (tlsCa: string) => ({
    url: `mqtts://localhost:${broker.port}`,
    clientId: 'argus-cp-tls',
    username: 'argus-control-plane',
    password: 'control-plane-secret-for-tests',
    dynamicSecurity: ADMIN,
    tls: { ca: tlsCa },
  });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-dynsec-tls-'));
    ca = (await initCa(join(dir, 'ca'))).cert;
    const server = await issueCertificate(join(dir, 'ca'), { name: 'mosquitto', hosts: ['localhost'] });
    rogueCa = (await initCa(join(dir, 'rogue'))).cert;
    broker = await MosquittoBroker.create({ dir: join(dir, 'broker'), dynamicSecurity: ADMIN, tls: server });
  });
  after(async () => {
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('manages the broker and ingests over MQTTS, verifying it against mqtt.external.tls.ca', async () => {
    const cp = await startControlPlane(
      controlPlaneConfig({
        http: { port: 0 },
        mqtt: { external: external(ca) },
        storage: { sqlite: { path: join(dir, 'argus.db'), synchronous: 'normal' } },
      }),
    );
    useToken(cp.httpUrl, await createAdminToken(cp.repository.sql));
    try {
      await cp.accessControl?.grant('box-a', SECRET_A);
      const a = await attempt(broker.url.replace('127.0.0.1', 'localhost'), {
        username: 'box-a',
        password: SECRET_A,
        clientId: 'argus-box-a',
        ca: await readFile(ca),
      });
      assert.ok(!(a instanceof Error), String(a));
      const own = eventMessage({ device: 'box-a' });
      await a.publishAsync(topics.events('box-a'), JSON.stringify(own), { qos: 1 });
      a.end(true);
      await eventually(
        async () => ((await storedEventIds(cp)).includes(own.id) ? true : undefined),
        5000,
        "box-a's event stored",
      );
    } finally {
      await cp.close();
    }
  });

  it('refuses to start when the broker certificate is not signed by that CA, saying so', async () => {
    await assert.rejects(
      startControlPlane(
        controlPlaneConfig({
          http: { port: 0 },
          mqtt: { external: external(rogueCa) },
          storage: { sqlite: { path: join(dir, 'rogue.db'), synchronous: 'normal' } },
        }),
      ),
      /cannot reach the dynamic security plugin of mqtts:\/\/localhost:\d+ .*(self-signed|unable to verify|issuer)/i,
    );
  });
});
