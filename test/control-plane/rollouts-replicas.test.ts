import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ControlPlane } from '../../control-plane/index.ts';
import { LeaseStore } from '../../control-plane/storage/leases.ts';
import { eventually } from '../helpers/eventually.ts';
import { PostgresServer } from '../helpers/postgres.ts';
import { CatalogueVariants, storeIdentities } from './rollout-setup.ts';
import { apiFetch, startTestControlPlane, TEST_DEVICES } from './setup.ts';

describe('two control-plane replicas on one PostgreSQL database', () => {
  let dir: string;
  let pg: PostgresServer;
  const replicas: ControlPlane[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-rollout-replicas-'));
    pg = await PostgresServer.start({ fsync: false });
    const url = await pg.createDatabase('replicas');
    for (let i = 0; i < 2; i++)
      replicas.push(
        await startTestControlPlane({
          dir,
          postgresUrl: url,
          config: { rollouts: { tickS: 0.05, resendS: 3600 } },
          parts: { artifacts: new CatalogueVariants() },
        }),
      );
  });
  after(async () => {
    for (const cp of replicas) await cp.close();
    await pg?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('never send an assignment twice: the lease holder drives, and every step is a guarded write', async () => {
    const [a, b] = replicas as [ControlPlane, ControlPlane];
    await storeIdentities(a.repository, TEST_DEVICES);
    const res = await apiFetch(`${b.httpUrl}/api/v1/rollouts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'both replicas',
        artifact: { kind: 'model', name: 'detector', version: 2 },
        target: { devices: TEST_DEVICES },
        waves: { canary: { devices: 2 }, rate: { kind: 'constant', share: 1 } },
        success: { share: 0 },
      }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    const sql = a.repository.sql;
    // success share 0: every wave succeeds at once, so the engine sends to every device quickly
    await eventually(
      async () => {
        const rows = await sql.read<{ n: number | string }>(
          "SELECT count(*) AS n FROM rollout_assignments WHERE state = 'sent'",
        );
        return Number(rows[0]!.n) === TEST_DEVICES.length ? true : undefined;
      },
      20_000,
      'every assignment sent',
    );
    // ticks of both replicas go on meanwhile (every 50 ms)
    await new Promise((r) => setTimeout(r, 1000));
    const commands = await sql.read<{ args: string }>("SELECT args FROM commands WHERE name = 'update'");
    const perAssignment = new Map<string, number>();
    for (const c of commands) {
      const id = (JSON.parse(c.args) as { assignment: string }).assignment;
      perAssignment.set(id, (perAssignment.get(id) ?? 0) + 1);
    }
    assert.equal(perAssignment.size, TEST_DEVICES.length);
    assert.ok(
      [...perAssignment.values()].every((n) => n === 1),
      `each assignment published once: ${JSON.stringify([...perAssignment])}`,
    );
    assert.ok(await new LeaseStore(sql).holder('rollouts'), 'one replica holds the rollouts lease');
  });
});
