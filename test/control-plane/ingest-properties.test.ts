import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { MqttClient } from 'mqtt';
import { MAX_PAYLOAD_BYTES, topics, validators } from '../../contract/index.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import { decodeMessage } from '../../control-plane/ingest/decode.ts';
import { PostgresServer } from '../helpers/postgres.ts';
import { eventMessage } from './fixtures.ts';
import { hostileMessage, KINDS, type Kind } from './hostile-values.ts';
import { acked, apiFetch, getJson, openClient, startTestControlPlane } from './setup.ts';

/**
 * Property tests of ingest on the real control plane (embedded broker, each backend), seeds fixed
 * so that a failure replays: every value that passes a topic kind's schema survives
 * JSON.stringify/parse unchanged and goes through the repository and out of the API as it came;
 * hostile payloads of every topic kind never stall the acknowledgements of a legitimate device;
 * one device's ids never overwrite or squat another's.
 */

const ROUND_TRIP_SEED = 1_412_026;
const ROUND_TRIP_RUNS = 80;
const SEED = 14_140_001;
/** runs per topic kind; `npm test` runs this small share */
const RUNS = Number(process.env.ARGUS_FUZZ_RUNS ?? 25);

const TOPIC: Record<Kind, (device: string) => string> = {
  events: topics.events,
  status: topics.status,
  telemetry: topics.telemetry,
  identity: topics.identity,
  available: topics.available,
  cmd_result: topics.commandResult,
};

