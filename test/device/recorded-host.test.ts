import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ArgusError } from '../../common/errors.ts';
import { createLogger } from '../../common/logger.ts';
import type { HostEvent, HostStatus } from '../../device/camera-host.ts';
import { loadRecording, RecordedEventsHost } from '../../device/recorded-host.ts';
import { recordedCamera as camera, RECORDING } from '../helpers/device-setup.ts';

const log = createLogger('recorded-host-test');

describe('recorded-events camera host', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-recorded-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads a recording made by `argus replay --json --snapshots`, with its JPEGs', async () => {
    const events = await loadRecording(RECORDING);
    assert.equal(events.length, 40);
    const withSnapshot = events.filter((e) => e.snapshot);
    assert.ok(withSnapshot.length > 10);
    for (const e of withSnapshot) {
      assert.deepEqual([e.snapshot!.width, e.snapshot!.height], [256, 192]);
      assert.equal(e.snapshot!.jpeg.readUInt16BE(0), 0xffd8, 'a JPEG');
    }
  });

  it('reports every bad line of a recording with file:line', async () => {
    const recorded = (await readFile(RECORDING, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const first = recorded.find((l) => !l.snapshotFile)!;
    const bad = [
      JSON.stringify(first),
      '{"id": "broken',
      JSON.stringify({ ...first, colour: 'red' }),
      JSON.stringify({ ...first, snapshotFile: 'snapshots/missing.jpg' }),
      JSON.stringify({ summary: { events: 3 } }),
    ];
    const file = join(dir, 'bad.jsonl');
    await writeFile(file, bad.join('\n'));
    const err = await loadRecording(file).then(
      () => assert.fail('accepted'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ArgusError);
    const text = err.describe();
    assert.match(text, /bad\.jsonl:2: not JSON/);
    assert.match(text, /bad\.jsonl:3: \(line\): unknown key "colour"/);
    assert.match(text, /bad\.jsonl:4: snapshotFile .*missing\.jpg: ENOENT/);
    assert.doesNotMatch(text, /bad\.jsonl:[15]:/);
  });

  it('replays the recording on every camera at the configured rate, as fresh events', async () => {
    const host = new RecordedEventsHost({ events: RECORDING, eventsPerSecond: 100, loop: true }, log);
    const events: HostEvent[] = [];
    const statuses: HostStatus[] = [];
    host.onEvent((e) => events.push(e));
    host.onStatus((s) => statuses.push(s));
    await host.start([camera('a'), camera('b'), { ...camera('off'), enabled: false }], dir);
    await new Promise((r) => setTimeout(r, 1000));
    await host.stop();
    const perCamera = (id: string) => events.filter((e) => e.camera === id);
    for (const id of ['a', 'b']) {
      const mine = perCamera(id);
      assert.ok(mine.length >= 80 && mine.length <= 110, `${id}: ${mine.length} events in 1 s at 100/s`);
      assert.ok(mine.every((e) => e.message.camera === id));
    }
    assert.equal(perCamera('off').length, 0);
    assert.deepEqual(
      statuses.map((s) => `${s.camera}:${s.state}`),
      ['a:online', 'b:online', 'a:offline', 'b:offline'],
    );
    // event ids are fresh for each camera and each loop, and stable over an event's lifecycle
    const a = perCamera('a');
    // 40 recorded messages, then the ends of the 2 events the recording leaves open
    const loop1 = a.slice(0, 42);
    const loop2 = a.slice(42, 84);
    assert.deepEqual(
      loop1.slice(40).map((e) => [e.message.phase, e.message.after.reason]),
      [
        ['end', 'end of recording'],
        ['end', 'end of recording'],
      ],
    );
    const opened = new Set(loop1.filter((e) => e.message.phase === 'new').map((e) => e.message.id));
    const ended = new Set(loop1.filter((e) => e.message.phase === 'end').map((e) => e.message.id));
    assert.deepEqual(
      [...opened].filter((id) => !ended.has(id)),
      [],
      'every event of a loop ends in it',
    );
    const ids = (list: HostEvent[]) => new Set(list.map((e) => e.message.id));
    assert.equal([...ids(loop1)].filter((id) => ids(loop2).has(id)).length, 0);
    assert.equal([...ids(loop1)].filter((id) => ids(perCamera('b')).has(id)).length, 0);
    const bySeq = new Map<string, number[]>();
    for (const e of a) bySeq.set(e.message.id, [...(bySeq.get(e.message.id) ?? []), e.message.seq]);
    for (const [id, seqs] of bySeq) {
      if (seqs[0] === 0)
        assert.deepEqual(
          seqs,
          seqs.map((_, i) => i),
          `event ${id}`,
        );
    }
  });

  it('restarts a camera, takes snapshots, and names the cameras when asked for an unknown one', async () => {
    const host = new RecordedEventsHost({ events: RECORDING, eventsPerSecond: 20, loop: false }, log);
    const statuses: string[] = [];
    host.onStatus((s) => statuses.push(`${s.camera}:${s.state}${s.reason ? `:${s.reason}` : ''}`));
    await host.start([camera('a')], dir);
    await host.restartCamera('a');
    const shot = await host.snapshotNow('a');
    assert.equal(shot.jpeg.readUInt16BE(0), 0xffd8);
    await assert.rejects(host.restartCamera('nope'), /no camera "nope" on this device/);
    assert.equal(host.stats()[0]?.state, 'online');
    await host.stop();
    assert.deepEqual(statuses, ['a:online', 'a:offline:restart requested', 'a:online', 'a:offline:stopped']);
  });
});
