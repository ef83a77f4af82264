import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildSceneBundle } from '../../ota/scene-bundle.ts';
import { type Candidates, makeCandidates, PERMISSIVE_GATE } from '../helpers/candidates.ts';
import { eventually } from '../helpers/eventually.ts';
import {
  type AssignmentView,
  type CameraSample,
  campusScene,
  Fleet,
  LINE_RULE,
  type RolloutDetail,
} from '../helpers/fleet.ts';

/**
 * OTA end to end on real processes (the fast variant, in `npm test`): the control plane as
 * `argus control-plane run`, four boxes as `argus device run` on live RTSP cameras with the real
 * detector, signed bundles of the model factory's candidates published to the real registry,
 * rollouts through the API, downloads over HTTP, assignments and statuses over MQTT. The slow
 * scenarios (health-window rollback, SIGKILLs, a box offline for its wave) are in
 * rollout-full.test.ts, behind `npm run test:rollout-e2e`.
 */

const DEVICES = ['box-1', 'box-2', 'box-3', 'box-4'];
const MOVED_RULE = 'road-crossing-moved';
/** thresholds the boxes judge candidates by; latency is loose, the machine is shared */
const SHADOW = { frames: 4, minAgreement: 0.8, maxLatencyRatio: 50, timeoutS: 120 };
const HEALTH = { windowS: 4, minDetectFpsRatio: 0.5, maxDetectLatencyRatio: 50, maxDetectorRestarts: 0 };

let fleet: Fleet;
let candidates: Candidates;
let tamperedId: string;
const started = performance.now();

const seconds = (ms: number) => Math.round(ms / 100) / 10;

/** how long each wave of a rollout ran, in seconds (from the control plane's own timestamps) */
const waveTimes = (d: RolloutDetail) =>
  d.waves.map((w) =>
    w.startedAt && w.endedAt ? seconds(Date.parse(w.endedAt) - Date.parse(w.startedAt)) : null,
  );

/** the model (name, version) each device's cameras run, as the control plane's telemetry says */
async function modelsRun(): Promise<Record<string, string[]>> {
  const cams = await fleet.cameras();
  return Object.fromEntries(
    DEVICES.map((d) => [d, (cams.get(d) ?? []).map((c) => `${c.model?.name} v${c.model?.version}`)]),
  );
}

/** the longest stretch, in ms, in which a device's health endpoint showed a camera not online or not detecting */
function longestStop(samples: CameraSample[], device: string): number {
  let longest = 0;
  let since: number | undefined;
  for (const s of samples.filter((x) => x.device === device)) {
    const stopped = s.cameras.some((c) => c.state !== 'online' || c.fpsDetect === 0);
    if (stopped) since ??= s.at;
    else since = undefined;
    if (since !== undefined) longest = Math.max(longest, s.at - since);
  }
  return longest;
}

/** a rollout to every box, with the test's thresholds (shadow validation for models) */
const rolloutSpec = (
  o: Record<string, unknown> & { artifact: { kind: string; name: string; version: number } },
) => ({
  target: { devices: DEVICES },
  success: { share: 1, healthS: 0 },
  deviceTimeoutS: 300,
  ...(o.artifact.kind === 'model' ? { shadow: SHADOW } : {}),
  health: HEALTH,
  ...o,
});

