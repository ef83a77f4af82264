import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { sha256Hex } from '../../common/hash.ts';
import { createLogger } from '../../common/logger.ts';
import type { ShadowFigures, UpdateAssignment, UpdateStatus } from '../../contract/ota.ts';
import { otaValidators } from '../../contract/ota.ts';
import { loadModel } from '../../inference/model-dir.ts';
import { DEFAULT_BUNDLE_LIMITS, packEntries, readBundleFile } from '../../models/bundle/container.ts';
import { generateSigningKey, loadSigningKey, type SigningKey } from '../../models/bundle/keys.ts';
import { buildSceneBundle, SCENE_FILE } from '../../ota/scene-bundle.ts';
import {
  DownloadFailed,
  downloadArtifact,
  type HealthSample,
  TokenBucket,
  TrustedVersions,
  type UpdateHost,
  Updater,
} from '../../ota/updater/index.ts';
import { loadScene } from '../../pipelines/scene/load.ts';
import { ArtifactServer } from '../helpers/artifact-server.ts';
import { unevaluatedBundle } from '../helpers/candidates.ts';
import { eventually } from '../helpers/eventually.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const CAMPUS = join(ROOT, 'scenes', 'vtest-campus.yaml');
const NANODET = join(homedir(), '.cache', 'argus', 'models', 'nanodet');
const CREDENTIAL = 'credential-of-box-1-for-updater-tests';

/**
 * A camera host at the updater's boundary: models are loaded and checked (loadModel), scenes parsed
 * (loadScene) as a real host does; its health figures are the test's, so the health window and
 * the shadow judgement can be driven to each outcome.
 */
class FiguresHost implements UpdateHost {
  figures: HealthSample = { detectFps: 10, detectLatencyMs: 20, detectorRestarts: 0, events: 0 };
  /** figures from the first swap on */
  afterSwap: Partial<HealthSample> | undefined;
  shadow: ShadowFigures = {
    frames: 20,
    agreement: 0.95,
    candidateLatencyMs: 20,
    currentLatencyMs: 20,
    latencyRatio: 1,
  };
  swaps: string[] = [];
  scenes: { cameras: readonly string[]; file: string; version: number }[] = [];
  private timer = setInterval(() => {
    this.figures.events += 1;
  }, 50);

  /** the shadow run never ends by itself, and does not look at its signal (sessions that never get the CPU) */
  stallShadow = false;

  async shadowModel(dir: string): Promise<ShadowFigures> {
    await loadModel(dir);
    if (this.stallShadow) await new Promise(() => undefined);
    return this.shadow;
  }
  async swapModel(dir: string): Promise<void> {
    await loadModel(dir);
    this.swaps.push(dir);
    if (this.afterSwap && this.swaps.length === 1) Object.assign(this.figures, this.afterSwap);
  }
  async applyScene(cameras: readonly string[], file: string, version: number): Promise<void> {
    await loadScene(file);
    this.scenes.push({ cameras, file, version });
    if (this.afterSwap && this.scenes.length === 1) Object.assign(this.figures, this.afterSwap);
  }
  healthSample(): HealthSample {
    return { ...this.figures };
  }
  close(): void {
    clearInterval(this.timer);
  }
}

