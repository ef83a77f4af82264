import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { type CaFiles, initCa, issueCertificate } from '../../common/certificate-authority.ts';
import { topics } from '../../contract/index.ts';
import { type ControlPlane, controlPlaneConfig, startControlPlane } from '../../control-plane/index.ts';
import { explainTlsError } from '../../device/tls.ts';
import { AgentProcess, writeAgentConfig } from '../helpers/device-setup.ts';
import { eventually } from '../helpers/eventually.ts';
import { eventMessage } from './fixtures.ts';
import { createAdminToken, tokenFor, useToken } from './setup.ts';

const TOKEN_1 = 'token-of-box-1-for-tls-tests';
const TOKEN_2 = 'token-of-box-2-for-tls-tests';
const DAY = 24 * 3600 * 1000;
/** a box starting on a loaded 2-core machine (tsx compiles the agent first) */
const AGENT_START_MS = 60_000;

/** GET over HTTPS, verifying the server against `ca` (not at all without) */
function httpsGet(url: string, ca: Buffer | undefined): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const headers = { authorization: `Bearer ${tokenFor(url)}` };
    get(url, { headers, ...(ca ? { ca } : { rejectUnauthorized: false }) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

/** connects once over MQTTS; resolves the client, or the error that ended the attempt */
function attempt(url: string, options: IClientOptions): Promise<MqttClient | Error> {
  const client = connect(url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, ...options });
  return new Promise((resolve) => {
    client.once('connect', () => resolve(client));
    client.once('error', (err) => {
      client.end(true);
      resolve(err);
    });
    // a TLS alert can arrive as an error just after the close
    client.once('close', () => setTimeout(() => resolve(new Error('connection closed')), 100));
  });
}

interface Pki {
  ca: CaFiles;
  caPem: Buffer;
  server: CaFiles;
  expired: CaFiles;
  otherHost: CaFiles;
  box1: CaFiles;
  box2: CaFiles;
  rogueCa: CaFiles;
  rogueBox1: CaFiles;
}

async function makePki(dir: string): Promise<Pki> {
  const caDir = join(dir, 'ca');
  const ca = await initCa(caDir);
  const server = await issueCertificate(caDir, {
    name: 'control-plane',
    hosts: ['localhost'],
    ips: ['127.0.0.1'],
  });
  const now = Date.now();
  const expired = await issueCertificate(caDir, {
    name: 'control-plane-expired',
    hosts: ['localhost'],
    ips: ['127.0.0.1'],
    period: { notBefore: new Date(now - 30 * DAY), notAfter: new Date(now - DAY) },
  });
  const otherHost = await issueCertificate(caDir, { name: 'elsewhere', hosts: ['elsewhere.example'] });
  const box1 = await issueCertificate(caDir, { name: 'box-1', client: true });
  const box2 = await issueCertificate(caDir, { name: 'box-2', client: true });
  const rogueDir = join(dir, 'rogue');
  const rogueCa = await initCa(rogueDir, { name: 'Someone else' });
  const rogueBox1 = await issueCertificate(rogueDir, { name: 'box-1', client: true });
  return { ca, caPem: await readFile(ca.cert), server, expired, otherHost, box1, box2, rogueCa, rogueBox1 };
}

async function tlsControlPlane(
  dir: string,
  name: string,
  cert: CaFiles,
  o: { clientCa?: string; host?: string } = {},
): Promise<ControlPlane> {
  const cp = await startControlPlane(
    controlPlaneConfig({
      http: { port: 0, tls: { cert: cert.cert, key: cert.key } },
      mqtt: {
        embedded: {
          port: 0,
          deviceCredentials: true,
          tls: { cert: cert.cert, key: cert.key, ...(o.clientCa ? { clientCa: o.clientCa } : {}) },
        },
      },
      storage: { sqlite: { path: join(dir, `${name}.db`), synchronous: 'normal' } },
      devices: [
        { id: 'box-1', token: TOKEN_1 },
        { id: 'box-2', token: TOKEN_2 },
      ],
    }),
  );
  useToken(cp.httpUrl, await createAdminToken(cp.repository.sql));
  return cp;
}

const port = (url: string) => new URL(url).port;

describe('TLS: argus ca, HTTPS and MQTTS', () => {
  let dir: string;
  let pki: Pki;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-tls-'));
    pki = await makePki(dir);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps every private key 0600 and issues what was asked', async () => {
    for (const key of [pki.ca.key, pki.server.key, pki.box1.key, pki.rogueCa.key])
      assert.equal((await stat(key)).mode & 0o777, 0o600, key);
    await assert.rejects(
      issueCertificate(join(dir, 'ca'), { name: 'no-names' }),
      /needs the names it is reached by/,
    );
    await assert.rejects(
      issueCertificate(join(dir, 'ca'), { name: 'box-1', client: true }),
      /already exists/,
    );
    await assert.rejects(initCa(join(dir, 'ca')), /already holds a CA/);
  });

  describe('a box verifying the control plane against the fleet CA', () => {
    let cp: ControlPlane;
    let agent: AgentProcess | undefined;
    before(async () => {
      cp = await tlsControlPlane(dir, 'good', pki.server);
    });
    after(async () => {
      await agent?.terminate('SIGTERM');
      await cp?.close();
    });

    it('sends its events over MQTTS and uploads its snapshots over HTTPS', async () => {
      assert.match(cp.mqttUrl, /^mqtts:/);
      assert.match(cp.httpUrl, /^https:/);
      const file = await writeAgentConfig(dir, {
        device: 'box-1',
        brokerUrl: `mqtts://localhost:${port(cp.mqttUrl)}`,
        controlPlaneUrl: `https://localhost:${port(cp.httpUrl)}`,
        token: TOKEN_1,
        cameras: ['cam-1'],
        tls: { ca: pki.ca.cert },
      });
      agent = await AgentProcess.start(file, AGENT_START_MS);
      const started = agent;
      const events = await eventually(
        async () => {
          const res = await httpsGet(`${cp.httpUrl}/api/v1/events?limit=200`, pki.caPem);
          const page = JSON.parse(res.body.toString()) as {
            events: { event: { snapshot?: { id: string } } }[];
          };
          return page.events.filter((e) => e.event.snapshot).length >= 3 ? page.events : undefined;
        },
        30_000,
        'events with snapshots stored',
      ).catch((err: Error) => {
        process.stderr.write(started.stderr);
        throw err;
      });
      const snapshots = events.flatMap((e) => (e.event.snapshot ? [e.event.snapshot.id] : []));
      await eventually(
        async () => {
          for (const id of snapshots.slice(0, 3))
            if (
              (await httpsGet(`${cp.httpUrl}/api/v1/devices/box-1/snapshots/${id}`, pki.caPem)).status !== 200
            )
              return undefined;
          return true;
        },
        30_000,
        'snapshots uploaded over HTTPS',
      );
      assert.doesNotMatch(agent.stderr, /TLS refused/);
    });

    it('a plain MQTT client cannot talk to the MQTTS listener', async () => {
      const plain = await attempt(`mqtt://127.0.0.1:${port(cp.mqttUrl)}`, {
        username: 'box-1',
        password: TOKEN_1,
      });
      assert.ok(plain instanceof Error);
    });
  });

  /**
   * one refusal: a control plane with `cert`, a box trusting `ca` and connecting to `host`; the
   * box's log must say, for the broker and for the control plane, what is wrong
   */
  async function refusedWith(
    name: string,
    cert: CaFiles,
    ca: string,
    host: string,
    sentence: RegExp,
  ): Promise<void> {
    const cp = await tlsControlPlane(dir, name, cert);
    let agent: AgentProcess | undefined;
    try {
      const file = await writeAgentConfig(dir, {
        device: 'box-1',
        brokerUrl: `mqtts://${host}:${port(cp.mqttUrl)}`,
        controlPlaneUrl: `https://${host}:${port(cp.httpUrl)}`,
        token: TOKEN_1,
        cameras: ['cam-1'],
        spool: { sync: 'normal' },
        tls: { ca },
      });
      await rm(join(dir, 'box-1.spool.db'), { force: true });
      agent = await AgentProcess.start(file, AGENT_START_MS);
      const started = agent;
      const lines = await eventually(
        async () => {
          const refused = started.stderr
            .split('\n')
            .filter((l) => l.includes('TLS refused'))
            .map((l) => (JSON.parse(l) as { msg: string }).msg);
          const broker = refused.find((l) => l.includes("the MQTT broker's certificate"));
          const controlPlane = refused.find((l) => l.includes("the control plane's certificate"));
          return broker && controlPlane ? { broker, controlPlane } : undefined;
        },
        40_000,
        `the box says why TLS failed (${name})`,
      );
      assert.match(lines.broker, sentence);
      assert.match(lines.controlPlane, sentence);
      const page = JSON.parse((await httpsGet(`${cp.httpUrl}/api/v1/events`, undefined)).body.toString()) as {
        events: unknown[];
      };
      assert.equal(page.events.length, 0, 'nothing got through');
    } catch (err) {
      if (agent) process.stderr.write(agent.stderr);
      throw err;
    } finally {
      await agent?.terminate('SIGTERM');
      await cp.close();
    }
  }

  it('refuses a server whose certificate another CA signed, naming tls.ca', async () => {
    await refusedWith(
      'wrong-ca',
      pki.server,
      pki.rogueCa.cert,
      'localhost',
      /not signed by the CA in tls\.ca \(.*rogue\/ca\.crt\)/,
    );
  });

  it('refuses an expired server certificate, saying it expired', async () => {
    await refusedWith('expired', pki.expired, pki.ca.cert, 'localhost', /certificate has expired/);
  });

  it('refuses a server certificate for another host, naming the host and the URL key', async () => {
    await refusedWith(
      'other-host',
      pki.otherHost,
      pki.ca.cert,
      'localhost',
      /is not for host "localhost".*(mqtt\.url|controlPlane\.url)/,
    );
  });

  describe('mutual TLS on the embedded broker', () => {
    let cp: ControlPlane;
    let url: string;
    const open: MqttClient[] = [];
    before(async () => {
      cp = await tlsControlPlane(dir, 'mtls', pki.server, { clientCa: pki.ca.cert });
      url = `mqtts://localhost:${port(cp.mqttUrl)}`;
    });
    after(async () => {
      for (const c of open) c.end(true);
      await cp?.close();
    });
    const client = async (cert: CaFiles | undefined, username: string, password: string) => ({
      ca: pki.caPem,
      ...(cert ? { cert: await readFile(cert.cert), key: await readFile(cert.key) } : {}),
      username,
      password,
      clientId: `argus-${username}`,
    });
    const peer = { name: 'MQTT broker', urlKey: 'mqtt.url', url: 'mqtts://localhost' };

    it('takes a device with its own certificate and token, and stores its events', async () => {
      const box1 = await attempt(url, await client(pki.box1, 'box-1', TOKEN_1));
      assert.ok(!(box1 instanceof Error), String(box1));
      open.push(box1);
      const event = eventMessage({ device: 'box-1' });
      await box1.publishAsync(topics.events('box-1'), JSON.stringify(event), { qos: 1 });
      const stored = await httpsGet(`${cp.httpUrl}/api/v1/events`, pki.caPem);
      assert.match(stored.body.toString(), new RegExp(event.id));
    });

    it("refuses a device showing another device's certificate, even with its own token", async () => {
      const outcome = await attempt(url, await client(pki.box2, 'box-1', TOKEN_1));
      assert.ok(outcome instanceof Error);
      assert.match(outcome.message, /Not authorized/);
    });

    it('refuses a client without a certificate, and the box says one is required', async () => {
      const outcome = await attempt(url, await client(undefined, 'box-1', TOKEN_1));
      assert.ok(outcome instanceof Error);
      assert.match(
        explainTlsError(outcome, undefined, peer) ?? outcome.message,
        /requires a client certificate: set tls\.cert and tls\.key/,
      );
    });

    it('refuses a certificate another CA signed', async () => {
      // Node checks a client certificate after the handshake and drops the connection without a
      // TLS alert: the client sees the connection closed, never a CONNACK
      const outcome = await attempt(url, await client(pki.rogueBox1, 'box-1', TOKEN_1));
      assert.ok(outcome instanceof Error);
      assert.doesNotMatch(outcome.message, /Not authorized/);
    });
  });
});
