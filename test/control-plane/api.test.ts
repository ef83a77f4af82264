import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { MqttClient } from 'mqtt';
import { MAX_SNAPSHOT_BYTES, topics } from '../../contract/index.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import { eventMessage, jpeg } from './fixtures.ts';
import {
  apiFetch,
  type ControlPlaneWithClient,
  deviceClient,
  getJson,
  startControlPlaneWithClient,
  TOKEN,
} from './setup.ts';

interface EventsPage {
  events: {
    cursor: string;
    event: { id: string; camera: string; rule: string; label: string; cameraSeq: number };
  }[];
  nextCursor: string | null;
}

const T0 = Date.parse('2026-05-01T10:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

describe('control-plane REST API', () => {
  let env: ControlPlaneWithClient;
  let cp: ControlPlane;
  let client: MqttClient;
  before(async () => {
    env = await startControlPlaneWithClient('argus-api-');
    ({ cp, client } = env);
    // 30 events of box-1: cameras c0..c2, rules zone-a / line-b, person or car, one second apart
    for (let i = 0; i < 30; i++) {
      const m = eventMessage({
        device: 'box-1',
        camera: `c${i % 3}`,
        cameraSeq: i,
        rule: i % 2 === 0 ? 'zone-a' : 'line-b',
        label: i % 5 === 0 ? 'car' : 'person',
        at: iso(T0 + i * 1000),
      });
      await client.publishAsync(topics.events('box-1'), JSON.stringify(m), { qos: 1 });
    }
  });
  after(async () => {
    await env?.close();
  });

  const events = (query: string) => getJson<EventsPage>(`${cp.httpUrl}/api/v1/events?${query}`);

  it('filters events by device, camera, rule, class and time range', async () => {
    assert.equal((await events('device=box-1&limit=500')).events.length, 30);
    const c1 = (await events('device=box-1&camera=c1&limit=500')).events;
    assert.deepEqual(
      c1.map((e) => e.event.cameraSeq),
      [28, 25, 22, 19, 16, 13, 10, 7, 4, 1],
    );
    const cars = (await events('class=car&rule=zone-a')).events.map((e) => e.event.cameraSeq);
    assert.deepEqual(cars, [20, 10, 0]);
    const window = (await events(`device=box-1&from=${iso(T0 + 5000)}&to=${iso(T0 + 8000)}`)).events;
    assert.deepEqual(
      window.map((e) => e.event.cameraSeq),
      [7, 6, 5],
    );
    assert.equal((await events('device=box-9')).events.length, 0);
  });

  it('pages with nextCursor through every event exactly once', async () => {
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const page: EventsPage = await events(`device=box-1&limit=7${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...page.events.map((e) => e.event.cameraSeq));
      cursor = page.nextCursor;
    } while (cursor);
    assert.deepEqual(
      seen,
      Array.from({ length: 30 }, (_, i) => 29 - i),
    );
  });

  it('answers 400 with the problem for bad queries', async () => {
    for (const q of ['limit=0', 'limit=501', 'cursor=abc', 'from=yesterday', 'colour=red']) {
      const res = await apiFetch(`${cp.httpUrl}/api/v1/events?${q}`);
      assert.equal(res.status, 400, q);
      assert.ok(((await res.json()) as { error: string }).error, q);
    }
    const res = await apiFetch(`${cp.httpUrl}/api/v1/events?from=${iso(T0 + 1)}&to=${iso(T0)}`);
    assert.equal(res.status, 400);
  });

  it('streams newly stored events over SSE', async () => {
    const abort = new AbortController();
    const res = await apiFetch(`${cp.httpUrl}/api/v1/events/stream?camera=live`, { signal: abort.signal });
    assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    const reader = res.body!.getReader();
    await reader.read(); // the opening comment: the subscription is in place
    const other = eventMessage({ device: 'box-1', camera: 'elsewhere' });
    const live = eventMessage({ device: 'box-1', camera: 'live' });
    await client.publishAsync(topics.events('box-1'), JSON.stringify(other), { qos: 1 });
    await client.publishAsync(topics.events('box-1'), JSON.stringify(live), { qos: 1 });
    let text = '';
    const deadline = Date.now() + 5000;
    while (!text.includes('\n\n', text.indexOf('event: event')) && Date.now() < deadline) {
      const { value } = await reader.read();
      text += Buffer.from(value!).toString();
    }
    abort.abort();
    const block = text.slice(text.indexOf('id: '));
    const data = JSON.parse(/data: (.*)\n/.exec(block)![1]!) as EventsPage['events'][number];
    assert.equal(data.event.id, live.id, 'the filtered stream skips other cameras');
    assert.match(block, /^id: \d+\nevent: event\n/);
  });

  describe('snapshot upload', () => {
    const url = (device: string, id: string) => `${cp?.httpUrl}/api/v1/devices/${device}/snapshots/${id}`;
    const put = (device: string, id: string, body: Buffer, headers: Record<string, string>) =>
      fetch(url(device, id), { method: 'PUT', body, headers: { 'content-type': 'image/jpeg', ...headers } });
    const auth = { authorization: `Bearer ${TOKEN}` };

    it('refuses uploads without the device token (401)', async () => {
      assert.equal((await put('box-1', 'snap-auth-1', jpeg('a'), {})).status, 401);
      assert.equal(
        (await put('box-1', 'snap-auth-1', jpeg('a'), { authorization: 'Bearer wrong-token' })).status,
        401,
      );
      assert.equal((await put('box-1', 'snap-auth-1', jpeg('a'), { authorization: TOKEN })).status, 401);
      assert.equal(
        (await put('box-2', 'snap-auth-1', jpeg('a'), auth)).status,
        401,
        "box-1's token is not box-2's",
      );
      assert.equal((await apiFetch(url('box-1', 'snap-auth-1'))).status, 404);
    });

    it('checks content type, size and JPEG signature', async () => {
      const wrongType = await fetch(url('box-1', 'snap-type-1'), {
        method: 'PUT',
        body: jpeg('a'),
        headers: { ...auth, 'content-type': 'image/png' },
      });
      assert.equal(wrongType.status, 415);
      assert.equal(
        (await put('box-1', 'snap-big-1', Buffer.alloc(MAX_SNAPSHOT_BYTES + 1, 0xff), auth)).status,
        413,
      );
      assert.equal((await put('box-1', 'snap-text-1', Buffer.from('hello'), auth)).status, 400);
      assert.equal((await put('box-1', 'bad id', jpeg('a'), auth)).status, 400);
    });

    it('stores a snapshot once: 201, the same again 200, other bytes 409', async () => {
      const first = await put('box-1', 'snap-idem-1', jpeg('same'), auth);
      assert.equal(first.status, 201);
      assert.equal(((await first.json()) as { created: boolean }).created, true);
      assert.equal((await put('box-1', 'snap-idem-1', jpeg('same'), auth)).status, 200);
      assert.equal((await put('box-1', 'snap-idem-1', jpeg('other'), auth)).status, 409);
      const got = await apiFetch(url('box-1', 'snap-idem-1'));
      assert.deepEqual(Buffer.from(await got.arrayBuffer()), jpeg('same'));
      assert.equal((await apiFetch(url('box-2', 'snap-idem-1'))).status, 404, "box-1's id is not box-2's");
    });
  });

  it('answers 404 for commands to unknown devices and 400 for unknown commands', async () => {
    const post = (path: string) =>
      apiFetch(`${cp.httpUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
    assert.equal((await post('/api/v1/devices/nobody/commands/snapshot')).status, 404);
    assert.equal((await post('/api/v1/devices/box-1/commands/self-destruct')).status, 400);
    assert.equal((await apiFetch(`${cp.httpUrl}/api/v1/commands/no-such-command`)).status, 404);
  });

  it("keeps a device's command history with each result, newest first, paged", async () => {
    interface View {
      id: string;
      name: string;
      args: Record<string, unknown>;
      result: { ok: boolean; message: string } | null;
    }
    const send = async (name: string, args: Record<string, unknown>) => {
      const res = await apiFetch(`${cp.httpUrl}/api/v1/devices/box-1/commands/${name}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ args }),
      });
      assert.equal(res.status, 202);
      return ((await res.json()) as View).id;
    };
    const first = await send('reload-config', {});
    const second = await send('restart-camera', { camera: 'c1' });
    const third = await send('snapshot', { camera: 'c2' });
    const result = { v: 1, id: second, device: 'box-1', name: 'restart-camera', ok: false };
    await client.publishAsync(
      topics.commandResult('box-1'),
      JSON.stringify({ ...result, message: 'no camera c1 on this box', at: new Date().toISOString() }),
      { qos: 1 },
    );
    const url = `${cp.httpUrl}/api/v1/devices/box-1/commands`;
    const all = await getJson<{ commands: View[]; nextCursor: string | null }>(url);
    assert.deepEqual(
      all.commands.map((c) => [c.id, c.name, c.result?.message ?? null]),
      [
        [third, 'snapshot', null],
        [second, 'restart-camera', 'no camera c1 on this box'],
        [first, 'reload-config', null],
      ],
    );
    assert.deepEqual(all.commands[0]!.args, { camera: 'c2' });
    const page = await getJson<{ commands: View[]; nextCursor: string }>(`${url}?limit=2`);
    assert.equal(page.commands.length, 2);
    const rest = await getJson<{ commands: View[] }>(`${url}?limit=2&cursor=${page.nextCursor}`);
    assert.deepEqual(
      rest.commands.map((c) => c.id),
      [first],
    );
    assert.deepEqual(
      (await getJson<{ commands: View[] }>(`${cp.httpUrl}/api/v1/devices/box-2/commands`)).commands,
      [],
    );
    assert.equal((await fetch(url)).status, 401);
    assert.equal((await apiFetch(`${url}?limit=201`)).status, 400);
  });

  it('takes MQTT 3.1.1 clients on the embedded broker as well as v5 ones', async () => {
    const old = await deviceClient(cp.mqttUrl, 'box-311', { protocolVersion: 4 });
    const m = eventMessage({ device: 'box-311' });
    await old.publishAsync(topics.events('box-311'), JSON.stringify(m), { qos: 1 });
    await old.endAsync();
    assert.deepEqual(
      (await events('device=box-311')).events.map((e) => e.event.id),
      [m.id],
      'stored before the PUBACK',
    );
  });

  it('serves OpenAPI at /docs, metrics, health and the console page', async () => {
    const spec = await getJson<{ paths: Record<string, unknown> }>(`${cp.httpUrl}/docs/json`);
    for (const path of [
      '/api/v1/devices',
      '/api/v1/devices/{id}',
      '/api/v1/events',
      '/api/v1/events/stream',
      '/api/v1/devices/{device}/snapshots/{id}',
      '/api/v1/quarantine',
      '/api/v1/devices/{id}/commands/{name}',
      '/api/v1/commands/{id}',
      '/api/v1/devices/{id}/commands',
      '/api/v1/devices/{id}/rollouts',
    ])
      assert.ok(spec.paths[path], path);
    const metrics = await apiFetch(`${cp.httpUrl}/metrics`);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain; version=0.0.4/);
    assert.match(await metrics.text(), /argus_ingest_messages_total\{kind="event"\} 3\d/);
    assert.deepEqual(await getJson(`${cp.httpUrl}/healthz`), {
      status: 'ok',
      reasons: [],
      storage: 'sqlite',
      mqtt: cp.mqttUrl,
      pendingMessages: 0,
    });
    const page = await apiFetch(`${cp.httpUrl}/`);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    // the console's shell names its built script, which the control plane serves
    const script = /<script type="module" src="(\/assets\/app-[A-Za-z0-9]+\.js)">/.exec(
      await page.text(),
    )?.[1];
    assert.ok(script, 'the page at / loads the console script');
    const asset = await apiFetch(`${cp.httpUrl}${script}`);
    assert.equal(asset.status, 200);
    assert.match(asset.headers.get('content-type') ?? '', /javascript/);
  });
});
