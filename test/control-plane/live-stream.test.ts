import assert from 'node:assert/strict';
import { connect as connectTcp } from 'node:net';
import { after, before, describe, it, mock } from 'node:test';
import type { MqttClient } from 'mqtt';
import { type EventMessage, topics } from '../../contract/index.ts';
import { EventBus, sseFrame } from '../../control-plane/event-bus.ts';
import type { ControlPlane } from '../../control-plane/index.ts';
import type { StoredEvent } from '../../control-plane/storage/repository.ts';
import { eventually } from '../helpers/eventually.ts';
import { followSse } from '../helpers/sse.ts';
import { eventMessage } from './fixtures.ts';
import { type ControlPlaneWithClient, metric, startControlPlaneWithClient, tokenFor } from './setup.ts';

/** an SSE client reading in the background; `frames` holds its event messages, as received */
async function follow(url: string): Promise<{ frames: string[]; stop(): Promise<void> }> {
  const { items, stop } = await followSse(url, (b) => (b.startsWith('id: ') ? `${b}\n\n` : undefined));
  return { frames: items, stop };
}

/** a client that sends the request, reads the response head and then stops reading */
async function openStalled(url: string) {
  const { hostname, port, pathname, search } = new URL(url);
  const socket = connectTcp(Number(port), hostname);
  let bytes = 0;
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  // a reset ends the connection too; 'close' follows
  socket.on('error', () => {});
  await new Promise<void>((resolve) => {
    socket.on('data', (d: Buffer) => {
      bytes += d.length;
      if (!socket.isPaused() && d.includes('argus live events')) {
        socket.pause();
        resolve();
      }
    });
    socket.write(
      `GET ${pathname}${search} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nAuthorization: Bearer ${tokenFor(url)}\r\n\r\n`,
    );
  });
  return {
    /** reads what the server sent; the byte count once the server closed the connection */
    async drain(timeoutMs: number): Promise<number> {
      socket.resume();
      const timer = new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error(`the server did not close the stalled stream in ${timeoutMs} ms`)),
          timeoutMs,
        ).unref(),
      );
      await Promise.race([closed, timer]);
      return bytes;
    },
    destroy: () => socket.destroy(),
  };
}

describe('live event stream fan-out (EventBus)', () => {
  const stored = (cursor: number, camera: string): StoredEvent => ({
    cursor,
    receivedAt: Date.now(),
    event: eventMessage({ camera }),
  });
  const output = (writableLength: number) => {
    const frames: string[] = [];
    return {
      frames,
      destroyed: false,
      writableLength,
      write(frame: string) {
        frames.push(frame);
        return writableLength === 0;
      },
      destroy() {
        this.destroyed = true;
      },
    };
  };

  it('serialises an event once for all the streams that want it', () => {
    const bus = new EventBus(1024 * 1024);
    const [a, b, other] = [output(0), output(0), output(0)];
    bus.openStream(a, (e) => e.event.camera === 'a');
    bus.openStream(b, (e) => e.event.camera === 'a');
    bus.openStream(other, (e) => e.event.camera === 'other');
    const events = [stored(1, 'a'), stored(2, 'b')];
    const stringify = mock.method(JSON, 'stringify');
    try {
      bus.publish(events);
      assert.equal(stringify.mock.callCount(), 1, 'one JSON.stringify for the one wanted event');
    } finally {
      stringify.mock.restore();
    }
    assert.deepEqual(a.frames, [sseFrame(events[0]!)]);
    assert.deepEqual(b.frames, a.frames);
    assert.deepEqual(other.frames, []);
  });

  it('cuts and counts a stream whose output holds more than the cap unsent', () => {
    const cap = 100_000;
    const bus = new EventBus(cap);
    const atCap = output(cap);
    const overCap = output(cap + 1);
    bus.openStream(atCap, () => true);
    const stream = bus.openStream(overCap, () => true);
    bus.publish([stored(1, 'a'), stored(2, 'a')]);
    assert.equal(overCap.destroyed, true);
    assert.equal(overCap.frames.length, 1, 'nothing is written after the cut');
    stream.send(': keepalive\n\n');
    assert.equal(overCap.frames.length, 1);
    assert.equal(atCap.destroyed, false);
    assert.equal(atCap.frames.length, 2);
    assert.equal(bus.streamsCut, 1);
  });
});

