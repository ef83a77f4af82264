import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../common/logger.ts';
import { openRepository } from '../../control-plane/index.ts';
import { LeasedJob } from '../../control-plane/leased-job.ts';
import { LeaseStore } from '../../control-plane/storage/leases.ts';
import type { Repository } from '../../control-plane/storage/repository.ts';
import { eventually } from '../helpers/eventually.ts';
import { PostgresServer } from '../helpers/postgres.ts';

const T0 = 1_800_000_000_000;
const log = createLogger('lease-test');

/** two repositories (two replicas) on one database compete for the same leases */
function leaseSuite(name: string, open: () => Promise<Repository>): void {
  describe(`leases (${name})`, () => {
    let a: Repository;
    let b: Repository;
    let la: LeaseStore;
    let lb: LeaseStore;
    before(async () => {
      a = await open();
      b = await open();
      la = new LeaseStore(a.sql);
      lb = new LeaseStore(b.sql);
    });
    after(async () => {
      await a?.close();
      await b?.close();
    });

    it('is held by one replica at a time, renewed by it, and lost when it stops renewing', async () => {
      assert.equal(await la.take('job', 'A', 1000, T0), true);
      assert.equal(await lb.take('job', 'B', 1000, T0 + 10), false);
      assert.equal(await la.take('job', 'A', 1000, T0 + 900), true, 'the holder renews');
      assert.equal(await lb.take('job', 'B', 1000, T0 + 1500), false, 'renewed until T0 + 1900');
      assert.equal(await lb.holder('job', T0 + 1500), 'A');
      // A stops renewing: once its lease expired, B takes it and A cannot renew any more
      assert.equal(await lb.take('job', 'B', 1000, T0 + 1900), true);
      assert.equal(await la.take('job', 'A', 1000, T0 + 1950), false);
      assert.equal(await la.holder('job', T0 + 1950), 'B');
      // a release by the one not holding it changes nothing; by the holder it frees the lease
      await la.release('job', 'A');
      assert.equal(await la.holder('job', T0 + 2000), 'B');
      await lb.release('job', 'B');
      assert.equal(await la.holder('job', T0 + 2000), undefined);
      assert.equal(await la.take('job', 'A', 1000, T0 + 2000), true);
      // leases of other names are independent
      assert.equal(await lb.take('other', 'B', 1000, T0 + 2000), true);
    });

    it('goes to exactly one of many replicas racing for it at the same moment', async () => {
      for (let round = 0; round < 5; round++) {
        const at = T0 + 100_000 * (round + 1);
        const holders = Array.from({ length: 16 }, (_, i) => `r${round}-${i}`);
        const got = await Promise.all(
          holders.map((h, i) => (i % 2 === 0 ? la : lb).take('race', h, 50_000, at)),
        );
        assert.equal(got.filter(Boolean).length, 1, `round ${round}: ${got}`);
        assert.equal(await la.holder('race', at), holders[got.indexOf(true)]);
      }
    });

    it('runs a leased job on one replica; the other takes over when the holder stops', async () => {
      const runs: string[] = [];
      const job = (holder: string) =>
        new LeasedJob(
          holder === 'A' ? la : lb,
          { name: 'periodic', holder, ttlMs: 600, intervalMs: 50 },
          async () => {
            runs.push(holder);
          },
          log,
        );
      const ja = job('A');
      ja.start();
      await eventually(async () => (runs.length >= 2 ? true : undefined), 5000, 'runs by A');
      const jb = job('B');
      jb.start();
      await new Promise((r) => setTimeout(r, 400));
      assert.ok(!runs.includes('B'), 'B waits while A renews');
      assert.equal(ja.held, true);
      assert.equal(jb.held, false);
      await ja.stop(); // releases the lease: B takes it at its next renewal
      const ranByA = runs.length;
      await eventually(async () => (runs.slice(ranByA).includes('B') ? true : undefined), 5000, 'a run by B');
      assert.ok(runs.slice(ranByA).every((h) => h === 'B'));
      await jb.stop();
    });

    it('runs a poked job soon on its holder, once for a burst of pokes, and not on another replica', async () => {
      const runs: { holder: string; at: number }[] = [];
      let release: (() => void) | undefined;
      const job = (holder: string) =>
        new LeasedJob(
          holder === 'A' ? la : lb,
          // an interval no test waits for: every run after the first is a poke's
          { name: 'poked', holder, ttlMs: 30_000, intervalMs: 3_600_000 },
          async () => {
            runs.push({ holder, at: performance.now() });
            if (runs.length === 2) await new Promise<void>((r) => (release = r));
          },
          log,
        );
      const ja = job('A');
      const jb = job('B');
      ja.start();
      await eventually(async () => (runs.length === 1 && ja.held ? true : undefined), 5000, 'the first run');
      jb.start();
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(jb.held, false);
      jb.poke();
      const poked = performance.now();
      for (let i = 0; i < 50; i++) ja.poke();
      await eventually(async () => (runs.length === 2 ? true : undefined), 5000, 'the poked run');
      assert.ok(runs[1]!.at - poked < 1000, `ran ${Math.round(runs[1]!.at - poked)} ms after the pokes`);
      // poked while it runs: one more run right after this one, however many pokes
      for (let i = 0; i < 20; i++) ja.poke();
      release!();
      await eventually(async () => (runs.length === 3 ? true : undefined), 5000, 'the run after the run');
      await new Promise((r) => setTimeout(r, 400));
      assert.deepEqual(
        runs.map((r) => r.holder),
        ['A', 'A', 'A'],
        'a burst of pokes is one run; the replica without the lease never runs',
      );
      await ja.stop();
      await jb.stop();
    });

    it('is lost by a holder that cannot renew it (its database link broke), and taken over', async () => {
      const c = await open(); // a third replica, whose database link breaks while it holds a lease
      const runs: string[] = [];
      const job = (store: LeaseStore, holder: string) =>
        new LeasedJob(
          store,
          { name: 'fragile', holder, ttlMs: 900, intervalMs: 50 },
          async () => {
            runs.push(holder);
          },
          log,
        );
      const jc = job(new LeaseStore(c.sql), 'C');
      jc.start();
      await eventually(async () => (jc.held ? true : undefined), 5000, 'C holding the lease');
      const jb = job(lb, 'B');
      jb.start();
      await c.close(); // C can no longer renew
      await eventually(async () => (!jc.held ? true : undefined), 5000, 'C counting itself out');
      const ranByC = runs.length;
      await eventually(async () => (jb.held ? true : undefined), 5000, 'B taking over');
      await eventually(async () => (runs.slice(ranByC).includes('B') ? true : undefined), 5000, 'a run by B');
      assert.ok(
        runs.slice(ranByC).every((h) => h === 'B'),
        'C runs no more',
      );
      await jb.stop();
      await jc.stop();
    });
  });
}

let dir: string;
let pg: PostgresServer;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'argus-leases-'));
  pg = await PostgresServer.start({ fsync: false });
});
after(async () => {
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
});

leaseSuite('sqlite', () =>
  openRepository({ kind: 'sqlite', sqlite: { path: join(dir, 'argus.db'), synchronous: 'normal' } }),
);
let pgUrl: Promise<string> | undefined;
leaseSuite('postgres', async () => {
  pgUrl ??= pg.createDatabase('argus_leases');
  return openRepository({ kind: 'postgres', postgres: { url: await pgUrl, poolSize: 4 } });
});
