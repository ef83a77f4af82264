import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { startControlPlaneProcess } from '../helpers/control-plane-process.ts';
import { eventually } from '../helpers/eventually.ts';
import { apiFetch, createAdminTokenInFile, getJson, TEST_DEVICES, tokenOf, useToken } from './setup.ts';
import { SimulatedBox } from './sim-device.ts';

/** the control plane with the test's artifact catalogue */
const CP_SCRIPT = resolve(import.meta.dirname, 'rollout-cp-process.ts');

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  server.close();
  await once(server, 'close');
  return port;
}

interface Detail {
  state: string;
  currentWave: number;
  waves: { state: string; counts: Record<string, number> }[];
  counts: Record<string, number>;
}

/** what the database holds of a rollout: its state, wave and each assignment's state and seq */
function dbState(file: string) {
  const db = new Database(file, { readonly: true });
  try {
    return {
      rollout: db.prepare('SELECT state, current_wave FROM rollouts').get(),
      waves: db.prepare('SELECT idx, state FROM rollout_waves ORDER BY idx').all(),
      assignments: db
        .prepare('SELECT id, device, wave, state, seq FROM rollout_assignments ORDER BY device')
        .all(),
    };
  } finally {
    db.close();
  }
}

describe('control plane SIGKILLed in the middle of a rollout', () => {
  let dir: string;
  let child: ChildProcess | undefined;
  const boxes: SimulatedBox[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-rollout-kill-'));
  });
  after(async () => {
    child?.kill('SIGKILL');
    for (const b of boxes) await b.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('resumes in the same state after the restart and completes: no wave again, no assignment twice', async () => {
    const mqttPort = await freePort();
    const config = join(dir, 'cp.yaml');
    await writeFile(
      config,
      [
        'http: { port: 0 }',
        `mqtt: { embedded: { port: ${mqttPort} } }`,
        'storage: { sqlite: { path: argus.db, synchronous: normal } }',
        'rollouts: { tickS: 0.2, resendS: 2 }',
        // the killed process's lease runs out after this (30 s by default)
        'leases: { ttlS: 5 }',
        'devices:',
        ...TEST_DEVICES.map((id) => `  - { id: ${id}, token: ${tokenOf(id)} }`),
        '',
      ].join('\n'),
    );
    const db = join(dir, 'argus.db');
    const token = await createAdminTokenInFile(db);
    let cp = await startControlPlaneProcess(config, { script: CP_SCRIPT });
    child = cp.child;
    useToken(cp.httpUrl, token);
    const url = `mqtt://127.0.0.1:${mqttPort}`;
    // slow boxes (about 2 s an assignment) that reconnect by themselves after the kill
    for (const id of ['box-1', 'box-2', 'box-3', 'box-4'])
      boxes.push(await SimulatedBox.connect(url, id, 'commit', 350, { reconnectPeriod: 300 }));
    await eventually(
      async () => {
        const page = await getJson<{ devices: { identity: unknown }[] }>(`${cp.httpUrl}/api/v1/devices`);
        return page.devices.filter((d) => d.identity).length === 4 ? true : undefined;
      },
      10_000,
      'the identities',
    );
    const res = await apiFetch(`${cp.httpUrl}/api/v1/rollouts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'kill me',
        artifact: { kind: 'model', name: 'detector', version: 2 },
        target: { devices: ['box-1', 'box-2', 'box-3', 'box-4'] },
        waves: { canary: { devices: 1 }, rate: { kind: 'constant', share: 1 } },
      }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    const { id } = (await res.json()) as { id: string };
    // kill once the canary committed and the second wave is under way
    await eventually(
      async () => {
        const d = await getJson<Detail>(`${cp.httpUrl}/api/v1/rollouts/${id}`);
        const second = d.waves[1]!.counts;
        return d.currentWave === 1 &&
          (second.downloading ?? 0) + (second.verifying ?? 0) + (second.queued ?? 0) > 0
          ? true
          : undefined;
      },
      20_000,
      'the second wave under way',
    );
    cp.child.kill('SIGKILL');
    await once(cp.child, 'exit');
    const atKill = dbState(db);
    assert.equal((atKill.rollout as { state: string }).state, 'running');
    cp = await startControlPlaneProcess(config, { script: CP_SCRIPT });
    child = cp.child;
    useToken(cp.httpUrl, token);
    // right after the restart the API answers what the database held at the kill
    const first = await getJson<Detail>(`${cp.httpUrl}/api/v1/rollouts/${id}`);
    assert.equal(first.currentWave, (atKill.rollout as { current_wave: number }).current_wave);
    assert.equal(first.waves[0]!.state, 'succeeded');
    // the lease of the killed process runs out (5 s), then this one drives the rollout to its end
    const done = await eventually(
      async () => {
        const d = await getJson<Detail>(`${cp.httpUrl}/api/v1/rollouts/${id}`);
        if (d.state !== 'completed') throw new Error(JSON.stringify({ state: d.state, waves: d.waves }));
        return d;
      },
      90_000,
      'the rollout to complete after the restart',
    );
    assert.equal(done.counts.committed, 4);
    const end = dbState(db);
    assert.deepEqual(
      (end.assignments as { id: string }[]).map((a) => a.id),
      (atKill.assignments as { id: string }[]).map((a) => a.id),
      'the same assignments: none made again',
    );
    for (const b of boxes) {
      const ids = new Set(b.assignments.map((a) => a.assignment));
      assert.equal(ids.size, 1, `${b.device} worked on one assignment`);
    }
    cp.child.kill('SIGTERM');
    const [code] = await once(cp.child, 'exit');
    assert.equal(code, 0);
    child = undefined;
  });
});
