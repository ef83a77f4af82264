import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MqttClient } from 'mqtt';
import { MAX_PAYLOAD_BYTES, topics } from '../../contract/index.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import { eventually } from '../helpers/eventually.ts';
import { PostgresServer } from '../helpers/postgres.ts';
import { eventMessage } from './fixtures.ts';
import { acked, apiFetch, getJson, metric, openClient, startTestControlPlane } from './setup.ts';

/** one poisoned message must not stall a city: the embedded broker with each backend */

interface EventsPage {
  events: { cursor: string; event: { id: string; device: string; label: string } }[];
}
interface QuarantinePage {
  messages: { id: string; device: string; topic: string; reason: string; detail: string; payload: string }[];
  nextCursor: string | null;
}
interface Health {
  status: string;
  reasons: string[];
}

/** JSON arrays nested `depth` levels: ~12 KB for 6,000, past what JSON.stringify's stack takes */
const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

for (const storage of ['sqlite', 'postgres'] as const) {
  describe(`poisoned messages (embedded broker, ${storage})`, () => {
    let dir: string;
    let pg: PostgresServer | undefined;
    let cp: ControlPlane;
    let client: MqttClient;
    const count = (sample: string) => metric(cp.httpUrl, sample);
    const events = (device: string) =>
      getJson<EventsPage>(`${cp.httpUrl}/api/v1/events?device=${device}&limit=500`);

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), `argus-poison-${storage}-`));
      if (storage === 'postgres') pg = await PostgresServer.start({ fsync: false });
      cp = await startTestControlPlane({
        dir,
        ...(pg ? { postgresUrl: await pg.createDatabase('argus_poison') } : {}),
        openMode: true,
      });
      client = await openClient(cp.mqttUrl);
    });
    after(async () => {
      await client?.endAsync(true);
      await cp?.close();
      await pg?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it('acknowledges a cmd_result nested 6,000 deep (rejected as too_deep) and keeps acknowledging others', async () => {
      const before = await count('argus_ingest_rejected_total{reason="too_deep"}');
      const poison = `{"v":1,"id":"cmd-00000000-poison","device":"evil","name":"snapshot","ok":true,"message":"x","at":"2026-05-01T10:00:00Z","data":{"x":${nested(6000)}}}`;
      await acked(client, topics.commandResult('evil'), poison);
      const legit = eventMessage({ device: 'legit-a' });
      await acked(client, topics.events('legit-a'), JSON.stringify(legit));
      assert.deepEqual(
        (await events('legit-a')).events.map((e) => e.event.id),
        [legit.id],
      );
      assert.equal((await count('argus_ingest_rejected_total{reason="too_deep"}')) - before, 1);
    });

    it('rejects an event whose `before` nests 6,000 deep, so the events API and the live stream keep working', async () => {
      const abort = new AbortController();
      const stream = await apiFetch(`${cp.httpUrl}/api/v1/events/stream?device=legit-b`, {
        signal: abort.signal,
      });
      const legit = eventMessage({ device: 'legit-b' });
      const poison = JSON.stringify(eventMessage({ device: 'legit-b' })).replace(
        '"before":{"inside":false}',
        `"before":{"x":${nested(6000)}}`,
      );
      assert.ok(poison.length > 12_000);
      await Promise.all([
        acked(client, topics.events('legit-b'), poison),
        acked(client, topics.events('legit-b'), JSON.stringify(legit)),
      ]);
      const page = await apiFetch(`${cp.httpUrl}/api/v1/events?limit=500`);
      assert.equal(page.status, 200);
      assert.deepEqual(
        (await events('legit-b')).events.map((e) => e.event.id),
        [legit.id],
      );
      const reader = stream.body!.getReader();
      let text = '';
      while (!text.includes(legit.id)) text += Buffer.from((await reader.read()).value!).toString();
      abort.abort();
    });

    it('splits a batch that fails for a reason of one message, quarantines that one and stores the rest', async () => {
      // a real failure of one row, neither the database's state nor a value it cannot store:
      // a trigger that errors for one rule
      await cp.repository.sql.write(
        storage === 'sqlite'
          ? [
              {
                sql: `CREATE TRIGGER poison_rule BEFORE INSERT ON events WHEN NEW.rule = 'poison-rule'
                  BEGIN SELECT json('not json'); END`,
              },
            ]
          : [
              {
                sql: `CREATE FUNCTION poison_rule() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN IF NEW.rule = 'poison-rule' THEN RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$`,
              },
              {
                sql: 'CREATE TRIGGER poison_rule BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison_rule()',
              },
            ],
      );
      const failed = () => count('argus_ingest_quarantined_total{reason="write_failed"}');
      const before = await failed();
      const messages = Array.from({ length: 31 }, (_, i) =>
        eventMessage({ device: 'split-box', cameraSeq: i, ...(i === 17 ? { rule: 'poison-rule' } : {}) }),
      );
      await Promise.all(messages.map((m) => acked(client, topics.events('split-box'), JSON.stringify(m))));
      const stored = (await events('split-box')).events.map((e) => e.event.id).sort();
      assert.deepEqual(
        stored,
        messages
          .filter((_, i) => i !== 17)
          .map((m) => m.id)
          .sort(),
      );
      assert.equal((await failed()) - before, 1);
      const page = await getJson<QuarantinePage>(`${cp.httpUrl}/api/v1/quarantine?limit=50`);
      const kept = page.messages.find((m) => m.device === 'split-box');
      assert.ok(kept, 'the failing message is in the quarantine');
      assert.equal(kept.reason, 'write_failed');
      assert.equal(kept.topic, topics.events('split-box'));
      assert.equal(kept.payload, JSON.stringify(messages[17]), 'kept as it was received');
      assert.match(kept.detail, storage === 'sqlite' ? /malformed JSON/ : /poisoned row/);
      await cp.repository.sql.write([
        { sql: 'DROP TRIGGER poison_rule' + (storage === 'postgres' ? ' ON events' : '') },
      ]);
    });

    it('quarantines an event that reuses a stored (device, id, seq) with other content; the same again is a duplicate', async () => {
      const original = eventMessage({ device: 'conflict-box', label: 'person' });
      const forged = { ...original, label: 'car' };
      const conflicts = () => count('argus_ingest_quarantined_total{reason="conflicting_duplicate"}');
      const [c0, d0] = [await conflicts(), await count('argus_ingest_duplicates_total')];
      await acked(client, topics.events('conflict-box'), JSON.stringify(original));
      await acked(client, topics.events('conflict-box'), JSON.stringify(original));
      await acked(client, topics.events('conflict-box'), JSON.stringify(forged));
      assert.equal((await count('argus_ingest_duplicates_total')) - d0, 1);
      assert.equal((await conflicts()) - c0, 1);
      assert.deepEqual(
        (await events('conflict-box')).events.map((e) => e.event.label),
        ['person'],
        'the stored event stays as it was',
      );
      // another device may use the same id: it is its own event
      await acked(client, topics.events('other-box'), JSON.stringify({ ...forged, device: 'other-box' }));
      assert.deepEqual(
        (await events('other-box')).events.map((e) => e.event.id),
        [original.id],
      );
      const first = await getJson<QuarantinePage>(`${cp.httpUrl}/api/v1/quarantine?limit=1`);
      assert.equal(first.messages[0]?.reason, 'conflicting_duplicate', 'newest first');
      assert.equal(first.messages[0]?.payload, JSON.stringify(forged));
      assert.ok(first.nextCursor);
      const next = await getJson<QuarantinePage>(
        `${cp.httpUrl}/api/v1/quarantine?limit=1&cursor=${first.nextCursor}`,
      );
      assert.equal(next.messages[0]?.device, 'split-box', 'the page before');
    });

    it('stores a command result only from the device the command was sent to', async () => {
      await acked(client, topics.available('cmd-target'), JSON.stringify({ v: 1, state: 'online' }));
      const res = await apiFetch(`${cp.httpUrl}/api/v1/devices/cmd-target/commands/snapshot`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ args: { camera: 'cam-1' } }),
      });
      assert.equal(res.status, 202);
      const { id, resultUrl } = (await res.json()) as { id: string; resultUrl: string };
      const result = (device: string, message: string) =>
        JSON.stringify({
          v: 1,
          id,
          device,
          name: 'snapshot',
          ok: true,
          message,
          at: new Date().toISOString(),
        });
      const unknown = () => count('argus_ingest_rejected_total{reason="unknown_command"}');
      const before = await unknown();
      await acked(client, topics.commandResult('cmd-forger'), result('cmd-forger', 'forged'));
      assert.equal((await unknown()) - before, 1);
      assert.equal((await getJson<{ result: unknown }>(`${cp.httpUrl}${resultUrl}`)).result, null);
      await acked(client, topics.commandResult('cmd-target'), result('cmd-target', 'taken'));
      assert.equal(
        (await getJson<{ result: { message: string } }>(`${cp.httpUrl}${resultUrl}`)).result.message,
        'taken',
      );
    });

    it('keeps retained only the availability and identity messages ingest stored', async () => {
      const identity = (device: string) => ({
        v: 1,
        device,
        hardwareClass: 'x86_64',
        executionProviders: ['cpu'],
        software: { version: '1', node: 'v20' },
        models: [],
        cameras: [],
        startedAt: new Date().toISOString(),
      });
      const retain = { retain: true };
      cp.metrics.retainCleared = 0;
      await acked(client, topics.identity('ret-big'), Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x20), retain);
      await acked(client, topics.identity('ret-bad'), '{"v":1,', retain);
      await acked(client, topics.available('ret-deep'), `{"v":1,"state":${nested(100)}}`, retain);
      await acked(
        client,
        topics.events('ret-event'),
        JSON.stringify(eventMessage({ device: 'ret-event' })),
        retain,
      );
      await acked(client, topics.identity('ret-good'), JSON.stringify(identity('ret-good')), retain);
      assert.equal(cp.metrics.retainCleared, 4);
      const watcher = await openClient(cp.mqttUrl);
      const retained: string[] = [];
      watcher.on('message', (topic, _payload, packet) => {
        if (packet.retain) retained.push(topic);
      });
      await watcher.subscribeAsync(`${topics.identity('+')}`, { qos: 1 });
      await watcher.subscribeAsync(`${topics.available('+')}`, { qos: 1 });
      await watcher.subscribeAsync(`${topics.events('+')}`, { qos: 1 });
      await eventually(
        async () => (retained.includes(topics.identity('ret-good')) ? true : undefined),
        5000,
        'the stored identity retained',
      );
      // a message published now reaches the watcher after the retained ones it was sent
      const ping = eventMessage({ device: 'ret-ping' });
      const seen = new Promise<void>((resolve) =>
        watcher.on('message', (topic) => topic === topics.events('ret-ping') && resolve()),
      );
      await acked(client, topics.events('ret-ping'), JSON.stringify(ping));
      await seen;
      assert.deepEqual(
        retained.filter((t) => t.includes('/ret-')),
        [topics.identity('ret-good')],
      );
      await watcher.endAsync(true);
    });

    if (storage === 'postgres')
      it('reports degraded (200) while the database is down, and stores what waited once it is back', async () => {
        await pg!.halt();
        const waiting = eventMessage({ device: 'outage-box' });
        let ackedAt = 0;
        const publish = acked(client, topics.events('outage-box'), JSON.stringify(waiting), {}, 60_000).then(
          () => {
            ackedAt = Date.now();
          },
        );
        const degraded = await eventually(
          async () => {
            const res = await fetch(`${cp.httpUrl}/healthz`);
            assert.equal(res.status, 200, 'liveness stays 200');
            const health = (await res.json()) as Health;
            return health.status === 'degraded' ? health : undefined;
          },
          15_000,
          '/healthz degraded',
        );
        assert.match(degraded.reasons[0] ?? '', /database does not answer/);
        assert.equal(ackedAt, 0, 'not acknowledged while it cannot be stored');
        const resumed = Date.now();
        await pg!.resume();
        await publish;
        assert.ok(ackedAt >= resumed);
        assert.deepEqual(
          (await events('outage-box')).events.map((e) => e.event.id),
          [waiting.id],
        );
        assert.equal(((await getJson<Health>(`${cp.httpUrl}/healthz`)) as Health).status, 'ok');
      });
  });
}

