import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { createLogger } from '../../common/logger.ts';
import type { UpdateAssignment, UpdateState } from '../../contract/index.ts';
import { controlPlaneConfig, type StorageSettings } from '../../control-plane/config.ts';
import { DeviceHealth } from '../../control-plane/device-health.ts';
import { errorMet, RolloutEngine, successNeeds, tally } from '../../control-plane/rollouts/engine.ts';
import { RolloutRefused, Rollouts } from '../../control-plane/rollouts/service.ts';
import { planWaves, type RolloutRequest } from '../../control-plane/rollouts/spec.ts';
import { openRepository } from '../../control-plane/storage/open.ts';
import type { Repository } from '../../control-plane/storage/repository.ts';
import {
  FINAL_ROLLOUT_STATES,
  isFinal,
  type RolloutRow,
  type WaveRow,
} from '../../control-plane/storage/rollouts.ts';
import { PostgresServer } from '../helpers/postgres.ts';
import { CatalogueVariants, storeIdentities, updateStatus } from './rollout-setup.ts';

const log = createLogger('test');
const health = controlPlaneConfig({}).health;

type Behaviour = 'commit' | 'fail' | 'rollback' | 'silent';
const PATH: UpdateState[] = ['queued', 'downloading', 'verifying', 'installing', 'health'];

/** a box as the control plane sees it: answers each assignment along PATH, then its final state */
interface SimDevice {
  id: string;
  behaviour: Behaviour;
  /** per assignment: the statuses it sends, in order, and how far it got */
  work: Map<string, { args: UpdateAssignment; next: number; canceled: boolean }>;
}

interface World {
  repo: Repository;
  rollouts: Rollouts;
  engine: RolloutEngine;
  clock: { now: number };
  healthyShare: { value: number };
  devices: Map<string, SimDevice>;
  seqs: Map<string, number>;
}

async function world(storage: StorageSettings, devices: SimDevice[]): Promise<World> {
  const repo = await openRepository(storage);
  await storeIdentities(
    repo,
    devices.map((d) => d.id),
  );
  const clock = { now: Date.parse('2026-06-01T10:00:00Z') };
  const variants = new CatalogueVariants();
  const rollouts = new Rollouts(
    repo,
    () => variants,
    new DeviceHealth(repo.sql, health, () => clock.now),
    () => clock.now,
  );
  const byId = new Map(devices.map((d) => [d.id, d]));
  const healthyShare = { value: 1 };
  const engine = new RolloutEngine(
    rollouts.store,
    () => variants,
    async (device, name, args) => {
      const d = byId.get(device)!;
      if (name === 'update') {
        const a = args as unknown as UpdateAssignment;
        if (!d.work.has(a.assignment)) d.work.set(a.assignment, { args: a, next: 0, canceled: false });
      } else {
        const w = d.work.get((args as { assignment: string }).assignment);
        if (w) w.canceled = true;
      }
    },
    // the devices the control plane sees healthy: a share of those asked, by id
    async (ids) => new Set(ids.filter((_, i) => i < Math.round(ids.length * healthyShare.value))),
    (ids) => rollouts.traits(ids),
    { resendS: 60, maxSendsPerTick: 1000 },
    log,
    () => clock.now,
  );
  return { repo, rollouts, engine, clock, healthyShare, devices: byId, seqs: new Map() };
}

/** each device moves its assignments 0–2 steps on, sometimes sending a status twice or an older one late */
async function devicesAct(w: World, rnd: () => number): Promise<void> {
  const records = [];
  for (const d of w.devices.values()) {
    for (const [id, work] of d.work) {
      if (d.behaviour === 'silent') continue;
      const steps = Math.floor(rnd() * 3);
      for (let s = 0; s < steps; s++) {
        if (work.next > PATH.length) break;
        let state: UpdateState;
        if (work.canceled && work.next < 3) state = 'canceled';
        else if (work.next < PATH.length) state = PATH[work.next]!;
        else
          state =
            work.args.assignment.endsWith('-rb') || d.behaviour === 'commit'
              ? 'committed'
              : d.behaviour === 'fail'
                ? 'failed'
                : 'rolled-back';
        const seq = work.next;
        work.next = state === 'canceled' ? PATH.length + 1 : work.next + 1;
        const message = updateStatus(
          { device: d.id, assignment: id, rollout: work.args.rollout, artifact: work.args.artifact },
          seq,
          state,
          state === 'failed' ? 'shadow agreement 0.41 below 0.8' : undefined,
        );
        const record = { device: d.id, message, payload: JSON.stringify(message), receivedAt: w.clock.now };
        records.push(record);
        if (rnd() < 0.2) records.push(record); // QoS 1 redelivery
      }
    }
  }
  // a late, older status now and then: swap neighbours
  for (let i = 1; i < records.length; i++)
    if (rnd() < 0.2) [records[i - 1], records[i]] = [records[i]!, records[i - 1]!];
  await w.rollouts.store.applyStatuses(records);
}

