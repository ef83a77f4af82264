import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ControlPlane } from '../../control-plane/index.ts';
import { generateSigningKey, loadSigningKey, type SigningKey } from '../../models/bundle/keys.ts';
import { eventually } from '../helpers/eventually.ts';
import { modelBundle } from './artifact-bundles.ts';
import { apiFetch, getJson, startTestControlPlane } from './setup.ts';
import { SimulatedBox } from './sim-device.ts';

interface Detail {
  id: string;
  state: string;
  reason: string | null;
  waves: { index: number; state: string; reason: string | null }[];
  failures: { device: string; state: string; reason: string | null }[];
}

const DAY_MS = 86_400_000;

describe('rollouts of expired artifacts (real registry, simulated boxes over MQTT)', () => {
  let dir: string;
  let cp: ControlPlane;
  let key: SigningKey;
  const boxes: SimulatedBox[] = [];

  /** publishes a model bundle (cpu, any class) that expires `inMs` from now; answers its artifact */
  async function publish(version: number, inMs: number): Promise<{ id: string; expires: number }> {
    const expires = Date.now() + inMs;
    const file = await modelBundle(dir, {
      name: 'detector',
      version,
      targets: [{ executionProvider: 'cpu', hardwareClass: 'any' }],
      key,
      expiresInDays: 1,
      now: new Date(expires - DAY_MS),
    });
    const res = await apiFetch(`${cp.httpUrl}/api/v1/artifacts`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: await readFile(file),
    });
    assert.equal(res.status, 201, await res.clone().text());
    return { id: ((await res.json()) as { artifact: { id: string } }).artifact.id, expires };
  }

  const post = (path: string, body: unknown) =>
    apiFetch(`${cp.httpUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const show = (id: string) => getJson<Detail>(`${cp.httpUrl}/api/v1/rollouts/${id}`);
  const until = (id: string, done: (d: Detail) => boolean, what: string) =>
    eventually(
      async () => {
        const d = await show(id);
        return done(d) ? d : undefined;
      },
      20_000,
      what,
    );

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-rollouts-expiry-'));
    await generateSigningKey('factory', join(dir, 'keys'));
    key = await loadSigningKey('factory', join(dir, 'keys'));
    cp = await startTestControlPlane({
      dir,
      config: {
        artifacts: { keyring: join(dir, 'keys', 'trusted') },
        rollouts: { tickS: 0.1, resendS: 30 },
      },
    });
    for (const id of ['box-1', 'box-2', 'box-3'])
      boxes.push(await SimulatedBox.connect(cp.mqttUrl, id, 'commit'));
    await eventually(
      async () => {
        const page = await getJson<{ devices: { identity: unknown }[] }>(`${cp.httpUrl}/api/v1/devices`);
        return page.devices.filter((d) => d.identity).length === 3 ? true : undefined;
      },
      10_000,
      'the boxes to send their identities',
    );
  });
  after(async () => {
    for (const b of boxes) await b.close();
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses to create a rollout of an artifact that has expired, saying when and what to do', async () => {
    const artifact = await publish(2, 3000);
    await new Promise((r) => setTimeout(r, Math.max(0, artifact.expires - Date.now()) + 100));
    const res = await post('/api/v1/rollouts', {
      name: 'detector v2',
      artifact: { kind: 'model', name: 'detector', version: 2 },
      target: { devices: ['box-1', 'box-2', 'box-3'] },
    });
    const body = (await res.json()) as { error: string; hint: string };
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.match(
      body.error,
      new RegExp(
        `cannot roll out an expired artifact: model detector v2 \\(artifact ${artifact.id.slice(0, 12)}…\\) expired on ${new Date(artifact.expires).toISOString().slice(0, 19)}`,
      ),
    );
    assert.match(body.hint, /higher version/);
    const list = await getJson<{ rollouts: unknown[] }>(`${cp.httpUrl}/api/v1/rollouts`);
    assert.deepEqual(list.rollouts, [], 'nothing was created');
    assert.equal(boxes.flatMap((b) => b.assignments).length, 0, 'no box was assigned anything');
  });

  it('an artifact that expires during the rollout is not assigned to the later waves: they fail `expired`, the rollout pauses', async () => {
    const artifact = await publish(3, 8000);
    const res = await post('/api/v1/rollouts', {
      name: 'detector v3',
      artifact: { kind: 'model', name: 'detector', version: 3 },
      target: { devices: ['box-1', 'box-2', 'box-3'] },
      waves: { canary: { devices: 1 }, rate: { kind: 'constant', share: 1 } },
      onSuccess: 'pause',
      success: { share: 1, healthS: 0 },
      error: { count: 1 },
    });
    assert.equal(res.status, 201, await res.clone().text());
    const { id } = (await res.json()) as Detail;
    // the canary commits well before the artifact expires (8 s); the rollout pauses after it (onSuccess)
    await until(
      id,
      (d) => d.state === 'paused' && d.waves[0]?.state === 'succeeded',
      'the canary to succeed',
    );
    await new Promise((r) => setTimeout(r, Math.max(0, artifact.expires - Date.now()) + 100));
    const resumed = await post(`/api/v1/rollouts/${id}/resume`, {});
    assert.equal(resumed.status, 200, await resumed.clone().text());
    const d = await until(
      id,
      (x) => x.state === 'paused' && x.waves[1]?.state === 'failed',
      'the second wave to fail and the rollout to pause',
    );
    assert.equal(d.failures.length, 2, JSON.stringify(d.failures));
    for (const f of d.failures) {
      assert.equal(f.state, 'failed');
      assert.match(
        f.reason ?? '',
        /^expired: model detector v3 .* expired on .*; publish a newly signed version/,
      );
    }
    assert.match(d.reason ?? '', /paused at wave 1: 2 of 2 devices failed/);
    // only the canary's box was ever sent the expired artifact's assignment
    const assigned = boxes.filter((b) => b.assignments.some((a) => a.artifact.id === artifact.id));
    assert.deepEqual(
      assigned.map((b) => b.device),
      ['box-1'],
    );
  });
});