describe('live event stream over HTTP', () => {
  let env: ControlPlaneWithClient;
  let cp: ControlPlane;
  let client: MqttClient;
  before(async () => {
    env = await startControlPlaneWithClient('argus-live-');
    ({ cp, client } = env);
  });
  after(async () => {
    await env?.close();
  });

  const publish = (messages: EventMessage[]) =>
    Promise.all(
      messages.map((m) => client.publishAsync(topics.events('box-1'), JSON.stringify(m), { qos: 1 })),
    );
  const streamUrl = (camera: string) => `${cp.httpUrl}/api/v1/events/stream?camera=${camera}`;
  const idOf = (frame: string) =>
    (JSON.parse(/\ndata: (.*)\n/.exec(frame)![1]!) as { event: EventMessage }).event.id;
  const clients = () => metric(cp.httpUrl, 'argus_event_stream_clients');

  it('sends every client the same frames', async () => {
    const [a, b] = [await follow(streamUrl('pair')), await follow(streamUrl('pair'))];
    const wanted = Array.from({ length: 5 }, (_, i) => eventMessage({ camera: 'pair', cameraSeq: i }));
    await publish([...wanted, eventMessage({ camera: 'elsewhere' })]);
    await eventually(
      async () => (a.frames.length >= 5 && b.frames.length >= 5) || undefined,
      5000,
      'both clients to receive the 5 events',
    );
    await Promise.all([a.stop(), b.stop()]);
    assert.deepEqual(b.frames, a.frames);
    assert.deepEqual(new Set(a.frames.map(idOf)), new Set(wanted.map((m) => m.id)));
  });

  it('disconnects a client that stops reading while the others keep receiving', async () => {
    const reader = await follow(streamUrl('flood'));
    const stalled = await openStalled(streamUrl('flood'));
    try {
      await eventually(async () => ((await clients()) === 2 ? true : undefined), 5000, 'the 2 flood streams');
      // events near the payload limit, so that the kernel's socket buffers (several MiB on loopback)
      // fill in a few rounds and the rest waits in the stalled response
      const big = (i: number) =>
        eventMessage({ camera: 'flood', cameraSeq: i, after: { pad: 'x'.repeat(60_000) } });
      const published: string[] = [];
      for (let round = 0; round < 20 && (await clients()) === 2; round++) {
        const batch = Array.from({ length: 20 }, (_, i) => big(published.length + i));
        await publish(batch);
        published.push(...batch.map((m) => m.id));
        await eventually(
          async () => reader.frames.length >= published.length || undefined,
          10_000,
          `the reading client to receive ${published.length} events`,
        );
      }
      const sentBytes = reader.frames.reduce((n, f) => n + Buffer.byteLength(f), 0);
      assert.equal(
        await clients(),
        1,
        `the stalled client is still connected after ${sentBytes} bytes of events`,
      );
      assert.equal(await metric(cp.httpUrl, 'argus_event_stream_cut_total'), 1);

      const last = eventMessage({ camera: 'flood', cameraSeq: published.length });
      await publish([last]);
      await eventually(
        async () => reader.frames.some((f) => idOf(f) === last.id) || undefined,
        5000,
        'the reading client to receive the event published after the cut',
      );
      assert.deepEqual(new Set(reader.frames.map(idOf)), new Set([...published, last.id]));

      const stalledBytes = await stalled.drain(10_000);
      assert.ok(stalledBytes < sentBytes, `the stalled client got ${stalledBytes} of ${sentBytes} bytes`);
    } finally {
      await reader.stop();
      stalled.destroy();
    }
  });
});
