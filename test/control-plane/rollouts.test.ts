import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { ControlPlane } from '../../control-plane/index.ts';
import { ApiTokens } from '../../control-plane/storage/api-tokens.ts';
import { eventually } from '../helpers/eventually.ts';
import { artifactId, CatalogueVariants, updateStatus } from './rollout-setup.ts';
import { apiFetch, getJson, metric, startTestControlPlane, tokenFor } from './setup.ts';
import { SimulatedBox } from './sim-device.ts';

const ARGUS = resolve(import.meta.dirname, '../../bin/argus.mjs');
const run = promisify(execFile);

/** `argus …` against the control plane, with an operator's token in the environment */
async function argus(cp: ControlPlane, ...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [ARGUS, ...args], {
    env: { ...process.env, ARGUS_CONTROL_PLANE: cp.httpUrl, ARGUS_TOKEN: tokenFor(cp.httpUrl) },
  });
  return stdout;
}

interface Detail {
  id: string;
  state: string;
  reason: string | null;
  currentWave: number;
  counts: Record<string, number>;
  waves: { index: number; state: string; size: number; counts: Record<string, number> }[];
  failures: { device: string; state: string; reason: string | null }[];
  versions: { version: number; devices: number }[];
}

async function post(url: string, body: unknown, token?: string): Promise<Response> {
  return apiFetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
}

async function created(cp: ControlPlane, body: unknown): Promise<Detail> {
  const res = await post(`${cp.httpUrl}/api/v1/rollouts`, body);
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()) as Detail;
}

const show = (cp: ControlPlane, id: string) => getJson<Detail>(`${cp.httpUrl}/api/v1/rollouts/${id}`);

/** waits until the rollout satisfies `done` */
function until(cp: ControlPlane, id: string, done: (d: Detail) => boolean, what: string, ms = 20_000) {
  return eventually(
    async () => {
      const d = await show(cp, id);
      return done(d) ? d : undefined;
    },
    ms,
    what,
  );
}

