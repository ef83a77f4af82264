import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createLogger } from '../../common/logger.ts';
import { httpPaths } from '../../contract/index.ts';
import { type ControlPlane, loadControlPlaneConfig, startControlPlane } from '../../control-plane/index.ts';
import { loadDeviceConfig } from '../../device/config.ts';
import { obtainCredential } from '../../device/credential.ts';
import { AgentProcess, writeAgentConfig } from '../helpers/device-setup.ts';
import { eventually } from '../helpers/eventually.ts';
import { jpeg } from './fixtures.ts';
import {
  apiFetch,
  createAdminToken,
  deviceClient,
  getJson,
  startTestControlPlane,
  useToken,
} from './setup.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const run = promisify(execFile);
/** an agent process loads its detector before it enrolls: slow on a loaded machine */
const AGENT_START_MS = 60_000;

/** `argus …` as an operator runs it; answers its stdout */
async function argus(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [join(ROOT, 'bin/argus.mjs'), ...args], {
    env: { ...process.env, ARGUS_LOG_LEVEL: 'warn' },
  });
  return stdout;
}

/** `argus control-plane enroll`: the claim token it prints */
async function enroll(config: string, device: string, ...more: string[]): Promise<string> {
  const out = await argus('control-plane', 'enroll', device, '--config', config, ...more);
  const token = /claimToken: (\S+) \}/.exec(out)?.[1];
  assert.ok(token, out);
  return token;
}