describe('per-device rate and command bounds (embedded broker, sqlite)', () => {
  let dir: string;
  let cp: ControlPlane;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-rate-'));
    cp = await startTestControlPlane({
      dir,
      ingest: { deviceRate: { messagesPerSecond: 20, burst: 5 } },
      // a flooding and a quiet device from plain clients
      openMode: true,
    });
  });
  after(async () => {
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('paces a device over its rate without losing its messages, and without slowing another device', async () => {
    const flood = await openClient(cp.mqttUrl);
    const other = await openClient(cp.mqttUrl);
    const messages = Array.from({ length: 25 }, (_, i) =>
      eventMessage({ device: 'flood-box', cameraSeq: i }),
    );
    const t0 = Date.now();
    let floodDone = 0;
    const all = Promise.all(
      messages.map((m) => acked(flood, topics.events('flood-box'), JSON.stringify(m))),
    ).then(() => {
      floodDone = Date.now();
    });
    await new Promise((r) => setTimeout(r, 100));
    await acked(other, topics.events('calm-box'), JSON.stringify(eventMessage({ device: 'calm-box' })));
    assert.equal(floodDone, 0, "the other device's message is acknowledged while the flood is paced");
    await all;
    // 5 at once, then 20 at 20 per second
    assert.ok(floodDone - t0 >= 900, `the flood took ${floodDone - t0} ms`);
    assert.ok((await metric(cp.httpUrl, 'argus_ingest_paced_total')) >= 19);
    const stored = await getJson<EventsPage>(`${cp.httpUrl}/api/v1/events?device=flood-box&limit=100`);
    assert.equal(stored.events.length, 25, 'nothing lost');
    await flood.endAsync(true);
    await other.endAsync(true);
  });

  it('refuses (413) a command whose args are over the payload size or the depth limit, and publishes nothing', async () => {
    const client = await openClient(cp.mqttUrl);
    await acked(client, topics.available('cmd-box'), JSON.stringify({ v: 1, state: 'online' }));
    const received: string[] = [];
    client.on('message', (topic) => received.push(topic));
    await client.subscribeAsync(topics.commandFilter('cmd-box'), { qos: 1 });
    const post = (args: unknown) =>
      apiFetch(`${cp.httpUrl}/api/v1/devices/cmd-box/commands/reload-config`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ args }),
      });
    // a body within limits.http.bodyBytes (64 KiB) whose Command, with its id and times, is not
    const big = await post({ blob: 'x'.repeat(MAX_PAYLOAD_BYTES - 100) });
    assert.equal(big.status, 413);
    assert.match(((await big.json()) as { error: string }).error, /more than the contract's 65536/);
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    // a body nested past limits.http.jsonDepth is refused by the HTTP layer before the command is built
    const tooDeep = await post({ deep });
    assert.equal(tooDeep.status, 400);
    assert.match(((await tooDeep.json()) as { error: string }).error, /deeper than 32/);
    const manyKeys = await post(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, i])));
    assert.equal(manyKeys.status, 400);
    assert.equal((await post({ camera: 'cam-1' })).status, 202);
    await eventually(async () => (received.length > 0 ? true : undefined), 5000, 'the valid command');
    assert.equal(received.length, 1, 'only the valid command was published');
    assert.equal(await metric(cp.httpUrl, 'argus_commands_total'), 1);
    await client.endAsync(true);
  });
});