describe('OTA rollouts end to end: control plane and four boxes on live cameras', () => {
  before(async () => {
    candidates = await makeCandidates();
    fleet = await Fleet.start({ devices: DEVICES, detectFps: 2 });
    const int8 = await fleet.candidateBundle(candidates.int8, candidates.fp32, 3);
    const broken = await fleet.candidateBundle(candidates.broken, candidates.fp32, 4, PERMISSIVE_GATE);
    // published before the boxes start: the registry verifies each upload
    await fleet.publish(int8);
    await fleet.publish(broken);
    const tampered = join(fleet.dir, 'campus-v1.argus-scene');
    await buildSceneBundle({
      sceneFile: join(fleet.dir, 'scenes', 'cam-1.yaml'),
      out: tampered,
      version: 1,
      expiresInDays: 30,
      signWith: fleet.key,
    });
    tamperedId = await fleet.publish(tampered);
    const scene = join(fleet.dir, 'moved-line.yaml');
    await campusScene(scene, { rule: MOVED_RULE, x: 0.45 });
    const moved = join(fleet.dir, 'campus-v2.argus-scene');
    await buildSceneBundle({
      sceneFile: scene,
      out: moved,
      version: 2,
      expiresInDays: 30,
      signWith: fleet.key,
    });
    await fleet.publish(moved);
    console.log(`bundles built and published after ${seconds(performance.now() - started)} s`);
    await fleet.startBoxes();
    console.log(`fleet and bundles ready after ${seconds(performance.now() - started)} s`);
  });

  after(async () => {
    await fleet?.close();
    console.log(`fast OTA end-to-end variant: ${seconds(performance.now() - started)} s wall`);
  });

  it('rolls a good int8 candidate out in two waves: every box commits and runs it, no camera stops', async () => {
    fleet.watchCameras();
    const t0 = performance.now();
    const id = await fleet.createRollout(
      rolloutSpec({
        name: 'int8 to the fleet',
        artifact: { kind: 'model', name: 'nanodet', version: 3 },
        waves: { canary: { devices: 1 }, rate: { kind: 'constant', share: 1 } },
        error: { count: 1 },
      }),
    );
    const done = await fleet.settled(id, ['completed', 'paused', 'aborted'], 240_000);
    const ms = performance.now() - t0;
    const rows = await fleet.assignments(id);
    assert.equal(done.state, 'completed', JSON.stringify(rows.map((a) => [a.device, a.state, a.reason])));
    assert.deepEqual(
      done.waves.map((w) => [w.size, w.state]),
      [
        [1, 'succeeded'],
        [3, 'succeeded'],
      ],
    );
    assert.deepEqual(
      rows.map((a) => a.state),
      DEVICES.map(() => 'committed'),
    );
    const canary = rows.find((a) => a.wave === 0)!;
    assert.ok(
      rows.filter((a) => a.wave === 1).every((a) => Date.parse(a.sentAt!) >= Date.parse(canary.updatedAt)),
      'the second wave was sent after the canary committed',
    );
    await eventually(
      async () => {
        const run = await modelsRun();
        return DEVICES.every((d) => run[d]!.length === 1 && run[d]![0] === 'nanodet v3') ? run : undefined;
      },
      30_000,
      'telemetry naming nanodet v3 on every camera',
    );
    await fleet.unwatch();
    for (const d of DEVICES) {
      const stop = longestStop(fleet.samples, d);
      assert.ok(stop < 2000, `${d}: its camera stopped detecting for ${stop} ms over the rollout`);
      const after = fleet.samples.filter((s) => s.device === d && s.cameras[0]?.model?.version === 3);
      assert.ok(
        after.some((s) => s.cameras[0]!.fpsDetect > 0),
        `${d} detects with the new model`,
      );
    }
    console.log(`good int8 rollout: ${seconds(ms)} s, waves ${JSON.stringify(waveTimes(done))} s`);
  });

  it('refuses a broken quantization on the canary by shadow validation and pauses; no other box changes', async () => {
    const t0 = performance.now();
    const id = await fleet.createRollout(
      rolloutSpec({
        name: 'broken int8',
        artifact: { kind: 'model', name: 'nanodet', version: 4 },
        waves: { canary: { devices: 1 }, rate: { kind: 'constant', share: 1 } },
        error: { count: 1 },
        onError: 'pause',
      }),
    );
    const paused = await fleet.settled(id, ['paused', 'completed', 'aborted'], 180_000);
    const ms = performance.now() - t0;
    assert.equal(paused.state, 'paused');
    assert.deepEqual(
      paused.waves.map((w) => w.state),
      ['failed', 'pending'],
    );
    const rows = await fleet.assignments(id);
    const canary = rows.find((a) => a.wave === 0)!;
    assert.equal(canary.state, 'failed');
    assert.match(
      canary.reason ?? '',
      /^shadow: the candidate agrees with the current model at mAP@0\.5 [\d.]+ on \d+ frames; the rollout requires at least 0\.8$/,
    );
    const figures = canary.figures as { shadow?: { agreement: number; frames: number } } | null;
    assert.ok(
      (figures?.shadow?.agreement ?? 1) < SHADOW.minAgreement,
      `the shadow figures are shown: ${JSON.stringify(figures)}`,
    );
    assert.deepEqual(
      rows.filter((a) => a.wave === 1).map((a) => a.state),
      ['pending', 'pending', 'pending'],
      'nothing was sent to the other boxes',
    );
    const run = await modelsRun();
    for (const d of DEVICES) assert.deepEqual(run[d], ['nanodet v3'], `${d} still runs v3`);
    await fleet.action(id, 'cancel');
    console.log(`broken candidate refused and paused: ${seconds(ms)} s`);
  });

  it('refuses a tampered artifact on every box, with the reason in the rollout per device', async () => {
    await fleet.tamper(tamperedId);
    const t0 = performance.now();
    const id = await fleet.createRollout(
      rolloutSpec({
        name: 'tampered scene',
        artifact: { kind: 'scene', name: 'campus-road', version: 1 },
        waves: { rate: { kind: 'constant', share: 1 } },
        error: { share: 1 },
      }),
    );
    const rows = await eventually(
      async () => {
        const r = await fleet.assignments(id);
        return r.length === DEVICES.length && r.every((a) => ['failed', 'committed'].includes(a.state))
          ? r
          : undefined;
      },
      120_000,
      'every box to answer the tampered artifact',
    );
    const ms = performance.now() - t0;
    for (const a of rows) {
      assert.equal(a.state, 'failed', `${a.device}: ${a.reason}`);
      assert.match(a.reason ?? '', /sha256/, `${a.device} names the hash mismatch: ${a.reason}`);
    }
    const d = await fleet.settled(id, ['paused', 'aborted'], 30_000);
    assert.equal(d.waves[0]!.state, 'failed');
    const cams = await fleet.cameras();
    for (const dev of DEVICES) assert.equal(cams.get(dev)![0]!.scene?.version, 0, `${dev} keeps its scene`);
    await fleet.action(id, 'cancel');
    console.log(`tampered artifact refused by every box: ${seconds(ms)} s; reason: ${rows[0]!.reason}`);
  });

  it('moves the counting line on two boxes by a scene rollout: their next crossings use the new line, the others do not', async () => {
    const moved = ['box-3', 'box-4'];
    const t0 = performance.now();
    const id = await fleet.createRollout(
      rolloutSpec({
        name: 'move the line',
        artifact: { kind: 'scene', name: 'campus-road', version: 2 },
        target: { devices: moved },
        waves: { rate: { kind: 'constant', share: 1 } },
        error: { count: 1 },
      }),
    );
    const done = await fleet.settled(id, ['completed', 'paused', 'aborted'], 120_000);
    const rolloutMs = performance.now() - t0;
    const rows: AssignmentView[] = await fleet.assignments(id);
    assert.equal(done.state, 'completed', JSON.stringify(rows.map((a) => [a.device, a.state, a.reason])));
    const committedAt = Math.max(...rows.map((a) => Date.parse(a.updatedAt)));
    const from = new Date(committedAt).toISOString();
    // the next crossings of the moved boxes are counted by the new rule at the new line
    await eventually(
      async () => {
        const events = await fleet.events({ rule: MOVED_RULE, from });
        return moved.every((d) => events.some((e) => e.event.device === d && e.event.phase === 'new'))
          ? true
          : undefined;
      },
      150_000,
      `a crossing of ${MOVED_RULE} on ${moved.join(' and ')}`,
    );
    const lineMs = performance.now() - t0;
    const since = (await fleet.events({ from })).filter((e) => Date.parse(e.event.at) > committedAt);
    for (const d of moved)
      assert.ok(
        !since.some((e) => e.event.device === d && e.event.rule === LINE_RULE),
        `${d} still counts at the old line after the commit`,
      );
    const all = await fleet.events({ rule: MOVED_RULE });
    for (const d of ['box-1', 'box-2'])
      assert.ok(!all.some((e) => e.event.device === d), `${d} took the new line it was not given`);
    const cams = await fleet.cameras();
    assert.deepEqual(
      DEVICES.map((d) => cams.get(d)![0]!.scene?.version),
      [0, 0, 2, 2],
    );
    console.log(
      `scene rollout to two boxes: ${seconds(rolloutMs)} s to commit, ${seconds(lineMs)} s to a crossing at the new line on both`,
    );
  });
});