describe('enrollment, rotation and revocation of a box (agent process, CLI, embedded broker)', () => {
  let dir: string;
  let configFile: string;
  let cp: ControlPlane;
  let agent: AgentProcess | undefined;
  let credentialFile: string;
  const device = 'box-7';
  const upload = (credential: string, id: string) =>
    fetch(`${cp.httpUrl}${httpPaths.uploadSnapshot(device, id)}`, {
      method: 'PUT',
      body: jpeg(id),
      headers: { 'content-type': 'image/jpeg', authorization: `Bearer ${credential}` },
    });
  const connected = async () => (await agent!.health()).mqtt.connected;
  /** the credential the box stored (the first line of its credential file) */
  const storedCredential = async () => (await readFile(credentialFile, 'utf8')).split('\n')[0]!;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-enroll-'));
    configFile = join(dir, 'control-plane.yaml');
    await writeFile(
      configFile,
      'http: { port: 0 }\nmqtt:\n  embedded: { port: 0, credentialCheckS: 0.5 }\nstorage:\n  sqlite: { path: argus.db, synchronous: normal }\n',
    );
    cp = await startControlPlane(await loadControlPlaneConfig(configFile));
    useToken(cp.httpUrl, await createAdminToken(cp.repository.sql));
    credentialFile = join(dir, `${device}.credential`);
  });
  after(async () => {
    await agent?.terminate('SIGKILL').catch(() => undefined);
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a box started with a claim token gets its own credential (0600) and connects; the token is then worthless', async () => {
    const claim = await enroll(configFile, device, '--ttl', '10m');
    const file = await writeAgentConfig(dir, {
      device,
      brokerUrl: cp.mqttUrl,
      controlPlaneUrl: cp.httpUrl,
      claimToken: claim,
      cameras: ['cam-1'],
      eventsPerSecond: 2,
    });
    agent = await AgentProcess.start(file, AGENT_START_MS);
    await eventually(async () => ((await connected()) ? true : undefined), 15_000, 'the box connected');
    const credential = await storedCredential();
    assert.match(credential, /^[A-Za-z0-9_-]{43}$/);
    assert.match(
      await readFile(credentialFile, 'utf8'),
      /\nclaim [0-9a-f]{64}\n$/,
      'and the claim it came from',
    );
    assert.equal((await stat(credentialFile)).mode & 0o777, 0o600);
    assert.equal((await upload(credential, 'enrolled-1')).status, 201, 'uploads with its credential');
    const again = await fetch(`${cp.httpUrl}${httpPaths.enroll(device)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ claimToken: claim }),
    });
    assert.equal(again.status, 410);
    const body = (await again.json()) as { error: string; hint: string };
    assert.match(body.error, /already used/);
    assert.match(body.hint, /argus control-plane enroll box-7/);
    assert.equal(
      (await getJson<{ status: string }>(`${cp.httpUrl}/api/v1/devices/${device}`)).status,
      'online',
    );
  });

  it('a box with a used, a forged or no claim token stops with what to do', async () => {
    const other = join(dir, 'other');
    await mkdir(other);
    const reused = await enroll(configFile, 'box-8');
    const res = await fetch(`${cp.httpUrl}${httpPaths.enroll('box-8')}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ claimToken: reused }),
    });
    assert.equal(res.status, 201);
    const start = async (name: string, claimToken?: string) => {
      const file = await writeAgentConfig(other, {
        device: 'box-8',
        brokerUrl: cp.mqttUrl,
        controlPlaneUrl: cp.httpUrl,
        ...(claimToken ? { claimToken } : {}),
        cameras: ['cam-1'],
      });
      const yaml = await readFile(file, 'utf8');
      const configured = claimToken ? yaml : yaml.replace(/ {2}token: .*\n/, '');
      const named = join(other, `${name}.yaml`);
      await writeFile(named, configured);
      return AgentProcess.start(named, AGENT_START_MS).then(
        () => assert.fail('the agent started'),
        (err: Error) => err.message,
      );
    };
    const used = await start('used', reused);
    assert.match(used, /refused the claim token of device box-8 \(410\).*already used/);
    assert.match(used, /argus control-plane enroll box-8/);
    const none = await start('none');
    assert.match(none, /device box-8 has no credential/);
    assert.match(none, /argus control-plane enroll box-8/);
    const forged = await start('forged', 'a-claim-token-nobody-issued');
    assert.match(forged, /\(401\).*was not issued for device "box-8"/);
  });

  it('rotates without anyone on site: API or CLI, the box fetches, stores and uses its new credential', async () => {
    const before = await storedCredential();
    const res = await apiFetch(`${cp.httpUrl}/api/v1/devices/${device}/rotate`, { method: 'POST' });
    assert.equal(res.status, 202);
    const { command } = (await res.json()) as { command: string };
    const result = await eventually(
      async () =>
        (await getJson<{ result: { ok: boolean } | null }>(`${cp.httpUrl}${command}`)).result ?? undefined,
      15_000,
      'the rotate-credential result',
    );
    assert.equal(result.ok, true, JSON.stringify(result));
    const rotated = await storedCredential();
    assert.notEqual(rotated, before);
    assert.equal((await stat(credentialFile)).mode & 0o777, 0o600);
    await eventually(async () => ((await connected()) ? true : undefined), 10_000, 'reconnected');
    assert.equal(
      (await upload(before, 'rotated-old')).status,
      401,
      'the old credential is void once the new one is used',
    );
    assert.equal((await upload(rotated, 'rotated-new')).status, 201);

    await argus('devices', 'rotate', device, '--config', configFile);
    const third = await eventually(
      async () => {
        const now = await storedCredential();
        return now !== rotated ? now : undefined;
      },
      15_000,
      'the rotation the CLI asked for (sent by the control plane at its credential check)',
    );
    await eventually(async () => ((await connected()) ? true : undefined), 10_000, 'reconnected again');
    assert.equal((await upload(third, 'rotated-cli')).status, 201);
  });

  it('revoked from the CLI, the live box is disconnected within seconds and its uploads refused', async (t) => {
    const credential = await storedCredential();
    assert.equal(await connected(), true);
    const out = await argus('devices', 'revoke', device, '--config', configFile);
    const revokedAt = performance.now();
    assert.match(out, /revoked box-7/);
    assert.equal((await upload(credential, 'revoked-1')).status, 401, 'uploads refused at once');
    await eventually(async () => ((await connected()) ? undefined : true), 5000, 'the box disconnected');
    t.diagnostic(`disconnected ${Math.round(performance.now() - revokedAt)} ms after the CLI revoked it`);
    // it keeps trying: the broker refuses its credential every time
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await connected(), false, 'and it stays out');
    assert.match(agent!.stderr, /refuses the device credential/);
    assert.equal(
      (await getJson<{ status: string }>(`${cp.httpUrl}/api/v1/devices/${device}`)).status,
      'offline',
      'its Last Will marked it offline',
    );
  });

  it('a revoked box is enrolled again by a new claim token in its config and a restart', async () => {
    await agent!.terminate('SIGTERM');
    const claim = await enroll(configFile, device);
    const file = await writeAgentConfig(dir, {
      device,
      brokerUrl: cp.mqttUrl,
      controlPlaneUrl: cp.httpUrl,
      claimToken: claim,
      cameras: ['cam-1'],
      eventsPerSecond: 2,
    });
    const revoked = await storedCredential();
    agent = await AgentProcess.start(file, AGENT_START_MS);
    await eventually(async () => ((await connected()) ? true : undefined), 15_000, 'the box connected again');
    const credential = await storedCredential();
    assert.notEqual(credential, revoked);
    assert.equal((await upload(credential, 'reenrolled-1')).status, 201);
    assert.equal((await upload(revoked, 'reenrolled-2')).status, 401);
  });
});

