import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Candidates, makeCandidates } from '../helpers/candidates.ts';
import { eventually } from '../helpers/eventually.ts';
import { type AssignmentView, Fleet, type RolloutDetail } from '../helpers/fleet.ts';

/**
 * OTA end to end on real processes, the slow scenarios (`npm run test:rollout-e2e`; the fast ones
 * are rollout.test.ts, in `npm test`): a candidate that passes shadow validation and regresses in
 * production is rolled back in the health window and aborts its rollout; boxes SIGKILLed in the
 * middle of their download and of their swap come back running a verified model and say so; a box
 * offline for its whole wave times out while the others go on; the control plane SIGKILLed in the
 * middle of a rollout resumes it after its restart.
 */

const FULL = process.env.ARGUS_ROLLOUT_E2E === 'full';
const BOXES = ['box-1', 'box-2', 'box-3', 'box-4'];
/** the box that is offline for its whole wave */
const OFFLINE = 'box-5';
const SHADOW = { frames: 4, minAgreement: 0.8, maxLatencyRatio: 50, timeoutS: 180 };
const HEALTH = { windowS: 8, minDetectFpsRatio: 0.7, maxDetectLatencyRatio: 50, maxDetectorRestarts: 0 };
/** a few of the boxes' heartbeats (2 s) and their ingestion: the telemetry after a change a box made */
const HEARTBEATS_MS = 20_000;

let fleet: Fleet;
let candidates: Candidates;
const bundles: { slow: string; int8v4: string; int8v5: string } = { slow: '', int8v4: '', int8v5: '' };
const started = performance.now();
const seconds = (ms: number) => Math.round(ms / 100) / 10;
const waveTimes = (d: RolloutDetail) =>
  d.waves.map((w) =>
    w.startedAt && w.endedAt ? seconds(Date.parse(w.endedAt) - Date.parse(w.startedAt)) : null,
  );

const spec = (o: Record<string, unknown>) => ({
  target: { devices: BOXES },
  success: { share: 1, healthS: 0 },
  deviceTimeoutS: 600,
  shadow: SHADOW,
  health: HEALTH,
  ...o,
});

/** the model version the device's camera runs, by the control plane's telemetry */
async function versionOf(device: string): Promise<number | undefined> {
  return (await fleet.cameras()).get(device)?.[0]?.model?.version;
}

/** waits until the assignment of `device` in rollout `id` satisfies `pred` */
async function assignmentOf(
  id: string,
  device: string,
  pred: (a: AssignmentView) => boolean,
  what: string,
  ms = 180_000,
): Promise<AssignmentView> {
  return eventually(
    async () => (await fleet.assignments(id)).find((a) => a.device === device && pred(a)),
    ms,
    `${device} in rollout ${id}: ${what}`,
  );
}

