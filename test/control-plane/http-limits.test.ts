import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as connectTcp, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect, type MqttClient } from 'mqtt';
import { topics } from '../../contract/index.ts';
import { type ControlPlane, controlPlaneConfig, startControlPlane } from '../../control-plane/index.ts';
import { eventually } from '../helpers/eventually.ts';
import { eventMessage, jpeg } from './fixtures.ts';
import { apiFetch, createAdminToken, metric, startTestControlPlane, TOKEN, useToken } from './setup.ts';

const limited = (cp: ControlPlane, limit: string) =>
  metric(cp.httpUrl, `argus_http_limited_total{limit="${limit}"}`);

/** a raw TCP connection to the API; `closed` settles when the server ends it, `received` is what it sent */
function rawConnection(url: string): { socket: Socket; closed: Promise<void>; received: () => string } {
  const { hostname, port } = new URL(url);
  const socket = connectTcp(Number(port), hostname);
  let text = '';
  socket.on('data', (d: Buffer) => {
    text += d.toString('latin1');
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, closed, received: () => text };
}

async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

describe('HTTP bounds (limits.http)', () => {
  let dir: string;
  let cp: ControlPlane;
  let client: MqttClient;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-http-limits-'));
    cp = await startControlPlane(
      controlPlaneConfig({
        http: { port: 0 },
        // open mode, explicitly: one client publishes the identities of 1,000 devices
        mqtt: { embedded: { port: 0, deviceCredentials: false } },
        storage: { sqlite: { path: join(dir, 'argus.db'), synchronous: 'normal' } },
        devices: [{ id: 'box-1', token: TOKEN }],
        limits: {
          http: {
            bodyBytes: 4096,
            jsonDepth: 8,
            headersTimeoutMs: 1000,
            requestTimeoutMs: 2000,
            connectionsPerAddress: 8,
            liveStreams: 2,
          },
        },
      }),
    );
    useToken(cp.httpUrl, await createAdminToken(cp.repository.sql));
    client = connect(cp.mqttUrl, { protocolVersion: 5 });
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    await client.publishAsync(
      topics.available('box-1'),
      JSON.stringify({ v: 1, state: 'online', at: new Date().toISOString() }),
      { qos: 1 },
    );
  });
  after(async () => {
    await client?.endAsync();
    await cp?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const command = (body: string, contentType = 'application/json') =>
    apiFetch(`${cp.httpUrl}/api/v1/devices/box-1/commands/snapshot`, {
      method: 'POST',
      headers: { 'content-type': contentType },
      body,
    });

  it('refuses a body over bodyBytes with 413, and counts it; a snapshot keeps its own 4 MiB', async () => {
    const res = await command(JSON.stringify({ args: { pad: 'x'.repeat(5000) } }));
    assert.equal(res.status, 413);
    assert.match(((await res.json()) as { error: string }).error, /body/i);
    assert.equal(await limited(cp, 'body_size'), 1);
    const snapshot = jpeg('x'.repeat(100_000));
    const upload = await apiFetch(`${cp.httpUrl}/api/v1/devices/box-1/snapshots/limits-snap-1`, {
      method: 'PUT',
      headers: { 'content-type': 'image/jpeg', authorization: `Bearer ${TOKEN}` },
      body: snapshot,
    });
    assert.equal(upload.status, 201);
    assert.equal((await command(JSON.stringify({ args: { camera: 'cam-1' } }))).status, 202);
  });

  it('refuses JSON nested past jsonDepth, and prototype keys, with 400 saying why', async () => {
    const deep = `{"args":{"a":${'['.repeat(20)}${']'.repeat(20)}}}`;
    const res = await command(deep);
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { error: string }).error, /deeper than 8 levels/);
    assert.equal(await limited(cp, 'json_depth'), 1);
    const million = `${'['.repeat(1_000_000)}`;
    const huge = await command(million);
    assert.equal(huge.status, 413, 'a deep body over the size limit is refused for its size');
    for (const body of ['{"args":{"__proto__":{"x":1}}}', '{"args":{"constructor":{"prototype":{}}}}']) {
      const r = await command(body);
      assert.equal(r.status, 400, body);
      assert.match(((await r.json()) as { error: string }).error, /refused/);
    }
    assert.equal((await command('{"args":')).status, 400);
    assert.equal((await command('')).status, 400);
    assert.equal((await command('{}', 'application/x-yaml')).status, 415);
  });

  it('times out slow headers and slow bodies with 408 and closes the connection', async () => {
    const before = await limited(cp, 'request_timeout');
    const slowHeaders = rawConnection(cp.httpUrl);
    slowHeaders.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    const slowBody = rawConnection(cp.httpUrl);
    slowBody.socket.write(
      // a public route, whose body is read before anything else (others refuse at the credential)
      'POST /api/v1/login HTTP/1.1\r\nHost: x\r\n' +
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name":',
    );
    // headersTimeoutMs 1000 and requestTimeoutMs 2000, checked every second
    await within(5000, 'the slow headers closed', slowHeaders.closed);
    await within(5000, 'the slow body closed', slowBody.closed);
    assert.match(slowHeaders.received(), /^HTTP\/1.1 408/);
    assert.match(slowBody.received(), /^HTTP\/1.1 408/);
    assert.equal(await limited(cp, 'request_timeout'), before + 2);
  });

  it('closes connections past connectionsPerAddress (after a grace for a close of the same address), and serves again once they close', async () => {
    const before = await limited(cp, 'connections_per_address');
    const open = Array.from({ length: 12 }, () => rawConnection(cp.httpUrl));
    let closedByServer = 0;
    for (const c of open) void c.closed.then(() => closedByServer++);
    await eventually(async () => closedByServer >= 4 || undefined, 5000, '4 of 12 connections to be closed');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(closedByServer < 12, `the connections within the cap stay open (${closedByServer} closed)`);
    assert.ok(
      open.every((c) => c.received() === ''),
      'closed without an answer',
    );
    const refused = closedByServer;
    for (const c of open) c.socket.destroy();
    await Promise.all(open.map((c) => c.closed));
    await eventually(
      async () => (await apiFetch(`${cp.httpUrl}/healthz`)).ok || undefined,
      5000,
      'health again',
    );
    const after = await limited(cp, 'connections_per_address');
    assert.ok(after >= before + refused, `${after} counted, ${before} before, ${refused} refused`);
  });

  it('refuses a live stream past liveStreams with 503 and Retry-After', async () => {
    const streams = [new AbortController(), new AbortController()];
    const opened = await Promise.all(
      streams.map((a) => apiFetch(`${cp.httpUrl}/api/v1/events/stream`, { signal: a.signal })),
    );
    try {
      for (const r of opened) assert.equal(r.status, 200);
      const third = await apiFetch(`${cp.httpUrl}/api/v1/events/stream`);
      assert.equal(third.status, 503);
      assert.equal(third.headers.get('retry-after'), '5');
      assert.match(((await third.json()) as { error: string }).error, /2 live streams/);
      assert.equal(await limited(cp, 'live_streams'), 1);
    } finally {
      for (const a of streams) a.abort();
    }
    await eventually(
      async () => ((await metric(cp.httpUrl, 'argus_event_stream_clients')) === 0 ? true : undefined),
      5000,
      'the streams to close',
    );
    const again = new AbortController();
    const r = await apiFetch(`${cp.httpUrl}/api/v1/events/stream`, { signal: again.signal });
    assert.equal(r.status, 200);
    again.abort();
  });

  it('answers a HEAD of the live stream with its head at once (found by the HTTP fuzzer, seed 7 path 22)', async () => {
    const res = await within(
      5000,
      'the HEAD answered',
      apiFetch(`${cp.httpUrl}/api/v1/events/stream`, { method: 'HEAD' }),
    );
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  });

  it('serves a stored event nested too deep (stored before ingest bounded depth) with its free-form state replaced by a note', async () => {
    // the text as a hostile box sends it (JSON.stringify cannot write it back: that is the point)
    const deepText = JSON.stringify(
      eventMessage({ device: 'deep-box', cameraSeq: 1, before: { x: 1 } }),
    ).replace('"before":{"x":1}', `"before":{"a":${'['.repeat(6000)}${']'.repeat(6000)}}`);
    const plain = eventMessage({ device: 'deep-box', cameraSeq: 2 });
    // as an event stored before ingest bounded depth: written to the repository directly
    await cp.repository.writeBatch(
      [deepText, JSON.stringify(plain)].map((payload) => ({
        kind: 'event' as const,
        device: 'deep-box',
        message: JSON.parse(payload),
        payload,
        receivedAt: Date.now(),
      })),
    );
    const res = await apiFetch(`${cp.httpUrl}/api/v1/events?device=deep-box`);
    assert.equal(res.status, 200);
    const page = (await res.json()) as { events: { event: { id: string } }[] };
    assert.deepEqual(
      page.events.map((e) => e.event.id).sort(),
      [plain.id, (JSON.parse(deepText) as { id: string }).id].sort(),
    );
    const served = page.events.find((e) => e.event.id !== plain.id) as unknown as {
      event: { before: { dropped?: string } };
    };
    assert.match(served.event.before.dropped ?? '', /nested deeper than/);
  });

  it('pages 1,000 devices with identities of 60 KB in bounded pages, each seen once', async () => {
    // a control plane of its own, with the default bounds (this file's caps connections at 8)
    const own = await startTestControlPlane({
      dir: join(dir, 'paging'),
      // one client publishes the identities of 1,000 devices
      openMode: true,
    });
    const publisher = connect(own.mqttUrl, { protocolVersion: 5 });
    await new Promise<void>((resolve) => publisher.once('connect', () => resolve()));
    try {
      const identity = (id: string) => ({
        v: 1,
        device: id,
        hardwareClass: 'x86_64-avx512',
        executionProviders: ['cpu'],
        software: { version: '0.1.0', node: 'v20' },
        models: [],
        // about 60 KB within the contract's bounds: 56 cameras with scene paths of 1,000 characters
        cameras: Array.from({ length: 56 }, (_, i) => ({ id: `cam-${i}`, scene: `/${'s'.repeat(999)}` })),
        startedAt: new Date().toISOString(),
      });
      const ids = Array.from({ length: 1000 }, (_, i) => `fat-${String(i).padStart(4, '0')}`);
      for (let i = 0; i < ids.length; i += 100)
        await Promise.all(
          ids
            .slice(i, i + 100)
            .map((id) =>
              publisher.publishAsync(topics.identity(id), JSON.stringify(identity(id)), { qos: 1 }),
            ),
        );
      const seen: string[] = [];
      let cursor: string | null = null;
      let largest = 0;
      let pages = 0;
      do {
        const res = await apiFetch(
          `${own.httpUrl}/api/v1/devices?idPrefix=fat-&limit=500${cursor ? `&cursor=${cursor}` : ''}`,
        );
        assert.equal(res.status, 200);
        const text = await res.text();
        largest = Math.max(largest, text.length);
        const page = JSON.parse(text) as { devices: { id: string }[]; nextCursor: string | null };
        seen.push(...page.devices.map((d) => d.id));
        cursor = page.nextCursor;
        pages++;
      } while (cursor);
      assert.deepEqual(seen, ids);
      assert.ok(largest < 4.5 * 1024 * 1024, `a page of ${largest} bytes`);
      assert.ok(pages >= 14, `${pages} pages`);
      // every page but the last ended early at pageBytes (the last one ends with the list)
      assert.equal(own.metrics.httpLimited.get('page_bytes'), pages - 1);
      const first = await apiFetch(`${own.httpUrl}/api/v1/devices`);
      const page = (await first.json()) as { devices: unknown[]; nextCursor: string | null };
      assert.ok(page.devices.length <= 100, 'the default limit is 100');
      for (const q of ['limit=0', 'limit=501', 'cursor=UPPER', 'status=lost', 'idPrefix=%2F', 'colour=red'])
        assert.equal((await apiFetch(`${own.httpUrl}/api/v1/devices?${q}`)).status, 400, q);
    } finally {
      await publisher.endAsync(true);
      await own.close();
    }
  });
});
