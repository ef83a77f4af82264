import assert from 'node:assert/strict';
import { appendFile, copyFile, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectAsync, type MqttClient } from 'mqtt';
import { sha256Hex } from '../../common/hash.ts';
import { timeOrderedId } from '../../common/ids.ts';
import { CONTRACT_VERSION, type Telemetry, topics } from '../../contract/index.ts';
import { otaValidators, type UpdateAssignment, type UpdateStatus } from '../../contract/ota.ts';
import { detectHardwareClass } from '../../device/identity.ts';
import { buildBundle } from '../../models/bundle/build.ts';
import { generateSigningKey, loadSigningKey, type SigningKey } from '../../models/bundle/keys.ts';
import { DEFAULT_GATE } from '../../models/index.ts';
import { buildSceneBundle } from '../../ota/scene-bundle.ts';
import { ArtifactServer } from '../helpers/artifact-server.ts';
import { AgentProcess, writeAgentConfig } from '../helpers/device-setup.ts';
import { eventually } from '../helpers/eventually.ts';
import { MosquittoBroker } from '../helpers/mosquitto-broker.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const CAMPUS = join(ROOT, 'scenes', 'vtest-campus.yaml');
const NANODET = join(homedir(), '.cache', 'argus', 'models', 'nanodet');

/**
 * SIGKILL of a real agent process (recorded-events host, real MQTT broker, real HTTP downloads)
 * in the middle of an update: during the download, the verification, the install and inside the
 * health window. After each restart the box runs a verified version (the committed one, or the
 * one before) and reports the truth on its update topic.
 */