describe('OTA rollouts end to end, the full variant', {
  skip: !FULL && 'npm run test:rollout-e2e runs it',
}, () => {
  before(async () => {
    candidates = await makeCandidates();
    // a download takes a few seconds at this cap, long enough to kill a box in the middle of it
    fleet = await Fleet.start({
      devices: [...BOXES, OFFLINE],
      detectFps: 3,
      ota: { maxBytesPerS: 1_000_000 },
    });
    bundles.slow = await fleet.candidateBundle(candidates.slow, candidates.fp32, 3);
    bundles.int8v4 = await fleet.candidateBundle(candidates.int8, candidates.fp32, 4);
    bundles.int8v5 = await fleet.candidateBundle(candidates.int8, candidates.fp32, 5);
    for (const b of Object.values(bundles)) await fleet.publish(b);
    await fleet.startBoxes();
    console.log(`fleet ready after ${seconds(performance.now() - started)} s`);
  });

  after(async () => {
    await fleet?.close();
    console.log(`full OTA end-to-end variant: ${seconds(performance.now() - started)} s wall`);
  });

  it('rolls back a candidate that passes shadow but slows detection, in the health window, and aborts the rollout', async () => {
    const t0 = performance.now();
    const id = await fleet.createRollout(
      spec({
        name: 'slow candidate',
        artifact: { kind: 'model', name: 'nanodet', version: 3 },
        waves: { canary: { devices: 1 }, rate: { kind: 'constant', share: 1 } },
        error: { count: 1 },
        onError: 'abort',
      }),
    );
    const d = await fleet.settled(id, ['aborted', 'paused', 'completed'], 400_000);
    const rows = await fleet.assignments(id);
    assert.equal(d.state, 'aborted', JSON.stringify(rows.map((a) => [a.device, a.state, a.reason])));
    const canary = rows.find((a) => a.wave === 0)!;
    assert.equal(canary.state, 'rolled-back', canary.reason ?? '');
    assert.match(canary.reason ?? '', /^health: detect fps fell/);
    const shadow = (canary.figures as { shadow?: { agreement: number } } | null)?.shadow;
    assert.ok(shadow === undefined || shadow.agreement >= SHADOW.minAgreement, 'it had passed shadow');
    for (const a of rows.filter((x) => x.wave > 0))
      assert.ok(['pending', 'canceled'].includes(a.state), `${a.device} was not sent the aborted candidate`);
    // the box swaps back just before it reports rolled-back, so that status (and the abort it
    // causes) reaches the control plane before the box's next heartbeat says what it runs now
    for (const b of BOXES)
      await eventually(
        async () => ((await versionOf(b)) === 2 ? true : undefined),
        HEARTBEATS_MS,
        `${b} running the catalog's model (v2) by its telemetry`,
      );
    console.log(`slow candidate rolled back and aborted: ${seconds(performance.now() - t0)} s`);
  });

  it('survives SIGKILL of a box mid-download and another mid-swap; a box offline for its whole wave times out, the others go on', async () => {
    await fleet.killAgent(OFFLINE);
    const t0 = performance.now();
    const id = await fleet.createRollout(
      spec({
        name: 'int8 v4 with kills',
        artifact: { kind: 'model', name: 'nanodet', version: 4 },
        target: { devices: [...BOXES, OFFLINE] },
        waves: { rate: { kind: 'constant', share: 1 } },
        success: { share: 0.8, healthS: 0 },
        error: { count: 2 },
        deviceTimeoutS: 150,
      }),
    );
    await assignmentOf(id, 'box-2', (a) => a.state === 'downloading', 'downloading');
    await fleet.killAgent('box-2');
    await fleet.startAgent('box-2');
    await assignmentOf(id, 'box-3', (a) => a.state === 'installing', 'installing', 300_000);
    await fleet.killAgent('box-3');
    await fleet.startAgent('box-3');
    const d = await fleet.settled(id, ['completed', 'paused', 'aborted'], 400_000);
    const rows = await fleet.assignments(id);
    const states = Object.fromEntries(rows.map((a) => [a.device, a.state]));
    assert.equal(d.state, 'completed', JSON.stringify(rows.map((a) => [a.device, a.state, a.reason])));
    assert.equal(states[OFFLINE], 'timed-out');
    assert.equal(states['box-1'], 'committed');
    assert.equal(states['box-2'], 'committed', 'the box killed in its download resumed it and committed');
    assert.equal(states['box-4'], 'committed');
    // killed in its swap, the box reports the truth: committed and running v4, or back on v2
    const box3 = rows.find((a) => a.device === 'box-3')!;
    const expected = box3.state === 'committed' ? 4 : 2;
    assert.ok(
      ['committed', 'rolled-back', 'failed'].includes(box3.state),
      `box-3: ${box3.state} ${box3.reason}`,
    );
    await eventually(
      async () => ((await versionOf('box-3')) === expected ? true : undefined),
      60_000,
      `box-3 running v${expected} as it reported (${box3.state})`,
    );
    for (const b of ['box-1', 'box-2', 'box-4']) assert.equal(await versionOf(b), 4);
    console.log(
      `kills and a timed-out box: ${seconds(performance.now() - t0)} s; box-3 after its kill: ${box3.state} ${box3.reason ?? ''}`,
    );
  });

  it('resumes a rollout after a SIGKILL of the control plane in its second wave', async () => {
    const t0 = performance.now();
    const id = await fleet.createRollout(
      spec({
        name: 'int8 v5 across a control-plane kill',
        artifact: { kind: 'model', name: 'nanodet', version: 5 },
        waves: { canary: { devices: 1 }, rate: { kind: 'constant', share: 1 } },
        error: { count: 1 },
      }),
    );
    await eventually(
      async () => {
        const d = await fleet.rollout(id);
        return d.currentWave === 1 && (d.waves[1]!.counts.pending ?? 0) < d.waves[1]!.size ? d : undefined;
      },
      300_000,
      'the second wave under way',
    );
    const before = await fleet.assignments(id);
    await fleet.killControlPlane();
    await fleet.restartControlPlane();
    const d = await fleet.settled(id, ['completed', 'paused', 'aborted'], 400_000);
    const rows = await fleet.assignments(id);
    assert.equal(d.state, 'completed', JSON.stringify(rows.map((a) => [a.device, a.state, a.reason])));
    assert.deepEqual(
      rows.map((a) => a.id),
      before.map((a) => a.id),
      'the same assignments after the restart: none made again',
    );
    assert.deepEqual(
      rows.map((a) => a.state),
      BOXES.map(() => 'committed'),
    );
    for (const b of BOXES) assert.equal(await versionOf(b), 5);
    console.log(
      `rollout across a control-plane kill: ${seconds(performance.now() - t0)} s, waves ${JSON.stringify(waveTimes(d))} s`,
    );
  });
});
