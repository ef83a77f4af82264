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
import { hardwareClass } from '../../inference/hardware-class.ts';
import { generateSigningKey, loadSigningKey, type SigningKey } from '../../models/bundle/keys.ts';
import { buildSceneBundle } from '../../ota/scene-bundle.ts';
import { ArtifactServer } from '../helpers/artifact-server.ts';
import { unevaluatedBundle } from '../helpers/candidates.ts';
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
  const statuses: UpdateStatus[] = [];
  const telemetry = new Map<string, Telemetry>();
  /** the box of each scenario, started together in before() */
  let modelBox: Box;
  let sceneBox: Box;

  /** a box's agent process, SIGKILLed and started again on the same config */
  class Box {
    private constructor(
      readonly device: string,
      private readonly file: string,
      public agent: AgentProcess,
    ) {}

    static async start(device: string, maxBytesPerS: number): Promise<Box> {
      server.allow(`token-of-${device}-for-tests`);
      const file = await writeAgentConfig(dir, {
        device,
        brokerUrl: broker.url,
        controlPlaneUrl: server.url,
      });
      await appendFile(
        file,
        `ota:\n  keyring: ${join(dir, 'keys', 'trusted')}\n  maxBytesPerS: ${maxBytesPerS}\n  sampleS: 0.2\n  progressS: 0.3\n  retryMaxS: 1\n`,
      );
      return new Box(device, file, await AgentProcess.start(file, 60_000));
    }

    /** SIGKILLs the agent and starts it again */
    async kill(): Promise<void> {
      await this.agent.terminate('SIGKILL');
      this.agent = await AgentProcess.start(this.file, 60_000);
    }

    async stop(): Promise<void> {
      if (this.agent.child.exitCode === null && this.agent.child.signalCode === null)
        await this.agent.terminate('SIGTERM');
    }

    /** serves the bundle at `bundle` and sends its assignment once the agent is connected (its telemetry arrives) and subscribed */
    async assign(
      bundle: string,
      artifact: Omit<UpdateAssignment['artifact'], 'id' | 'bytes'>,
      health: UpdateAssignment['health'],
    ): Promise<UpdateAssignment> {
      const data = await readFile(bundle);
      const id = sha256Hex(data);
      server.put(id, data);
      const a: UpdateAssignment = {
        assignment: `${this.device}-${id.slice(0, 8)}`,
        rollout: `rollout-of-${this.device}`,
        artifact: { ...artifact, id, bytes: data.length },
        health,
        deadline: new Date(Date.now() + 600_000).toISOString(),
      };
      telemetry.delete(this.device);
      await eventually(async () => telemetry.get(this.device), 60_000, `telemetry of ${this.device}`);
      await watcher.publishAsync(
        topics.command(this.device, 'update'),
        JSON.stringify({
          v: CONTRACT_VERSION,
          id: timeOrderedId(),
          name: 'update',
          args: a,
          issuedAt: new Date().toISOString(),
        }),
        { qos: 1 },
      );
      return a;
    }
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-updater-crash-'));
    broker = await MosquittoBroker.create({ dir: join(dir, 'broker') });
    await generateSigningKey('factory', join(dir, 'keys'));
    key = await loadSigningKey('factory', join(dir, 'keys'));
    watcher = await connectAsync(broker.url, { protocolVersion: 5 });
    watcher.on('message', (topic, payload) => {
      const body = JSON.parse(payload.toString());
      if (topic.endsWith('/update')) statuses.push(otaValidators.update.parse(body, 'update status'));
      else telemetry.set((body as Telemetry).device, body as Telemetry);
    });
    await watcher.subscribeAsync([topics.update('+'), topics.telemetry('+')], { qos: 1 });
    await mkdir(join(dir, 'scenes'), { recursive: true });
    for (const cam of ['cam-1', 'cam-2']) await copyFile(CAMPUS, join(dir, 'scenes', `${cam}.yaml`));
    server = new ArtifactServer('token-of-nobody-for-tests');
    await server.start();
    // both boxes at once: the scene box's figures before its install (at least 30 s of them, the
    // updater's BEFORE_MIN_S) gather while the model scenario runs
    [modelBox, sceneBox] = await Promise.all([
      Box.start('box-kill-model', 3_000_000),
      Box.start('box-kill-health', 0),
    ]);
  });
  after(async () => {
    await Promise.all([modelBox?.stop(), sceneBox?.stop()]);
    await watcher?.endAsync();
    await server?.stop();
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
  });

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
    const box = modelBox;
    const out = join(dir, 'model.bundle');
    await unevaluatedBundle({ modelDir: NANODET, out, version: 7, hardwareClass: hardwareClass(), key });
    const a = await box.assign(
      out,
      { kind: 'model', name: 'nanodet', version: 7 },
      { windowS: 2, minDetectFpsRatio: 0.5, maxDetectLatencyRatio: 3, maxDetectorRestarts: 0 },
    );
    await reached(a, (s) => s.state === 'downloading' && (s.progress?.bytes ?? 0) > 0, 'download under way');
    const before = server.requests.length;
    await box.kill();
    await reached(a, (s) => s.state === 'verifying', 'verifying');
    assert.ok(
      server.requests.slice(before).some((r) => /^bytes=[1-9]\d*-$/.test(r.range ?? '')),
      'the restarted agent resumed the download with Range',
    );
    await box.kill();
    await reached(a, (s) => s.state === 'installing', 'installing');
    await box.kill();
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
    await box.kill();
    const t = await eventually(
      async () => {
        const cam = telemetry.get(box.device)?.cameras[0];
        return cam?.model?.version === 7 ? cam : undefined;
      },
      30_000,
      'telemetry naming model v7',
    );
    assert.equal(t.model?.name, 'nanodet');
    const pointer = JSON.parse(await readFile(join(dir, `${box.device}.ota`, 'committed.json'), 'utf8'));
    assert.equal(pointer.model.version, 7);
  });

  it('rolls back a scene update killed inside its health window and says so', async () => {
    const box = sceneBox;
    const out = join(dir, 'scene.bundle');
    await buildSceneBundle({
      sceneFile: CAMPUS,
      out,
      version: 4,
      name: 'campus',
      expiresInDays: 30,
      signWith: key,
    });
    const a = await box.assign(
      out,
      { kind: 'scene', name: 'campus', version: 4 },
      { windowS: 120, minDetectFpsRatio: 0.5, maxDetectLatencyRatio: 3, maxDetectorRestarts: 0 },
    );
    await reached(a, (s) => s.state === 'health', 'the health window');
    await box.kill();
    const end = await reached(a, (s) => s.state === 'rolled-back' || s.state === 'committed', 'an end');
    assert.equal(end.state, 'rolled-back');
    assert.match(
      end.reason!,
      /restarted inside the health window; the box runs cam-1: the config scene, cam-2: the config scene again/,
    );
    await assert.rejects(stat(join(dir, `${box.device}.ota`, 'committed.json')), 'nothing was committed');
    const t = await eventually(
      async () => telemetry.get(box.device)?.cameras.find((c) => c.id === 'cam-1' && c.scene),
      30_000,
      'telemetry with the scene of cam-1',
    );
    assert.equal(t.scene?.version, 0, 'the config scene runs');
  });
});