describe('updater under SIGKILL', () => {
  let dir: string;
  let broker: MosquittoBroker;
  let server: ArtifactServer;
  let watcher: MqttClient;
  let key: SigningKey;
  let hardwareClass: string;
  const statuses: UpdateStatus[] = [];
  const telemetry = new Map<string, Telemetry>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-updater-crash-'));
    broker = await MosquittoBroker.create({ dir: join(dir, 'broker') });
    await generateSigningKey('factory', join(dir, 'keys'));
    key = await loadSigningKey('factory', join(dir, 'keys'));
    hardwareClass = await detectHardwareClass();
    watcher = await connectAsync(broker.url, { protocolVersion: 5 });
    watcher.on('message', (topic, payload) => {
      const body = JSON.parse(payload.toString());
      if (topic.endsWith('/update')) statuses.push(otaValidators.update.parse(body, 'update status'));
      else telemetry.set((body as Telemetry).device, body as Telemetry);
    });
    await watcher.subscribeAsync([topics.update('+'), topics.telemetry('+')], { qos: 1 });
    await mkdir(join(dir, 'scenes'), { recursive: true });
    for (const cam of ['cam-1', 'cam-2']) await copyFile(CAMPUS, join(dir, 'scenes', `${cam}.yaml`));
  });
  after(async () => {
    await watcher?.endAsync();
    await server?.stop();
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function config(device: string, maxBytesPerS: number): Promise<string> {
    server ??= new ArtifactServer(`token-of-${device}-for-tests`);
    server.allow(`token-of-${device}-for-tests`);
    if (!server.url) await server.start();
    const file = await writeAgentConfig(dir, { device, brokerUrl: broker.url, controlPlaneUrl: server.url });
    await appendFile(
      file,
      `ota:\n  keyring: ${join(dir, 'keys', 'trusted')}\n  maxBytesPerS: ${maxBytesPerS}\n  sampleS: 0.2\n  progressS: 0.3\n  retryMaxS: 1\n`,
    );
    return file;
  }

  /** sends the update once the agent is connected (its telemetry arrives) and subscribed */
  async function send(device: string, assignment: UpdateAssignment): Promise<void> {
    telemetry.delete(device);
    await eventually(async () => telemetry.get(device), 60_000, `telemetry of ${device}`);
    await watcher.publishAsync(
      topics.command(device, 'update'),
      JSON.stringify({
        v: CONTRACT_VERSION,
        id: timeOrderedId(),
        name: 'update',
        args: assignment,
        issuedAt: new Date().toISOString(),
      }),
      { qos: 1 },
    );
  }

  const of = (a: UpdateAssignment) => statuses.filter((s) => s.assignment === a.assignment);

  async function reached(
    a: UpdateAssignment,
    pred: (s: UpdateStatus) => boolean,
    what: string,
  ): Promise<UpdateStatus> {
    return eventually(
      async () => of(a).find(pred),
      120_000,
      `${a.assignment}: ${what} (seen: ${of(a)
        .map((s) => s.state)
        .join(' ')})`,
    );
  }

  /** the states in the order they were reported, each status once (a re-sent status has the same id) */
  function reported(a: UpdateAssignment): UpdateStatus[] {
    const seen = new Set<string>();
    return of(a).filter((s) => !seen.has(s.id) && seen.add(s.id));
  }

  it('resumes a model update killed mid-download, mid-verify and mid-install, and commits it after the health window', async () => {
    const device = 'box-kill-model';
    const file = await config(device, 3_000_000);
    const out = join(dir, 'model.bundle');
    await buildBundle({
      modelDir: NANODET,
      out,
      version: 7,
      name: 'nanodet',
      evaluations: [],
      gate: DEFAULT_GATE,
      targets: [{ executionProvider: 'cpu', hardwareClass }],
      expiresInDays: 30,
      signWith: key,
    });
    const data = await readFile(out);
    const id = sha256Hex(data);
    server.put(id, data);
    const a: UpdateAssignment = {
      assignment: `kill-model-${id.slice(0, 8)}`,
      rollout: 'rollout-kill-1',
      artifact: { id, kind: 'model', name: 'nanodet', version: 7, bytes: data.length },
      health: { windowS: 2, minDetectFpsRatio: 0.5, maxDetectLatencyRatio: 3, maxDetectorRestarts: 0 },
      deadline: new Date(Date.now() + 600_000).toISOString(),
    };
    let agent = await AgentProcess.start(file, 60_000);
    await send(device, a);
    await reached(a, (s) => s.state === 'downloading' && (s.progress?.bytes ?? 0) > 0, 'download under way');
    await agent.terminate('SIGKILL');
    const before = server.requests.length;
    agent = await AgentProcess.start(file, 60_000);
    await reached(a, (s) => s.state === 'verifying', 'verifying');
    assert.ok(
      server.requests.slice(before).some((r) => /^bytes=[1-9]\d*-$/.test(r.range ?? '')),
      'the restarted agent resumed the download with Range',
    );
    await agent.terminate('SIGKILL');
    agent = await AgentProcess.start(file, 60_000);
    await reached(a, (s) => s.state === 'installing', 'installing');
    await agent.terminate('SIGKILL');
    agent = await AgentProcess.start(file, 60_000);
    const end = await reached(
      a,
      (s) => s.state === 'committed' || s.state === 'failed' || s.state === 'rolled-back',
      'an end',
    );
    assert.equal(end.state, 'committed', end.reason);
    const order = reported(a);
    assert.deepEqual(
      order.map((s) => s.seq),
      [...order.map((s) => s.seq)].sort((x, y) => x - y),
      'seq grows across the restarts',
    );
    assert.deepEqual(
      [...new Set(order.map((s) => s.state))],
      ['queued', 'downloading', 'verifying', 'installing', 'health', 'committed'],
    );
    // the box runs it, and after one more restart still does
    await agent.terminate('SIGKILL');
    agent = await AgentProcess.start(file, 60_000);
    const t = await eventually(
      async () => {
        const cam = telemetry.get(device)?.cameras[0];
        return cam?.model?.version === 7 ? cam : undefined;
      },
      30_000,
      'telemetry naming model v7',
    );
    assert.equal(t.model?.name, 'nanodet');
    const pointer = JSON.parse(await readFile(join(dir, `${device}.ota`, 'committed.json'), 'utf8'));
    assert.equal(pointer.model.version, 7);
    await agent.terminate('SIGTERM');
  });

  it('rolls back a scene update killed inside its health window and says so', async () => {
    const device = 'box-kill-health';
    const file = await config(device, 0);
    const out = join(dir, 'scene.bundle');
    await buildSceneBundle({
      sceneFile: CAMPUS,
      out,
      version: 4,
      name: 'campus',
      expiresInDays: 30,
      signWith: key,
    });
    const data = await readFile(out);
    const id = sha256Hex(data);
    server.put(id, data);
    const a: UpdateAssignment = {
      assignment: `kill-health-${id.slice(0, 8)}`,
      rollout: 'rollout-kill-2',
      artifact: { id, kind: 'scene', name: 'campus', version: 4, bytes: data.length },
      health: { windowS: 120, minDetectFpsRatio: 0.5, maxDetectLatencyRatio: 3, maxDetectorRestarts: 0 },
      deadline: new Date(Date.now() + 600_000).toISOString(),
    };
    let agent = await AgentProcess.start(file, 60_000);
    await send(device, a);
    await reached(a, (s) => s.state === 'health', 'the health window');
    await agent.terminate('SIGKILL');
    agent = await AgentProcess.start(file, 60_000);
    const end = await reached(a, (s) => s.state === 'rolled-back' || s.state === 'committed', 'an end');
    assert.equal(end.state, 'rolled-back');
    assert.match(
      end.reason!,
      /restarted inside the health window; the box runs cam-1: the config scene, cam-2: the config scene again/,
    );
    await assert.rejects(stat(join(dir, `${device}.ota`, 'committed.json')), 'nothing was committed');
    const t = await eventually(
      async () => telemetry.get(device)?.cameras.find((c) => c.id === 'cam-1' && c.scene),
      30_000,
      'telemetry with the scene of cam-1',
    );
    assert.equal(t.scene?.version, 0, 'the config scene runs');
    await agent.terminate('SIGTERM');
  });
});