async function checkInvariants(w: World, before: Map<string, { r: RolloutRow; waves: WaveRow[] }>) {
  const sql = w.repo.sql;
  const doubled = await sql.read(
    `SELECT device, artifact_kind FROM rollout_assignments WHERE active = 1 GROUP BY device, artifact_kind HAVING count(*) > 1`,
  );
  assert.deepEqual(doubled, [], 'one active assignment per device and kind');
  const twoWaves = await sql.read(
    `SELECT rollout, device FROM rollout_assignments WHERE purpose = 'install' GROUP BY rollout, device HAVING count(DISTINCT wave) > 1 OR count(*) > 1`,
  );
  assert.deepEqual(twoWaves, [], 'no device in two waves');
  for (const r of await w.rollouts.store.list({ limit: 100 })) {
    const waves = await w.rollouts.store.waves(r.id);
    const sent = await sql.read<{ wave: number }>(
      `SELECT wave FROM rollout_assignments WHERE rollout = ${sql.p(1)} AND purpose = 'install' AND sent_at IS NOT NULL`,
      [r.id],
    );
    for (const s of sent) {
      assert.ok(Number(s.wave) <= r.currentWave, `rollout ${r.id}: wave ${s.wave} sent before it started`);
      assert.notEqual(waves[Number(s.wave)]!.state, 'pending', 'a sent assignment belongs to a started wave');
    }
    const prior = before.get(r.id);
    for (const wave of waves) {
      const states = (await w.rollouts.store.assignments(r.id, { wave: wave.index, purpose: 'install' })).map(
        (a) => a.state,
      );
      const t = tally(wave.size, states);
      const was = prior?.waves[wave.index]?.state;
      if (wave.state === 'succeeded' && was !== 'succeeded')
        assert.ok(
          t.committed >= successNeeds(r.spec, wave.size),
          `wave ${wave.index} succeeded with ${t.committed} committed`,
        );
      if (wave.state === 'failed' && was !== 'failed')
        assert.ok(
          errorMet(r.spec, t) !== undefined || t.final === wave.size || r.spec.success.healthS > 0,
          `wave ${wave.index} failed without its error condition: ${JSON.stringify(t)}`,
        );
      if (
        r.state === 'running' &&
        wave.index === r.currentWave &&
        (wave.state === 'running' || wave.state === 'health')
      )
        assert.equal(errorMet(r.spec, t), undefined, `running wave ${wave.index} past its error condition`);
    }
    // a wave after the first starts only once the one before succeeded (or failed and an operator resumed)
    for (const wave of waves)
      if (wave.index > 0 && wave.state !== 'pending' && wave.state !== 'canceled')
        assert.ok(
          ['succeeded', 'failed'].includes(waves[wave.index - 1]!.state),
          `wave ${wave.index} started while wave ${wave.index - 1} was ${waves[wave.index - 1]!.state}`,
        );
    // nothing new is sent for a rollout that was not running when the tick began
    if (prior && prior.r.state !== 'running') {
      const newlySent = await sql.read(
        `SELECT id FROM rollout_assignments WHERE rollout = ${sql.p(1)} AND purpose = 'install' AND sent_at = ${sql.p(2)}`,
        [r.id, w.clock.now],
      );
      assert.deepEqual(newlySent, [], `rollout ${r.id} sent while ${prior.r.state}`);
    }
  }
}

async function snapshot(w: World) {
  const out = new Map<string, { r: RolloutRow; waves: WaveRow[] }>();
  for (const r of await w.rollouts.store.list({ limit: 100 }))
    out.set(r.id, { r, waves: await w.rollouts.store.waves(r.id) });
  return out;
}

const specArb = fc.record({
  canary: fc.oneof(
    fc.constant(undefined),
    fc.record({ devices: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ percent: fc.integer({ min: 5, max: 50 }) }),
  ),
  rate: fc.oneof(
    fc.record({
      kind: fc.constant('constant' as const),
      share: fc.double({ min: 0.1, max: 1, noNaN: true }),
    }),
    fc.record({
      kind: fc.constant('exponential' as const),
      first: fc.double({ min: 0.05, max: 0.5, noNaN: true }),
      factor: fc.double({ min: 1, max: 3, noNaN: true }),
    }),
  ),
  successShare: fc.double({ min: 0, max: 1, noNaN: true }),
  healthS: fc.constantFrom(0, 0, 30),
  error: fc.oneof(
    fc.record({ share: fc.double({ min: 0, max: 1, noNaN: true }) }),
    fc.record({ count: fc.integer({ min: 1, max: 5 }) }),
    fc.record({ share: fc.double({ min: 0.1, max: 1, noNaN: true }), count: fc.integer({ min: 1, max: 5 }) }),
  ),
  onError: fc.constantFrom('pause' as const, 'abort' as const),
  onSuccess: fc.constantFrom('next' as const, 'next' as const, 'pause' as const),
});

const behaviourArb = fc.constantFrom<Behaviour>('commit', 'commit', 'commit', 'fail', 'rollback', 'silent');

