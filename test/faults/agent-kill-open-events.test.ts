/**
 * Fault test: the device agent is SIGKILLed while events are open, e.g. a parked van's
 * `parked-too-long` (a stationary rule). Everything is real: a Mosquitto, `argus device run`
 * replaying the recorded campus camera, its spool on SQLite. What the agent published is read from
 * the broker (QoS 1, de-duplicated by id and seq as the control plane does).
 *
 * After the restart, an event left open either continues (the camera reports the same rule and
 * place again: same id, seq following on, no second `new`) or, when nothing continues it within
 * `spool.resumeOpenEventsS`, ends with reason "agent restarted".
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { connectAsync, type MqttClient } from 'mqtt';
import { type EventMessage, topics } from '../../contract/index.ts';
import { AgentProcess, SnapshotReceiver, writeAgentConfig } from '../helpers/device-setup.ts';
import { eventually } from '../helpers/eventually.ts';
import { MosquittoBroker } from '../helpers/mosquitto-broker.ts';

const DEVICE = 'box-kill';

describe('agent SIGKILL with events open', () => {
  let dir: string;
  let broker: MosquittoBroker;
  let receiver: SnapshotReceiver;
  let watcher: MqttClient;
  /** every distinct (id, seq) published, in arrival order */
  const received: EventMessage[] = [];
  const seen = new Set<string>();
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-kill-open-'));
    broker = await MosquittoBroker.create({ dir: join(dir, 'broker') });
    receiver = await SnapshotReceiver.start({ [DEVICE]: `token-${DEVICE}` });
    watcher = await connectAsync(broker.url, { protocolVersion: 5 });
    watcher.on('message', (_t, payload) => {
      const m = JSON.parse(payload.toString()) as EventMessage;
      const key = `${m.id}/${m.seq}`;
      if (seen.has(key)) return;
      seen.add(key);
      received.push(m);
    });
    await watcher.subscribeAsync(topics.events(DEVICE), { qos: 1 });
  });
  after(async () => {
    await watcher?.endAsync();
    await receiver?.close();
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const config = (resumeOpenEventsS: number) =>
    writeAgentConfig(dir, {
      device: DEVICE,
      brokerUrl: broker.url,
      controlPlaneUrl: receiver.url,
      cameras: ['cam-1'],
      eventsPerSecond: 10,
      spool: { resumeOpenEventsS },
    });

  /** starts the agent, waits for a parked-too-long message after `from`, SIGKILLs it; returns the spool's open events */
  async function killWhileParked(resumeOpenEventsS: number): Promise<EventMessage[]> {
    const agent = await AgentProcess.start(await config(resumeOpenEventsS));
    const from = received.length;
    await eventually(
      async () =>
        received.slice(from).some((m) => m.rule === 'parked-too-long' && m.phase !== 'end')
          ? true
          : undefined,
      20_000,
      'the van parked too long',
    );
    await agent.terminate('SIGKILL');
    const db = new Database(join(dir, `${DEVICE}.spool.db`));
    const open = (db.prepare('SELECT message FROM open_events').all() as { message: string }[]).map(
      (r) => JSON.parse(r.message) as EventMessage,
    );
    db.close();
    return open;
  }

  it('continues an event the camera reports again, without a second new', async () => {
    const open = await killWhileParked(8);
    const parked = open.find((m) => m.rule === 'parked-too-long');
    assert.ok(
      parked,
      `the spool recorded the parked van's open event: ${JSON.stringify(open.map((m) => m.rule))}`,
    );
    const from = received.length;
    const agent = await AgentProcess.start(await config(8));
    try {
      // the replay starts again: the van is reported parked again ~3.6 s in
      const continued = await eventually(
        async () => received.slice(from).find((m) => m.id === parked.id && m.seq === parked.seq + 1),
        20_000,
        'the parked event continued',
      );
      assert.equal(continued.phase, 'update');
      assert.equal(continued.startedAt, parked.startedAt);
      const end = await eventually(
        async () => received.slice(from).find((m) => m.id === parked.id && m.phase === 'end'),
        20_000,
        'the continued event ended',
      );
      const until = received.indexOf(end);
      const duplicates = received
        .slice(from, until)
        .filter((m) => m.rule === 'parked-too-long' && m.phase === 'new');
      assert.deepEqual(duplicates, [], 'no second parked-too-long event for the same van');
      // every event left open is continued or ended
      for (const m of open) {
        const after = await eventually(
          async () => received.slice(from).find((r) => r.id === m.id && r.seq === m.seq + 1),
          20_000,
          `a next message of ${m.rule} ${m.id}`,
        );
        if (after.phase === 'end' && after.after.reason === 'agent restarted') continue;
        assert.ok(['update', 'end'].includes(after.phase));
      }
    } finally {
      await agent.terminate('SIGTERM');
    }
  });

  it('ends what nothing continues within resumeOpenEventsS, with reason "agent restarted"', async () => {
    const open = await killWhileParked(1);
    assert.ok(open.length > 0);
    const from = received.length;
    const agent = await AgentProcess.start(await config(1));
    try {
      for (const m of open) {
        const end = await eventually(
          async () => received.slice(from).find((r) => r.id === m.id && r.phase === 'end'),
          10_000,
          `the end of ${m.rule} ${m.id}`,
        );
        assert.equal(end.seq, m.seq + 1);
        assert.deepEqual(end.after, { reason: 'agent restarted' });
        assert.equal(end.startedAt, m.startedAt);
      }
      // ended a second after the start, before the replay reports the van again (~3.6 s in)
      const parked = open.find((m) => m.rule === 'parked-too-long')!;
      const end = received.findIndex((r) => r.id === parked.id && r.phase === 'end');
      assert.ok(!received.slice(from, end).some((r) => r.rule === 'parked-too-long' && r.phase === 'new'));
    } finally {
      await agent.terminate('SIGTERM');
    }
  });
});
