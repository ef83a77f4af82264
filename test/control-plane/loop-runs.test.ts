import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ControlPlane } from '../../control-plane/index.ts';
import { LoopRunStore } from '../../control-plane/loop/store.ts';
import { ApiTokens } from '../../control-plane/storage/api-tokens.ts';
import { AuditLog } from '../../control-plane/storage/audit.ts';
import { PostgresServer } from '../helpers/postgres.ts';
import { apiFetch, startTestControlPlane } from './setup.ts';

let pg: PostgresServer;
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'argus-loop-runs-'));
  pg = await PostgresServer.start({ fsync: false });
});
after(async () => {
  await pg?.stop();
  await rm(dir, { recursive: true, force: true });
});

interface RunView {
  id: string;
  site: string;
  state: string;
  step: string | null;
  progress: number;
  cancelRequested: boolean;
  reason: string | null;
  artifact: string | null;
  passed: boolean | null;
}

function suite(name: 'sqlite' | 'postgres'): void {
  describe(`loop runs (${name})`, () => {
    let cp: ControlPlane;
    let runs: LoopRunStore;
    const api = (path: string, init: RequestInit = {}) =>
      apiFetch(`${cp.httpUrl}${path}`, {
        ...init,
        headers: {
          ...(init.body ? { 'content-type': 'application/json' } : {}),
          ...(init.headers as Record<string, string>),
        },
      });
    const create = (site: string, headers: Record<string, string> = {}) =>
      api('/api/v1/loop/runs', { method: 'POST', body: JSON.stringify({ site }), headers });

    before(async () => {
      cp = await startTestControlPlane({
        dir: join(dir, name),
        ...(name === 'postgres' ? { postgresUrl: await pg.createDatabase('argus_loop_runs') } : {}),
      });
      runs = new LoopRunStore(cp.repository.sql);
    });
    after(() => cp?.close());

    it('queues one run per site at a time, audited; viewers list and read, only operators create and cancel', async () => {
      const res = await create('north');
      assert.equal(res.status, 201, await res.clone().text());
      const run = (await res.json()) as RunView;
      assert.deepEqual(
        { site: run.site, state: run.state, step: run.step, progress: run.progress },
        { site: 'north', state: 'queued', step: null, progress: 0 },
      );
      const again = await create('north');
      assert.equal(again.status, 409);
      assert.match(((await again.json()) as { error: string }).error, new RegExp(run.id));
      assert.equal((await create('south')).status, 201);
      assert.equal((await create('bad site!')).status, 400);

      const viewer = (await new ApiTokens(cp.repository.sql).create('watcher', 'viewer', 'tests')).secret;
      const asViewer = { authorization: `Bearer ${viewer}` };
      assert.equal((await create('east', asViewer)).status, 403);
      assert.equal(
        (await api(`/api/v1/loop/runs/${run.id}/cancel`, { method: 'POST', headers: asViewer })).status,
        403,
      );
      assert.equal((await api(`/api/v1/loop/runs/${run.id}`, { headers: asViewer })).status, 200);
      const page = (await (await api('/api/v1/loop/runs?limit=1', { headers: asViewer })).json()) as {
        runs: RunView[];
        nextCursor: string | null;
      };
      assert.equal(page.runs[0]?.site, 'south', 'newest first');
      const rest = (await (
        await api(`/api/v1/loop/runs?limit=5&cursor=${page.nextCursor}`)
      ).json()) as typeof page;
      assert.deepEqual(
        rest.runs.map((r) => r.site),
        ['north'],
      );
      const entries = await new AuditLog(cp.repository.sql).query({
        action: 'POST /api/v1/loop/runs',
        limit: 10,
      });
      assert.ok(entries.length >= 3, 'creations are audited, refused ones too');
      const handled = entries.filter((e) => e.status === 201 || e.status === 409);
      assert.equal(handled.length, 3, 'two runs created, one refused as the site has one');
      for (const e of handled)
        assert.match(e.params.site ?? '', /^(north|south)$/, 'each entry names its site');
      const created = entries.filter((e) => e.status === 201);
      assert.ok(
        created.length >= 2 && created.every((e) => /./.test(e.params.run ?? '')),
        'a created run names its id',
      );
    });

    it('a worker takes the oldest run, records its progress, learns of a cancellation and ends it; a queued run cancels at once', async () => {
      const north = (await runs.activeFor('north'))!;
      assert.equal((await runs.nextRunnable())?.id, north.id);
      assert.equal(await runs.start(north.id, 'worker-a'), true);
      assert.deepEqual(await runs.progress(north.id, 'worker-a', 'teacher', 0.5, 'labelling'), {
        cancelRequested: false,
      });
      assert.equal(await runs.progress(north.id, 'worker-b', 'teacher', 0.6, 'not mine'), undefined);
      const cancel = await api(`/api/v1/loop/runs/${north.id}/cancel`, { method: 'POST' });
      assert.equal(cancel.status, 200);
      assert.equal(((await cancel.json()) as RunView).cancelRequested, true);
      assert.equal(await runs.cancelRequested(north.id, 'worker-a'), true);
      assert.equal(
        await runs.finish(north.id, 'worker-a', { state: 'cancelled', reason: 'cancelled while running' }),
        true,
      );
      const ended = (await (await api(`/api/v1/loop/runs/${north.id}`)).json()) as RunView;
      assert.deepEqual(
        { state: ended.state, step: ended.step, progress: ended.progress, reason: ended.reason },
        { state: 'cancelled', step: 'teacher', progress: 0.5, reason: 'cancelled while running' },
      );
      assert.equal((await api(`/api/v1/loop/runs/${north.id}/cancel`, { method: 'POST' })).status, 409);

      const south = (await runs.activeFor('south'))!;
      const cancelled = (await (
        await api(`/api/v1/loop/runs/${south.id}/cancel`, { method: 'POST' })
      ).json()) as RunView;
      assert.equal(cancelled.state, 'cancelled');
      assert.equal(await runs.start(south.id, 'worker-a'), false, 'a cancelled run does not start');
      assert.equal((await create('north')).status, 201, 'a new run once the last ended');
    });

    it('a run given back (interrupted) is queued again and taken on by the next worker; a finished run keeps its candidate', async () => {
      const run = (await runs.activeFor('north'))!;
      assert.equal(await runs.start(run.id, 'worker-a'), true);
      await runs.requeue(run.id, 'worker-a', 'interrupted: queued to resume');
      assert.equal((await runs.get(run.id))?.state, 'queued');
      assert.equal(await runs.start(run.id, 'worker-b'), true);
      assert.equal(await runs.finish(run.id, 'worker-a', { state: 'failed', reason: 'not mine' }), false);
      assert.equal(
        await runs.finish(run.id, 'worker-b', {
          state: 'succeeded',
          passed: true,
          artifact: 'a'.repeat(64),
          report: { x: 1 },
        }),
        true,
      );
      const done = (await runs.get(run.id))!;
      assert.deepEqual(
        {
          state: done.state,
          passed: done.passed,
          artifact: done.artifact,
          report: done.report,
          holder: done.holder,
        },
        { state: 'succeeded', passed: true, artifact: 'a'.repeat(64), report: { x: 1 }, holder: 'worker-b' },
      );
      assert.equal(await runs.nextRunnable(), undefined);
    });
  });
}

suite('sqlite');
suite('postgres');