describe("a box whose enrollment answer is lost (the box's exchange, a real control plane)", () => {
  let dir: string;
  let cp: ControlPlane;
  let proxy: Server;
  let dropped = 0;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-enroll-lost-'));
    cp = await startTestControlPlane({ dir });
    // in front of the control plane: the first enrollment is passed on and answered by it, but
    // the box's connection is cut before the answer reaches it
    proxy = createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const answer = await fetch(`${cp.httpUrl}${req.url}`, {
        method: req.method,
        headers: { 'content-type': String(req.headers['content-type'] ?? 'application/json') },
        body: Buffer.concat(chunks),
      });
      const body = Buffer.from(await answer.arrayBuffer());
      if (req.url?.endsWith('/enroll') && dropped++ === 0) return void req.socket.destroy();
      res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? '' }).end(body);
    });
    await new Promise<void>((done) => proxy.listen(0, '127.0.0.1', done));
  });
  after(async () => {
    proxy?.close();
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('asks again with its exchange key and gets a credential; the token stays worthless to others', async () => {
    const claim = await (
      await apiFetch(`${cp.httpUrl}/api/v1/devices/box-30/claims`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      })
    ).json();
    const file = await writeAgentConfig(dir, {
      device: 'box-30',
      brokerUrl: cp.mqttUrl,
      controlPlaneUrl: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
      claimToken: (claim as { claimToken: string }).claimToken,
      cameras: ['cam-1'],
    });
    const config = await loadDeviceConfig(file);
    const { credential, source } = await obtainCredential(
      config,
      createLogger('test'),
      AbortSignal.timeout(30_000),
    );
    assert.equal(dropped, 2, 'the first answer was lost, the second came');
    assert.equal(source, 'claim');
    const upload = (id: string) =>
      fetch(`${cp.httpUrl}${httpPaths.uploadSnapshot('box-30', id)}`, {
        method: 'PUT',
        body: jpeg(id),
        headers: { 'content-type': 'image/jpeg', authorization: `Bearer ${credential}` },
      });
    assert.equal((await upload('lost-answer-1')).status, 201, 'the credential is valid');
    await assert.rejects(stat(`${config.controlPlane.credentialFile}.exchange`), /ENOENT/, 'the key is gone');
    const thief = await fetch(`${cp.httpUrl}${httpPaths.enroll('box-30')}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        claimToken: (claim as { claimToken: string }).claimToken,
        exchangeKey: 'a'.repeat(43),
      }),
    });
    assert.equal(thief.status, 410);
    assert.equal((await upload('lost-answer-2')).status, 201, "the box's credential stays");
  });
});

describe('enrollment routes', () => {
  let dir: string;
  let cp: ControlPlane;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-enroll-routes-'));
    cp = await startTestControlPlane({ dir, enrollment: { exchangesPerMinute: 5 } });
  });
  after(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });
  const post = (path: string, body: unknown) =>
    apiFetch(`${cp.httpUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  it('makes a claim token (admin route) that the box exchanges once', async () => {
    const res = await post('/api/v1/devices/box-20/claims', { ttlS: 600 });
    assert.equal(res.status, 201);
    const claim = (await res.json()) as { claimToken: string; expiresAt: string; deviceConfig: string };
    assert.equal(claim.deviceConfig, `controlPlane: { claimToken: ${claim.claimToken} }`);
    assert.ok(Date.parse(claim.expiresAt) > Date.now() + 590_000);
    assert.equal((await post('/api/v1/devices/box-20/claims', { ttlS: 10 })).status, 400);
    const exchanged = await post(httpPaths.enroll('box-20'), { claimToken: claim.claimToken });
    assert.equal(exchanged.status, 201);
    const { credential } = (await exchanged.json()) as { credential: string };
    const box = await deviceClient(cp.mqttUrl, 'box-20', { credential });
    // revoked through the API, the broker closes the connection at once (the periodic check of
    // the test control plane runs only every 5 s)
    const closed = new Promise<void>((resolve) => box.once('close', () => resolve()));
    const revoked = await apiFetch(`${cp.httpUrl}/api/v1/devices/box-20/revoke`, { method: 'POST' });
    assert.equal(revoked.status, 200);
    await closed;
    box.end(true);
    await assert.rejects(deviceClient(cp.mqttUrl, 'box-20', { credential }), /Bad User Name or Password/);
    assert.equal(
      (await apiFetch(`${cp.httpUrl}/api/v1/devices/box-20/revoke`, { method: 'POST' })).status,
      404,
    );
  });

  it('bounds the public exchange route in body size and shape, and rate-limits it per address', async () => {
    assert.equal((await post(httpPaths.enroll('box-21'), { claimToken: 'x'.repeat(2000) })).status, 413);
    assert.equal((await post(httpPaths.enroll('box-21'), { claimToken: 'short' })).status, 400);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++)
      statuses.push(
        (await post(httpPaths.enroll('box-21'), { claimToken: `guessed-claim-token-${i}` })).status,
      );
    // 5 a minute: the exchange of the test before and the two refused bodies count too
    assert.deepEqual(statuses, [401, 401, 429, 429]);
  });
});
