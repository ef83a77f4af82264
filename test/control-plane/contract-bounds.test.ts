import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { topics, validators } from '../../contract/index.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import { decodeMessage } from '../../control-plane/ingest/decode.ts';
import { PostgresServer } from '../helpers/postgres.ts';
import { hostileMessage, KINDS, type Kind } from './hostile-values.ts';
import { getJson, startTestControlPlane } from './setup.ts';

/**
 * Every value of the contract is bounded: whatever passes a topic kind's schema survives
 * JSON.stringify/parse unchanged and goes through the repository and out of the API as it came.
 */

const SEED = 1_412_026;
const RUNS = 80;

const TOPIC: Record<Kind, (device: string) => string> = {
  events: topics.events,
  status: topics.status,
  telemetry: topics.telemetry,
  identity: topics.identity,
  available: topics.available,
  cmd_result: topics.commandResult,
};

/** the value as JSON gives it back (−0 becomes 0) */
const viaJson = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;

for (const storage of ['sqlite', 'postgres'] as const) {
  describe(`values that pass the contract round-trip (${storage})`, () => {
    let dir: string;
    let pg: PostgresServer | undefined;
    let cp: ControlPlane;
    let n = 0;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), `argus-bounds-${storage}-`));
      if (storage === 'postgres') pg = await PostgresServer.start({ fsync: false });
      cp = await startTestControlPlane({
        dir,
        ...(pg ? { postgresUrl: await pg.createDatabase('argus_bounds') } : {}),
      });
    });
    after(async () => {
      await cp?.close();
      await pg?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    for (const kind of Object.keys(KINDS) as Kind[])
      it(`${kind}: through JSON, the repository and the API (fast-check seed ${SEED})`, async () => {
        let passed = 0;
        await fc.assert(
          fc.asyncProperty(hostileMessage(kind, 'device'), fc.context(), async (generated, ctx) => {
            // a device of its own per run, so that each run reads back only its own message
            const device = `bounds-${++n}`;
            const message =
              kind === 'available' ? generated : { ...(generated as Record<string, unknown>), device };
            // a command id of its own too (a command belongs to one device)
            const g = message as Record<string, unknown>;
            if (kind === 'cmd_result' && g.id === 'cmd-00000001') g.id = `cmd-${device}`;
            if (!validators[kind].check(message)) return;
            passed++;
            const text = JSON.stringify(message);
            ctx.log(text.slice(0, 500));
            assert.equal(JSON.stringify(JSON.parse(text)), text, 'JSON gives the same text back');
            const decoded = decodeMessage(TOPIC[kind](device), Buffer.from(text), Date.now(), 32);
            if (decoded.ok !== true) {
              // a value can pass the schema and still be over the payload's size or depth
              assert.ok(decoded.ok === false && ['oversized', 'too_deep'].includes(decoded.reason));
              return;
            }
            const m = message as Record<string, unknown>;
            if (kind === 'cmd_result')
              await cp.repository.createCommand({
                id: m.id as string,
                device,
                name: 'snapshot',
                args: {},
                issuedAt: 0,
                result: null,
                resultAt: null,
              });
            const outcome = await cp.repository.writeBatch([decoded.record]);
            assert.deepEqual(outcome.conflicts, []);
            assert.deepEqual(outcome.unknownResults, []);
            const expected = viaJson(message);
            if (kind === 'events') {
              const page = await getJson<{ events: { event: unknown }[] }>(
                `${cp.httpUrl}/api/v1/events?device=${device}&limit=5`,
              );
              assert.deepEqual(viaJson(page.events[0]?.event), expected);
            } else if (kind === 'cmd_result') {
              const c = await getJson<{ result: unknown }>(
                `${cp.httpUrl}/api/v1/commands/${encodeURIComponent(m.id as string)}`,
              );
              assert.deepEqual(viaJson(c.result), expected);
            } else {
              const d = await getJson<Record<string, unknown>>(`${cp.httpUrl}/api/v1/devices/${device}`);
              if (kind === 'identity' || kind === 'telemetry') assert.deepEqual(viaJson(d[kind]), expected);
              if (kind === 'available') assert.equal(d.status, m.state);
              if (kind === 'status')
                assert.deepEqual(d.cameras, [
                  { camera: m.camera, state: m.state, at: m.at, reason: m.reason ?? null },
                ]);
            }
          }),
          { seed: SEED, numRuns: RUNS },
        );
        // an availability has two fields, both of few values: few generated ones pass
        const enough = kind === 'available' ? 1 : RUNS / 10;
        assert.ok(passed >= enough, `${passed} of ${RUNS} generated ${kind} messages passed the schema`);
      });
  });
}