/** the text of a hostile message of `kind`: generated values, then damage done to the text itself */
function hostilePayload(kind: Kind, device: string): fc.Arbitrary<string | Buffer> {
  const text = hostileMessage(kind, device).map((m) => JSON.stringify(m));
  return fc.oneof(
    text,
    // a value replaced by arrays nested up to 20,000 deep (past what JSON.stringify's stack takes)
    fc
      .tuple(text, fc.integer({ min: 10, max: 20_000 }))
      .map(([t, depth]) => t.replace(/:(\d+|"[^"]*")/, `:${'['.repeat(depth)}${']'.repeat(depth)}`)),
    // a string as long as the payload allows, or longer
    fc
      .tuple(text, fc.integer({ min: MAX_PAYLOAD_BYTES - 400, max: MAX_PAYLOAD_BYTES + 10 }))
      .map(([t, length]) => t.replace(/:"[^"]*"/, `:"${'x'.repeat(length)}"`)),
    // numbers past a double, cut text, invalid UTF-8, nothing
    text.map((t) => t.replace(/:(\d+)/g, ':1e999')),
    fc.tuple(text, fc.nat()).map(([t, n]) => t.slice(0, n % (t.length + 1))),
    text.map((t) =>
      Buffer.concat([Buffer.from(t.slice(0, 20)), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from(t.slice(20))]),
    ),
    fc.constant(''),
  );
}

/** the value as JSON gives it back (−0 becomes 0) */
const viaJson = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;

interface EventsPage {
  events: { event: { id: string; seq: number; label: string; device: string } }[];
}

for (const storage of ['sqlite', 'postgres'] as const) {
  describe(`ingest under hostile messages (embedded broker, ${storage})`, () => {
    let dir: string;
    let pg: PostgresServer | undefined;
    let cp: ControlPlane;
    let attacker: MqttClient;
    let legit: MqttClient;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), `argus-fuzz-${storage}-`));
      if (storage === 'postgres') pg = await PostgresServer.start({ fsync: false });
      cp = await startTestControlPlane({
        dir,
        ...(pg ? { postgresUrl: await pg.createDatabase('argus_fuzz') } : {}),
        openMode: true,
      });
      attacker = await openClient(cp.mqttUrl, 'attacker');
      legit = await openClient(cp.mqttUrl, 'legit');
    });
    after(async () => {
      await attacker?.endAsync(true);
      await legit?.endAsync(true);
      await cp?.close();
      await pg?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    for (const kind of Object.keys(KINDS) as Kind[])
      it(`${kind}: through JSON, the repository and the API (seed ${ROUND_TRIP_SEED})`, async () => {
        let passed = 0;
        let n = 0;
        await fc.assert(
          fc.asyncProperty(hostileMessage(kind, 'device'), fc.context(), async (generated, ctx) => {
            // a device of its own per run, so that each run reads back only its own message
            const device = `bounds-${kind.replace('_', '-')}-${++n}`;
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
            // a camera's state is shown as reported only while its device is online (else `unknown`)
            if (kind === 'status') {
              const online = decodeMessage(
                topics.available(device),
                Buffer.from(JSON.stringify({ v: 1, state: 'online' })),
                Date.now(),
                32,
              );
              assert.ok(online.ok === true);
              await cp.repository.writeBatch([online.record]);
            }
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
          { seed: ROUND_TRIP_SEED, numRuns: ROUND_TRIP_RUNS },
        );
        // an availability has two fields, both of few values: few generated ones pass
        const enough = kind === 'available' ? 1 : ROUND_TRIP_RUNS / 10;
        assert.ok(
          passed >= enough,
          `${passed} of ${ROUND_TRIP_RUNS} generated ${kind} messages passed the schema`,
        );
      });

    let n = 0;
    for (const kind of Object.keys(KINDS) as Kind[])
      it(`${kind}: nested, huge, extreme and broken payloads never stall a legitimate device (seed ${SEED})`, async () => {
        const sent: string[] = [];
        await fc.assert(
          fc.asyncProperty(hostilePayload(kind, 'evil-box'), async (payload) => {
            const device = `legit-${storage}-${kind.replace('_', '-')}`;
            const event = eventMessage({ device, cameraSeq: n++ });
            sent.push(event.id);
            // the hostile message and the legitimate one in the same batch
            await Promise.all([
              acked(attacker, TOPIC[kind]('evil-box'), payload),
              acked(legit, topics.events(device), JSON.stringify(event)),
            ]);
          }),
          { seed: SEED, numRuns: RUNS },
        );
        const device = `legit-${storage}-${kind.replace('_', '-')}`;
        const page = await getJson<EventsPage>(`${cp.httpUrl}/api/v1/events?device=${device}&limit=500`);
        assert.deepEqual(page.events.map((e) => e.event.id).sort(), [...sent].sort(), 'every one stored');
        assert.equal((await apiFetch(`${cp.httpUrl}/api/v1/events?limit=500`)).status, 200);
        const health = (await getJson<{ status: string }>(`${cp.httpUrl}/healthz`)).status;
        assert.equal(health, 'ok');
      });

    it(`ids of another device never overwrite or squat a device's events (seed ${SEED})`, async () => {
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.record({
              seq: fc.integer({ min: 0, max: 3 }),
              squatFirst: fc.boolean(),
              squat: fc.boolean(),
              label: fc.constantFrom('car', 'truck', 'person'),
            }),
            { minLength: 1, maxLength: 8 },
          ),
          async (plan) => {
            run++;
            const victim = `victim-${storage}-${run}`;
            const squatter = `squatter-${storage}-${run}`;
            const id = `evt-${storage}-${run}-000`;
            const own = plan.map((p, i) =>
              eventMessage({ device: victim, id: `${id}${i}`, seq: p.seq, cameraSeq: i, label: 'person' }),
            );
            const forged = plan.map((p, i) => ({ ...own[i]!, device: squatter, label: p.label }));
            for (const [i, p] of plan.entries()) {
              const mine = () => acked(legit, topics.events(victim), JSON.stringify(own[i]));
              const theirs = () => acked(attacker, topics.events(squatter), JSON.stringify(forged[i]));
              if (!p.squat) await mine();
              else if (p.squatFirst) await Promise.all([theirs(), mine()]);
              else await Promise.all([mine(), theirs()]);
            }
            const stored = await getJson<EventsPage>(`${cp.httpUrl}/api/v1/events?device=${victim}&limit=50`);
            assert.deepEqual(
              stored.events.map((e) => `${e.event.id}/${e.event.seq}/${e.event.label}`).sort(),
              own.map((e) => `${e.id}/${e.seq}/person`).sort(),
              'every event of the victim, as it sent it, whatever the squatter sent',
            );
            const theirs = await getJson<EventsPage>(
              `${cp.httpUrl}/api/v1/events?device=${squatter}&limit=50`,
            );
            assert.equal(theirs.events.length, plan.filter((p) => p.squat).length, "the squatter's own");
          },
        ),
        { seed: SEED, numRuns: Math.max(10, Math.round(RUNS / 2)) },
      );
    });
  });
}