describe('rollouts over MQTT (control plane with the embedded broker, simulated boxes)', () => {
  let dir: string;
  let cp: ControlPlane;
  const boxes = new Map<string, SimulatedBox>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-rollouts-'));
    cp = await startTestControlPlane({
      dir,
      config: { rollouts: { tickS: 0.1, resendS: 30 } },
      parts: { artifacts: new CatalogueVariants([1, 2, 3, 4, 5]) },
    });
    for (const id of ['box-1', 'box-2', 'box-3', 'box-4'])
      boxes.set(id, await SimulatedBox.connect(cp.mqttUrl, id, 'commit'));
    await eventually(
      async () => {
        const page = await getJson<{ devices: { identity: unknown }[] }>(`${cp.httpUrl}/api/v1/devices`);
        return page.devices.filter((d) => d.identity).length === 4 ? true : undefined;
      },
      10_000,
      'the boxes to send their identities',
    );
  });
  after(async () => {
    for (const b of boxes.values()) await b.close();
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('rolls out in a canary and a wave: every box ends committed; a second rollout of the kind is refused naming the first', async () => {
    const r = await created(cp, {
      name: 'detector v2',
      artifact: { kind: 'model', name: 'detector', version: 2 },
      target: { devices: ['box-1', 'box-2', 'box-3', 'box-4'] },
      waves: { canary: { devices: 1 }, rate: { kind: 'constant', share: 1 } },
    });
    assert.deepEqual(
      r.waves.map((w) => w.size),
      [1, 3],
    );
    const refused = await post(`${cp.httpUrl}/api/v1/rollouts`, {
      name: 'detector v3',
      artifact: { kind: 'model', name: 'detector', version: 3 },
      target: { devices: ['box-2'] },
    });
    assert.equal(refused.status, 409);
    const body = (await refused.json()) as { error: string };
    assert.match(body.error, new RegExp(`box-2 are in rollout ${r.id} "detector v2"`));
    const done = await until(cp, r.id, (d) => d.state === 'completed', 'the rollout to complete');
    assert.equal(done.counts.committed, 4);
    assert.deepEqual(
      done.waves.map((w) => w.state),
      ['succeeded', 'succeeded'],
    );
    // the canary went first: box-1 was assigned before any box of the second wave
    const box1 = boxes.get('box-1')!.assignments[0]!;
    assert.equal(box1.artifact.id, artifactId('model', 'detector', 2, 'x86_64-avx2'));
    assert.ok(box1.shadow, 'a model assignment carries shadow thresholds');
    assert.equal(box1.health.windowS, 60);
    // once committed, nothing of it is assigned: the registry's download answers 404
    assert.equal(await cp.rollouts.assignedTo('box-1', box1.artifact.id), false);
    assert.deepEqual(await cp.rollouts.referencedArtifacts(), [box1.artifact.id]);
  });

  it('a model rollout with shadow false assigns no shadow step (boxes without cameras)', async () => {
    const r = await created(cp, {
      name: 'detector v3 to a box without cameras',
      artifact: { kind: 'model', name: 'detector', version: 3 },
      target: { devices: ['box-4'] },
      shadow: false,
    });
    await until(cp, r.id, (d) => d.state === 'completed', 'the rollout to complete');
    const a = boxes.get('box-4')!.assignments.at(-1)!;
    assert.equal(a.artifact.version, 3);
    assert.equal(a.shadow, undefined);
  });

  it('ingest applies statuses in seq order, once each, only from the device the assignment belongs to', async () => {
    boxes.get('box-1')!.answer = 'silent';
    boxes.get('box-2')!.answer = 'silent';
    const r = await created(cp, {
      name: 'detector v3',
      artifact: { kind: 'model', name: 'detector', version: 3 },
      target: { devices: ['box-1', 'box-2'] },
      success: { share: 1 },
      error: { count: 2 },
      deviceTimeoutS: 600,
    });
    const box1 = boxes.get('box-1')!;
    const a = await eventually(
      async () => box1.assignments.find((x) => x.rollout === r.id),
      10_000,
      'the assignment',
    );
    assert.equal(await cp.rollouts.assignedTo('box-1', a.artifact.id), true, 'the box may download it now');
    assert.equal(await cp.rollouts.assignedTo('box-3', a.artifact.id), false, 'another box may not');
    const ref = { device: 'box-1', assignment: a.assignment, rollout: r.id, artifact: a.artifact };
    const installing = updateStatus(ref, 3, 'installing');
    await box1.publish(updateStatus(ref, 0, 'queued'));
    await box1.publish(installing);
    await box1.publish(installing); // redelivered
    await box1.publish(updateStatus(ref, 1, 'downloading')); // late, lower seq
    const rejectedBefore = await metric(
      cp.httpUrl,
      'argus_ingest_rejected_total{reason="unknown_assignment"}',
    );
    // box-2 reports on box-1's assignment, and on one that does not exist
    const box2 = boxes.get('box-2')!;
    await box2.publish(updateStatus({ ...ref, device: 'box-2' }, 9, 'committed'));
    await box2.publish(
      updateStatus({ ...ref, device: 'box-2', assignment: 'no-such-assignment' }, 0, 'queued'),
    );
    await eventually(
      async () =>
        (await metric(cp.httpUrl, 'argus_ingest_rejected_total{reason="unknown_assignment"}')) ===
        rejectedBefore + 2
          ? true
          : undefined,
      10_000,
      'the two statuses of box-2 rejected',
    );
    const rows = await cp.repository.sql.read<{ state: string; seq: number }>(
      'SELECT state, seq FROM rollout_assignments WHERE id = ?',
      [a.assignment],
    );
    assert.deepEqual(rows, [{ state: 'installing', seq: 3 }], 'the late seq 1 did not move it back');
    const stored = await cp.rollouts.store.statuses(a.assignment);
    assert.deepEqual(
      stored.map((s) => s.seq),
      [0, 1, 3],
      'each status once',
    );
    await box1.publish(updateStatus(ref, 4, 'failed', 'shadow agreement 0.2 below 0.8'));
    await eventually(
      async () => ((await show(cp, r.id)).failures.some((f) => f.device === 'box-1') ? true : undefined),
      10_000,
      'the failure shown',
    );
    const d = await show(cp, r.id);
    assert.equal(d.failures[0]!.reason, 'shadow agreement 0.2 below 0.8');
    assert.equal(d.state, 'running', 'one failure of two is below the error count');
    const canceled = await post(`${cp.httpUrl}/api/v1/rollouts/${r.id}/cancel`, {});
    assert.equal(canceled.status, 200);
    // box-2 had it in progress: it is told to cancel
    await eventually(
      async () => (box2.cancels.length > 0 ? true : undefined),
      10_000,
      'update-cancel to box-2',
    );
    boxes.get('box-1')!.answer = 'commit';
    boxes.get('box-2')!.answer = 'commit';
    const b2 = box2.assignments.find((x) => x.rollout === r.id)!;
    await box2.publish(
      updateStatus(
        { device: 'box-2', assignment: b2.assignment, rollout: r.id, artifact: b2.artifact },
        0,
        'canceled',
      ),
    );
    await until(cp, r.id, (x) => x.counts.canceled === 1, 'box-2 canceled');
  });

  it('a box that never answers times out and the wave goes on; the rollout completes without it', async () => {
    boxes.get('box-3')!.answer = 'silent';
    const r = await created(cp, {
      name: 'detector v4',
      artifact: { kind: 'model', name: 'detector', version: 4 },
      target: { devices: ['box-1', 'box-3', 'box-4'] },
      waves: { canary: { devices: 1 }, rate: { kind: 'constant', share: 1 } },
      success: { share: 0.5 },
      error: { count: 2 },
      deviceTimeoutS: 10,
    });
    const done = await until(cp, r.id, (d) => d.state === 'completed', 'the rollout to complete', 30_000);
    assert.equal(done.counts.committed, 2);
    assert.equal(done.counts['timed-out'], 1);
    assert.equal(done.failures[0]!.device, 'box-3');
    assert.match(done.failures[0]!.reason!, /no final state from the device before the deadline/);
    boxes.get('box-3')!.answer = 'commit';
  });

  it('a canary that fails pauses the rollout before any other box is assigned; abort rolls back nothing it did not install', async () => {
    boxes.get('box-1')!.answer = 'fail-shadow';
    const r = await created(cp, {
      name: 'detector v5',
      artifact: { kind: 'model', name: 'detector', version: 5 },
      target: { devices: ['box-1', 'box-2', 'box-3', 'box-4'] },
      waves: { canary: { devices: 1 }, rate: { kind: 'constant', share: 1 } },
      error: { count: 1 },
    });
    const paused = await until(cp, r.id, (d) => d.state === 'paused', 'the rollout to pause');
    assert.match(paused.reason!, /paused at wave 0: 1 of 1 devices failed/);
    for (const id of ['box-2', 'box-3', 'box-4'])
      assert.equal(
        boxes.get(id)!.assignments.some((a) => a.rollout === r.id),
        false,
        `${id} got nothing`,
      );
    // a viewer may look but not act
    const viewer = (await new ApiTokens(cp.repository.sql).create('viewer', 'viewer', 'tests')).secret;
    const refused = await post(`${cp.httpUrl}/api/v1/rollouts/${r.id}/resume`, {}, viewer);
    assert.equal(refused.status, 403);
    const aborted = await post(`${cp.httpUrl}/api/v1/rollouts/${r.id}/cancel`, { rollback: true });
    assert.equal(aborted.status, 200);
    const d = await show(cp, r.id);
    assert.equal(d.state, 'aborted');
    assert.equal(d.counts.canceled, 3, 'the boxes of the next wave were never sent anything');
    const audit = await cp.repository.sql.read<{ action: string }>(
      "SELECT action FROM audit WHERE action LIKE '%/api/v1/rollouts/%/cancel'",
    );
    assert.ok(audit.length >= 1, 'the cancel is audited');
    const creations = await cp.repository.sql.read<{ params: string }>(
      "SELECT params FROM audit WHERE action = 'POST /api/v1/rollouts' AND status = 201",
    );
    assert.ok(
      creations.some((e) => (JSON.parse(e.params) as Record<string, string>).rollout === r.id),
      'the creation names the rollout and its artifact',
    );
    assert.ok(
      creations.every((e) =>
        /^(model|scene):/.test((JSON.parse(e.params) as Record<string, string>).artifact ?? ''),
      ),
    );
    boxes.get('box-1')!.answer = 'commit';
  });

  it("a device's rollout history: every rollout that touched it, newest first, with its state and reason there; paged; for viewers", async () => {
    interface Page {
      rollouts: { name: string; state: string; assignments: { state: string; reason: string | null }[] }[];
      nextCursor: string | null;
    }
    const url = `${cp.httpUrl}/api/v1/devices/box-3/rollouts`;
    const all = await getJson<Page>(url);
    assert.deepEqual(
      all.rollouts.map((r) => [r.name, r.state, r.assignments.map((a) => a.state)]),
      [
        ['detector v5', 'aborted', ['canceled']],
        ['detector v4', 'completed', ['timed-out']],
        ['detector v2', 'completed', ['committed']],
      ],
    );
    assert.match(
      all.rollouts[1]!.assignments[0]!.reason!,
      /no final state from the device before the deadline/,
    );
    assert.equal(all.nextCursor, null);
    const first = await getJson<Page>(`${url}?limit=2`);
    assert.deepEqual(
      first.rollouts.map((r) => r.name),
      ['detector v5', 'detector v4'],
    );
    const rest = await getJson<Page>(`${url}?limit=2&cursor=${first.nextCursor}`);
    assert.deepEqual(
      rest.rollouts.map((r) => r.name),
      ['detector v2'],
    );
    assert.deepEqual((await getJson<Page>(`${cp.httpUrl}/api/v1/devices/box-9/rollouts`)).rollouts, []);
    const viewer = (await new ApiTokens(cp.repository.sql).create('history viewer', 'viewer', 'tests'))
      .secret;
    const seen = await fetch(url, { headers: { authorization: `Bearer ${viewer}` } });
    assert.equal(seen.status, 200);
    assert.equal((await fetch(url)).status, 401, 'no credential, no history');
    assert.equal((await apiFetch(`${url}?limit=1000`)).status, 400, 'a page is bounded');
  });

  it('argus rollouts create | list | show | pause | resume | cancel and argus devices label drive the same API', async () => {
    assert.match(
      await argus(cp, 'devices', 'label', 'box-4', 'site=north', 'tz=Europe/Paris'),
      /box-4: site=north tz=Europe\/Paris/,
    );
    assert.match(await argus(cp, 'devices', 'label', 'box-3', 'site=south'), /box-3: site=south/);
    for (const b of boxes.values()) b.answer = 'silent';
    const out = await argus(
      cp,
      'rollouts',
      'create',
      '--artifact',
      'model:detector:1',
      '--label',
      'site=north',
      '--window',
      '00:00-00:00',
      '--timeout',
      '600',
    );
    const id = /rollout (\S+) "model detector v1": model detector v1 — running/.exec(out)?.[1];
    assert.ok(id, out);
    assert.match(out, /wave 0 {2}\S+ +\[\.+\] +1 devices/);
    assert.match(await argus(cp, 'rollouts', 'list', '--state', 'running'), new RegExp(`${id} +running`));
    assert.match(await argus(cp, 'rollouts', 'pause', id), /— paused/);
    assert.match(await argus(cp, 'rollouts', 'resume', id), /— running/);
    await eventually(
      async () => (boxes.get('box-4')!.assignments.some((a) => a.rollout === id) ? true : undefined),
      10_000,
      'the assignment of box-4',
    );
    assert.match(await argus(cp, 'rollouts', 'show', id), /sent 1|queued 1/);
    assert.match(await argus(cp, 'rollouts', 'cancel', id), /— canceled/);
    for (const b of boxes.values()) b.answer = 'commit';
    // a refusal is the API's message, and the exit status says so
    await assert.rejects(argus(cp, 'rollouts', 'pause', id), /is canceled: only a running rollout pauses/);
  });
});