async function property(storageOf: (run: number) => Promise<StorageSettings>, numRuns: number) {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(behaviourArb, { minLength: 1, maxLength: 14 }),
      specArb,
      fc.array(fc.constantFrom('none', 'none', 'none', 'pause', 'resume', 'cancel', 'abort', 'second'), {
        minLength: 30,
        maxLength: 30,
      }),
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      async (behaviours, s, operator, seed) => {
        let state = seed;
        const rnd = () => {
          state = (state * 1103515245 + 12345) % 2 ** 31;
          return state / 2 ** 31;
        };
        const storage = await storageOf(run++);
        const devices: SimDevice[] = behaviours.map((behaviour, i) => ({
          id: `box-${String(i).padStart(2, '0')}`,
          behaviour,
          work: new Map(),
        }));
        const w = await world(storage, devices);
        try {
          const request: Partial<RolloutRequest> & Record<string, unknown> = {
            name: 'property',
            artifact: { kind: 'model', name: 'detector', version: 2 },
            target: { devices: devices.map((d) => d.id) },
            waves: { ...(s.canary ? { canary: s.canary } : {}), rate: s.rate },
            success: { share: s.successShare, healthS: s.healthS },
            error: s.error,
            onError: s.onError,
            onSuccess: s.onSuccess,
            deviceTimeoutS: 600,
          };
          const first = await w.rollouts.create(request, 'tester');
          for (const op of operator) {
            const r = (await w.rollouts.store.get(first.id))!;
            try {
              if (op === 'pause') await w.rollouts.pause(r.id, 'op');
              if (op === 'resume') await w.rollouts.resume(r.id, 'op');
              if (op === 'cancel') await w.rollouts.cancel(r.id, 'op');
              if (op === 'abort') await w.rollouts.cancel(r.id, 'op', true);
              if (op === 'second') {
                const second = await w.rollouts.create(
                  { ...request, name: 'second', artifact: { kind: 'model', name: 'detector', version: 3 } },
                  'op',
                );
                // refused unless every device of the first is free again
                const active = await w.rollouts.store.activeElsewhere(
                  devices.map((d) => d.id),
                  'model',
                );
                assert.ok(
                  [...active.values()].every((id) => id === second.id),
                  'the second rollout took free devices only',
                );
              }
            } catch (err) {
              if (!(err instanceof RolloutRefused)) throw err;
              if (op === 'second') assert.equal(err.statusCode, 409);
            }
            w.clock.now += Math.floor(rnd() * 200_000);
            w.healthyShare.value = rnd() < 0.8 ? 1 : rnd();
            await devicesAct(w, rnd);
            const mid = await snapshot(w);
            await w.engine.tick();
            await checkInvariants(w, mid);
          }
          // the end: operators cancel what is left; devices go silent; deadlines pass
          for (const r of await w.rollouts.store.list({ limit: 100 }))
            if (!FINAL_ROLLOUT_STATES.includes(r.state)) await w.rollouts.cancel(r.id, 'op');
          for (let i = 0; i < 4; i++) {
            await w.engine.tick();
            w.clock.now += 601_000;
          }
          await w.engine.tick();
          const open = await w.repo.sql.read<{ id: string; state: string }>(
            'SELECT id, state FROM rollout_assignments WHERE active = 1',
          );
          assert.deepEqual(open, [], 'no active assignment is left');
          const all = await w.repo.sql.read<{ state: string }>('SELECT state FROM rollout_assignments');
          assert.ok(
            all.every((a) => isFinal(a.state as UpdateState)),
            'every assignment is final',
          );
        } finally {
          await w.repo.close();
        }
      },
    ),
    { numRuns },
  );
}

describe('rollout engine (real SQLite and PostgreSQL repositories, simulated device answers)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-rollout-engine-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('plans waves that cover every device once, each at least one device', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), specArb, (total, s) => {
        const sizes = planWaves(total, { ...(s.canary ? { canary: s.canary } : {}), rate: s.rate });
        assert.equal(
          sizes.reduce((a, b) => a + b, 0),
          total,
        );
        assert.ok(sizes.every((n) => n >= 1));
        assert.ok(sizes.length <= 50);
      }),
    );
  });

  it('on SQLite, whatever devices answer and operators do: conditions hold, one active rollout per device and kind, every device ends final', async () => {
    await property(async (run) => {
      const runDir = join(dir, `run-${run}`);
      await mkdir(runDir, { recursive: true });
      return { kind: 'sqlite', sqlite: { path: join(runDir, 'argus.db'), synchronous: 'normal' } };
    }, 20);
  });

  it('on PostgreSQL, the same', async () => {
    const pg = await PostgresServer.start({ fsync: false });
    try {
      await property(
        async (run) =>
          ({
            kind: 'postgres',
            postgres: { url: await pg.createDatabase(`rollouts_${run}`) },
          }) as StorageSettings,
        8,
      );
    } finally {
      await pg.stop();
    }
  });
});