describe('device updater', () => {
  let dir: string;
  let key: SigningKey;
  let keyring: string;
  let server: ArtifactServer;
  let n = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-updater-'));
    await generateSigningKey('factory', join(dir, 'keys'));
    key = await loadSigningKey('factory', join(dir, 'keys'));
    keyring = join(dir, 'keys', 'trusted');
    server = new ArtifactServer(CREDENTIAL);
    await server.start();
  });
  after(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function sceneBundle(
    version: number,
    o: { now?: Date; expiresInDays?: number } = {},
  ): Promise<Buffer> {
    const out = join(dir, `scene-${++n}.bundle`);
    await buildSceneBundle({
      sceneFile: CAMPUS,
      out,
      version,
      name: 'campus',
      expiresInDays: o.expiresInDays ?? 30,
      signWith: key,
      ...(o.now ? { now: o.now } : {}),
    });
    return readFile(out);
  }

  function assignment(
    data: Buffer,
    kind: 'model' | 'scene',
    name: string,
    version: number,
    extra: Partial<UpdateAssignment> = {},
  ): UpdateAssignment {
    const id = sha256Hex(data);
    server.put(id, data);
    n++;
    return {
      assignment: `assign-${n}-${id.slice(0, 8)}`,
      rollout: 'rollout-test-1',
      artifact: { id, kind, name, version, bytes: data.length },
      health: { windowS: 1, minDetectFpsRatio: 0.8, maxDetectLatencyRatio: 2, maxDetectorRestarts: 0 },
      deadline: new Date(Date.now() + 60_000).toISOString(),
      ...extra,
    };
  }

  async function updater(
    name: string,
    host: FiguresHost,
    o: { maxBytesPerS?: number; hardwareClass?: string } = {},
  ) {
    const statuses: UpdateStatus[] = [];
    /** the statuses' states and the updater's calls of `changed` (with what the host and the updater then say), in order */
    const timeline: string[] = [];
    const u: Updater = await Updater.open({
      device: 'box-1',
      hardwareClass: o.hardwareClass ?? 'test-class',
      otaDir: join(dir, name, 'ota'),
      artifactUrl: (id) => `${server.url}/api/v1/devices/box-1/artifacts/${id}`,
      credential: () => CREDENTIAL,
      settings: {
        maxBytesPerS: o.maxBytesPerS ?? 0,
        keyring,
        limits: DEFAULT_BUNDLE_LIMITS,
        progressS: 0.1,
        sampleS: 0.1,
        retryMaxS: 0.2,
      },
      factory: {
        modelDir: NANODET,
        cameras: [
          { id: 'cam-1', sceneFile: CAMPUS },
          { id: 'cam-2', sceneFile: CAMPUS },
        ],
      },
      report: (s) => {
        statuses.push(otaValidators.update.parse(s, 'status'));
        timeline.push(s.state);
      },
      changed: async () => {
        timeline.push(
          `changed: host ${host.scenes.at(-1)?.version ?? host.swaps.length}, runs v${u.running().scenes.get('cam-1')!.version}`,
        );
      },
      log: createLogger('updater-test'),
    });
    await u.start(() => host);
    return { u, statuses, timeline };
  }

  const final = (statuses: UpdateStatus[], assignmentId: string) =>
    statuses.find(
      (s) =>
        s.assignment === assignmentId && ['committed', 'failed', 'rolled-back', 'canceled'].includes(s.state),
    );

  async function ended(statuses: UpdateStatus[], assignmentId: string): Promise<UpdateStatus> {
    try {
      return await eventually(
        async () => final(statuses, assignmentId),
        90_000,
        `the final status of ${assignmentId}`,
      );
    } catch (err) {
      throw new Error(
        `${(err as Error).message}; statuses so far: ${statuses.map((s) => `${s.assignment.slice(0, 9)} ${s.state} ${s.reason ?? ''}`).join(' | ')}`,
      );
    }
  }

  it('takes a scene through every state to committed, in seq order, and runs it from its slot', async () => {
    const host = new FiguresHost();
    const { u, statuses } = await updater('scene-ok', host);
    const a = assignment(await sceneBundle(3), 'scene', 'campus', 3);
    const answer = await u.assign(a);
    assert.equal(answer.ok, true, answer.message);
    const end = await ended(statuses, a.assignment);
    assert.equal(end.state, 'committed', end.reason);
    const mine = statuses.filter((s) => s.assignment === a.assignment);
    assert.deepEqual(
      [...new Set(mine.map((s) => s.state))],
      ['queued', 'downloading', 'verifying', 'installing', 'health', 'committed'],
    );
    assert.deepEqual(
      mine.map((s) => s.seq),
      mine.map((_, i) => i),
    );
    assert.ok(end.health, 'committed carries the health figures');
    assert.equal(host.scenes.length, 2);
    const running = u.running().scenes.get('cam-1')!;
    assert.equal(running.version, 3);
    assert.equal(running.name, 'campus');
    assert.match(running.file, /ota\/scene\/cam-1\/[ab]\/scene\.yaml$/);
    assert.equal(await new TrustedVersions(join(dir, 'scene-ok', 'ota')).get('scene', 'campus'), 3);
    await u.stop();
    // a new start runs the committed scene, and a replay of the same version is refused
    const again = await updater('scene-ok', host);
    assert.equal(again.u.running().scenes.get('cam-2')!.version, 3);
    const replay = assignment(await sceneBundle(3), 'scene', 'campus', 3);
    await again.u.assign(replay);
    const refused = await ended(again.statuses, replay.assignment);
    assert.equal(refused.state, 'failed');
    assert.match(refused.reason!, /not-newer: .*not newer than the last trusted v3/);
    await again.u.stop();
    host.close();
  });

  it('says what the box runs changed (the swap, the commit, the switch back) before the status that follows', async () => {
    const host = new FiguresHost();
    const { u, statuses, timeline } = await updater('changed', host);
    const a = assignment(await sceneBundle(3), 'scene', 'campus', 3);
    await u.assign(a);
    assert.equal((await ended(statuses, a.assignment)).state, 'committed');
    assert.deepEqual(timeline.slice(timeline.indexOf('installing')), [
      'installing',
      'changed: host 3, runs v0',
      'health',
      'changed: host 3, runs v3',
      'committed',
    ]);
    // a candidate whose detect fps falls: swapped in, switched back, rolled back
    timeline.length = 0;
    host.scenes.length = 0;
    host.afterSwap = { detectFps: 1 };
    const b = assignment(await sceneBundle(4), 'scene', 'campus', 4);
    await u.assign(b);
    assert.equal((await ended(statuses, b.assignment)).state, 'rolled-back');
    assert.deepEqual(timeline.slice(timeline.indexOf('installing')), [
      'installing',
      'changed: host 4, runs v3',
      'health',
      'changed: host 3, runs v3',
      'rolled-back',
    ]);
    await u.stop();
    host.close();
  });

  it('takes back the bundle it committed just before (a rollback), and nothing older, nor the one rolled back from', async () => {
    const host = new FiguresHost();
    const { u, statuses } = await updater('step-back', host);
    const v3 = await sceneBundle(3);
    const v4 = await sceneBundle(4);
    const run = async (bundle: Buffer, version: number) => {
      const a = assignment(bundle, 'scene', 'campus', version);
      await u.assign(a);
      return ended(statuses, a.assignment);
    };
    assert.equal((await run(v3, 3)).state, 'committed');
    assert.equal((await run(v4, 4)).state, 'committed');
    const back = await run(v3, 3);
    assert.equal(back.state, 'committed', back.reason);
    assert.equal(u.running().scenes.get('cam-1')!.version, 3);
    assert.equal(await new TrustedVersions(join(dir, 'step-back', 'ota')).get('scene', 'campus'), 4);
    const forward = await run(v4, 4);
    assert.equal(forward.state, 'failed');
    assert.match(forward.reason!, /not-newer: .*not newer than the last trusted v4/);
    const older = await run(await sceneBundle(2), 2);
    assert.equal(older.state, 'failed');
    assert.match(older.reason!, /not-newer/);
    await u.stop();
    host.close();
  });

  it('refuses a tampered, an expired, an altered-in-transit bundle and a wrong hardware class, each with its reason', async () => {
    const host = new FiguresHost();
    const { u, statuses } = await updater('refusals', host);
    const good = await sceneBundle(10);
    const entries = await readBundleFile(join(dir, `scene-${n}.bundle`));
    entries.set(SCENE_FILE, Buffer.from(`${Buffer.from(entries.get(SCENE_FILE)!).toString()}\n# altered\n`));
    const tampered = packEntries([...entries].map(([name, data]) => ({ name, data })));
    const cases: [UpdateAssignment, RegExp][] = [
      [
        assignment(tampered, 'scene', 'campus', 10),
        /tampered-file: .*scene\.yaml does not match the manifest/,
      ],
      [
        assignment(
          await sceneBundle(11, { now: new Date(Date.now() - 3 * 86_400_000), expiresInDays: 1 }),
          'scene',
          'campus',
          11,
        ),
        /expired: .*expired on/,
      ],
    ];
    // served bytes that are not the artifact the assignment names
    const altered = assignment(good, 'scene', 'campus', 10);
    server.put(
      altered.artifact.id,
      Buffer.concat([good.subarray(0, good.length - 1), Buffer.from([good[good.length - 1]! ^ 1])]),
    );
    cases.push([altered, /download sha256-mismatch: .*not its id/]);
    // altered where the unpacking stops at once (the first tar header): the rest is still
    // downloaded, to name the bytes that are not the artifact rather than a broken archive
    const other = await sceneBundle(12);
    const header = assignment(other, 'scene', 'campus', 12);
    server.put(header.artifact.id, Buffer.concat([Buffer.from([other[0]! ^ 0x40]), other.subarray(1)]));
    cases.push([header, /download sha256-mismatch: .*not its id/]);
    const modelOut = join(dir, 'model.bundle');
    await unevaluatedBundle({
      modelDir: NANODET,
      out: modelOut,
      version: 1_000_000,
      hardwareClass: 'gpu-class-elsewhere',
      key,
    });
    cases.push([
      assignment(await readFile(modelOut), 'model', 'nanodet', 1_000_000),
      /wrong-hardware: .*gpu-class-elsewhere; this box is test-class/,
    ]);
    for (const [a, reason] of cases) {
      await u.assign(a);
      const end = await ended(statuses, a.assignment);
      assert.equal(end.state, 'failed', `${a.assignment}: ${end.reason}`);
      assert.match(end.reason!, reason);
    }
    assert.equal(host.scenes.length + host.swaps.length, 0, 'nothing refused reached the host');
    assert.equal(u.running().model.slot, undefined);
    await u.stop();
    host.close();
  });

  it('fails closed when the store of trusted versions cannot be read', async () => {
    const host = new FiguresHost();
    const { u, statuses } = await updater('unreadable-trust', host);
    await writeFile(join(dir, 'unreadable-trust', 'ota', 'trusted.json'), '{"v":1,"versions":');
    const a = assignment(await sceneBundle(20), 'scene', 'campus', 20);
    await u.assign(a);
    const end = await ended(statuses, a.assignment);
    assert.equal(end.state, 'failed');
    assert.match(end.reason!, /installed-unreadable: .*trusted versions .*cannot be read/);
    await u.stop();
    host.close();
  });

  it('rolls back when detect fps falls in the health window, and refuses a shadow below the agreement threshold', async () => {
    const host = new FiguresHost();
    host.afterSwap = { detectFps: 4 };
    const { u, statuses } = await updater('rollback', host);
    const a = assignment(await sceneBundle(30), 'scene', 'campus', 30);
    await u.assign(a);
    const end = await ended(statuses, a.assignment);
    assert.equal(end.state, 'rolled-back');
    assert.match(end.reason!, /health: detect fps fell from 10 to 4/);
    assert.ok(end.health && end.health.detectFpsAfter < end.health.detectFpsBefore);
    // the scene was applied, then the config's scene again
    assert.deepEqual(
      host.scenes.map((s) => s.version),
      [30, 30, 0, 0],
    );
    assert.equal(u.running().scenes.get('cam-1')!.version, 0);
    assert.equal(await new TrustedVersions(join(dir, 'rollback', 'ota')).get('scene', 'campus'), undefined);

    host.shadow = { ...host.shadow, agreement: 0.41 };
    const modelOut = join(dir, 'model-shadow.bundle');
    // built for every class (the registry's fallback variant): the box takes it up to its shadow run
    await unevaluatedBundle({
      modelDir: NANODET,
      out: modelOut,
      version: 1_000_001,
      hardwareClass: 'any',
      key,
    });
    const m = assignment(await readFile(modelOut), 'model', 'nanodet', 1_000_001, {
      shadow: { frames: 20, minAgreement: 0.8, maxLatencyRatio: 1.5, timeoutS: 30 },
    });
    await u.assign(m);
    const refused = await ended(statuses, m.assignment);
    assert.equal(refused.state, 'failed');
    assert.match(
      refused.reason!,
      /shadow: the candidate agrees .* 0\.41 on 20 frames; the rollout requires at least 0\.8/,
    );
    assert.equal(refused.shadow?.agreement, 0.41);
    assert.equal(host.swaps.length, 0, 'a candidate refused in shadow is never swapped in');
    await u.stop();
    host.close();
  });

  it("fails a shadow run at the rollout's time-out even when the host does not stop it", async () => {
    const host = new FiguresHost();
    host.stallShadow = true;
    const { u, statuses } = await updater('shadow-stall', host);
    const out = join(dir, 'model-stall.bundle');
    await unevaluatedBundle({ modelDir: NANODET, out, version: 1_000_002, hardwareClass: 'any', key });
    const m = assignment(await readFile(out), 'model', 'nanodet', 1_000_002, {
      shadow: { frames: 20, minAgreement: 0.8, maxLatencyRatio: 1.5, timeoutS: 1 },
    });
    await u.assign(m);
    const end = await ended(statuses, m.assignment);
    assert.equal(end.state, 'failed');
    assert.match(end.reason!, /shadow: the frames were not gathered and run within the rollout's 1 s/);
    assert.equal(host.swaps.length, 0);
    await u.stop();
    host.close();
  });

  it('unpacks a bundle into the staging slot as it downloads, and leaves nothing staged when canceled', async () => {
    const host = new FiguresHost();
    const { u, statuses } = await updater('staged', host, { maxBytesPerS: 1_000_000 });
    const out = join(dir, 'model-staged.bundle');
    await unevaluatedBundle({ modelDir: NANODET, out, version: 1_000_002, hardwareClass: 'test-class', key });
    const a = assignment(await readFile(out), 'model', 'nanodet', 1_000_002);
    await u.assign(a);
    const modelDir = join(dir, 'staged', 'ota', 'model');
    const partial = join(dir, 'staged', 'ota', 'download', `${a.artifact.id}.bundle`);
    const staged = async () => {
      const staging = (await readdir(modelDir).catch(() => [] as string[])).filter((f) =>
        f.endsWith('.staging'),
      );
      const sizes = await Promise.all(
        staging.map(async (d) => {
          const files = await readdir(join(modelDir, d));
          return Promise.all(files.map(async (f) => [f, (await stat(join(modelDir, d, f))).size] as const));
        }),
      );
      return sizes.flat();
    };
    // the ONNX file (15 MB, at 1 MB/s) grows in the staging directory while the download goes on
    const growing = await eventually(
      async () => {
        const onnx = (await staged()).find(([f]) => f.endsWith('.onnx'));
        return onnx && onnx[1] > 0 ? onnx[1] : undefined;
      },
      20_000,
      'the model file growing in the staging directory',
    );
    const arrived = (await stat(partial)).size;
    assert.ok(arrived < a.artifact.bytes, `still downloading (${arrived} of ${a.artifact.bytes})`);
    assert.ok(growing <= arrived, 'no byte is unpacked before it arrived');
    assert.equal((await u.cancel({ assignment: a.assignment })).ok, true);
    assert.equal((await ended(statuses, a.assignment)).state, 'canceled');
    assert.deepEqual(await staged(), [], 'nothing of a canceled download stays staged');
    assert.deepEqual(await readdir(modelDir), [], 'and no slot was written');
    await u.stop();
    host.close();
  });

  it('cancels an assignment in download, and a newer assignment of the kind replaces an unfinished one', async () => {
    const host = new FiguresHost();
    const { u, statuses } = await updater('cancel', host, { maxBytesPerS: 2000 });
    const first = assignment(await sceneBundle(40), 'scene', 'campus', 40);
    await u.assign(first);
    await eventually(
      async () => statuses.find((s) => s.assignment === first.assignment && s.state === 'downloading'),
      10_000,
      'the first assignment downloading',
    );
    const second = assignment(await sceneBundle(41), 'scene', 'campus', 41);
    await u.assign(second);
    const replaced = await ended(statuses, first.assignment);
    assert.equal(replaced.state, 'canceled');
    assert.match(replaced.reason!, new RegExp(`replaced by assignment ${second.assignment}`));
    const answer = await u.cancel({ assignment: second.assignment });
    assert.equal(answer.ok, true, answer.message);
    assert.equal((await ended(statuses, second.assignment)).state, 'canceled');
    await u.stop();
    host.close();
  });

  it('refuses an assignment of a kind whose update is installing or in health, with a failed status naming it; the one in health still commits', async () => {
    const host = new FiguresHost();
    const { u, statuses } = await updater('same-kind', host);
    const first = assignment(await sceneBundle(50), 'scene', 'campus', 50, {
      health: { windowS: 3, minDetectFpsRatio: 0.8, maxDetectLatencyRatio: 2, maxDetectorRestarts: 0 },
    });
    await u.assign(first);
    await eventually(
      async () => statuses.find((s) => s.assignment === first.assignment && s.state === 'health'),
      30_000,
      'the first assignment in its health window',
    );
    const second = assignment(await sceneBundle(51), 'scene', 'campus', 51);
    const answer = await u.assign(second);
    assert.equal(answer.ok, false, answer.message);
    const refused = await ended(statuses, second.assignment);
    assert.equal(refused.state, 'failed');
    assert.equal(refused.seq, 0, 'nothing of it ran');
    assert.match(
      refused.reason!,
      new RegExp(
        `assignment ${first.assignment} of this kind is being installed \\(health\\); send this one after it ended`,
      ),
    );
    // the same assignment sent again (the control plane's resend) gets the same answer, not a second run
    const again = await u.assign(second);
    assert.match(again.message, /already ended failed/);
    const done = await ended(statuses, first.assignment);
    assert.equal(done.state, 'committed', done.reason);
    assert.equal(u.running().scenes.get('cam-1')!.version, 50);
    assert.ok(!statuses.some((s) => s.assignment === second.assignment && s.state === 'downloading'));
    await u.stop();
    host.close();
  });

  it("rolls a box's first model bundle back to the config's unbundled model when it fails its health window", async () => {
    const host = new FiguresHost();
    host.afterSwap = { detectFps: 3 };
    const { u, statuses } = await updater('first-model', host);
    assert.deepEqual(
      { dir: u.running().model.dir, slot: u.running().model.slot },
      { dir: NANODET, slot: undefined },
      "before any bundle the box runs the config's model",
    );
    const out = join(dir, 'first-model.bundle');
    await unevaluatedBundle({ modelDir: NANODET, out, version: 1_000_100, hardwareClass: 'any', key });
    const m = assignment(await readFile(out), 'model', 'nanodet', 1_000_100);
    await u.assign(m);
    const end = await ended(statuses, m.assignment);
    assert.equal(end.state, 'rolled-back');
    assert.match(end.reason!, /health: detect fps fell from 10 to 3/);
    // swapped into its slot, then back to the config's model directory
    assert.equal(host.swaps.length, 2, host.swaps.join(', '));
    assert.match(host.swaps[0]!, /ota\/model\/[ab]$/);
    assert.equal(host.swaps[1], NANODET);
    assert.deepEqual(
      { dir: u.running().model.dir, slot: u.running().model.slot },
      { dir: NANODET, slot: undefined },
    );
    assert.equal(
      await new TrustedVersions(join(dir, 'first-model', 'ota')).get('model', 'nanodet'),
      undefined,
    );
    await u.stop();
    // a new start runs the config's model too: nothing of the rolled-back bundle was committed
    const again = await updater('first-model', host);
    assert.equal(again.u.running().model.dir, NANODET);
    await again.u.stop();
    host.close();
  });

  it('resumes a cut download with Range at any cut point, also after a restart, passing every byte once in order to the consumer', async () => {
    const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251));
    const id = sha256Hex(data);
    server.put(id, data);
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.integer({ min: 1, max: data.length - 1 }), { minLength: 1, maxLength: 3 }),
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: data.length - 1 })),
        async (allCuts, left) => {
          // cuts among the bytes an earlier run left are past already
          const cuts = allCuts.filter((c) => c > left);
          const file = join(dir, `cut-${++n}.part`);
          server.cuts.length = 0;
          server.cuts.push(...cuts);
          const seen = server.requests.length;
          // what a restarted process finds: the first bytes of an earlier run in the partial file
          if (left > 0) await writeFile(file, data.subarray(0, left));
          // the consumer (the updater's unpacker) sees every byte once, in order, in the same pass
          const passed = await downloadArtifact(
            {
              url: `${server.url}/api/v1/devices/box-1/artifacts/${id}`,
              credential: () => CREDENTIAL,
              file,
              bytes: data.length,
              sha256: id,
              bucket: new TokenBucket(0),
              signal: new AbortController().signal,
              etag: left > 0 ? `"${id.slice(0, 16)}"` : undefined,
              saveEtag: async () => {},
              onProgress: () => {},
              retryStartMs: 5,
              retryMaxMs: 20,
            },
            async (bytes) => {
              const chunks: Buffer[] = [];
              for await (const chunk of bytes) chunks.push(chunk);
              return Buffer.concat(chunks);
            },
          );
          assert.ok(passed.equals(data), `the consumer got ${passed.length} bytes of ${data.length}`);
          assert.ok((await readFile(file)).equals(data));
          const mine = server.requests.slice(seen);
          assert.equal(mine.length, cuts.length + 1);
          assert.equal(mine[0]!.range, left > 0 ? `bytes=${left}-` : undefined);
          const sorted = [...cuts].sort((x, y) => x - y);
          // a resumed request starts where the file ended: at most at the cut (bytes the client
          // had received but not yet written are lost with the connection), not before the start before
          let previous = left;
          for (const [i, r] of mine.slice(1).entries()) {
            // (a client that had written nothing yet asks for the whole artifact again)
            const from = r.range === undefined ? 0 : Number(/^bytes=(\d+)-$/.exec(r.range)?.[1]);
            assert.ok(
              from >= previous && from <= sorted[i]!,
              `resumed at ${r.range} after a cut at ${sorted[i]}`,
            );
            previous = from;
            if (from > 0) assert.equal(r.ifRange, `"${id.slice(0, 16)}"`);
          }
        },
      ),
      { numRuns: 12 },
    );
  });

  it('holds the bandwidth cap across a cut and a resume', async () => {
    const data = Buffer.alloc(240_000, 7);
    const id = sha256Hex(data);
    server.put(id, data);
    server.cuts.length = 0;
    server.cuts.push(100_000);
    const rate = 200_000;
    const bucket = new TokenBucket(rate);
    const started = performance.now();
    await downloadArtifact({
      url: `${server.url}/api/v1/devices/box-1/artifacts/${id}`,
      credential: () => CREDENTIAL,
      file: join(dir, 'capped.part'),
      bytes: data.length,
      sha256: id,
      bucket,
      signal: new AbortController().signal,
      etag: undefined,
      saveEtag: async () => {},
      onProgress: () => {},
      retryStartMs: 5,
    });
    const seconds = (performance.now() - started) / 1000;
    // the bucket starts empty: the bytes cannot pass faster than the rate
    assert.ok(
      seconds >= data.length / rate - 0.05,
      `${data.length} bytes in ${seconds.toFixed(2)} s at a cap of ${rate}/s`,
    );
  });

  it('reports a download the control plane does not serve to this box as failed, with the 404', async () => {
    await assert.rejects(
      downloadArtifact({
        url: `${server.url}/api/v1/devices/box-1/artifacts/${'0'.repeat(64)}`,
        credential: () => CREDENTIAL,
        file: join(dir, 'missing.part'),
        bytes: 10,
        sha256: '0'.repeat(64),
        bucket: new TokenBucket(0),
        signal: new AbortController().signal,
        etag: undefined,
        saveEtag: async () => {},
        onProgress: () => {},
      }),
      (err: unknown) => err instanceof DownloadFailed && err.reason === 'not-assigned',
    );
  });
});
