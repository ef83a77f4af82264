import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { connect, type MqttClient } from 'mqtt';
import { topics } from '../../contract/index.ts';
import { startControlPlaneProcess } from '../helpers/control-plane-process.ts';
import { eventually } from '../helpers/eventually.ts';
import { MosquittoBroker } from '../helpers/mosquitto-broker.ts';
import { eventMessage } from './fixtures.ts';
import { createAdminTokenInFile, metric, useToken } from './setup.ts';

const MESSAGES = 4000;

describe('control plane SIGKILLed during ingest from an external broker', () => {
  let dir: string;
  let mosquitto: MosquittoBroker;
  let child: ChildProcess | undefined;
  let publisherClient: MqttClient | undefined;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'argus-kill-'));
    mosquitto = await MosquittoBroker.create({ dir: join(dir, 'mosquitto') });
  });
  after(async () => {
    child?.kill('SIGKILL');
    await publisherClient?.endAsync(true);
    await mosquitto?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('loses and duplicates nothing: the PUBACK follows the commit, the session keeps the rest', async () => {
    const config = join(dir, 'cp.yaml');
    // batches that wait 100 ms: at the kill, hundreds of received messages are not yet committed,
    // which a PUBACK sent before the commit would lose (this test fails then)
    await writeFile(
      config,
      `http: { port: 0 }\nmqtt:\n  external: { url: "${mosquitto.url}", clientId: argus-kill-test }\nstorage:\n  sqlite: { path: argus.db, synchronous: normal }\ningest: { maxBatch: 1000, maxDelayMs: 100 }\n`,
    );
    const token = await createAdminTokenInFile(join(dir, 'argus.db'));
    let cp = await startControlPlaneProcess(config);
    useToken(cp.httpUrl, token);
    child = cp.child;
    const publisher = connect(mosquitto.url, { protocolVersion: 5, clientId: 'kill-test-publisher' });
    await new Promise<void>((resolve) => publisher.once('connect', () => resolve()));
    const sent = Array.from({ length: MESSAGES }, (_, i) => eventMessage({ device: 'box-1', cameraSeq: i }));
    publisherClient = publisher;
    // about 4000 messages/s, so that the kill lands while messages are arriving and being written
    const publishing = (async () => {
      for (let i = 0; i < sent.length; i += 40) {
        await Promise.all(
          sent
            .slice(i, i + 40)
            .map((m) => publisher.publishAsync(topics.events('box-1'), JSON.stringify(m), { qos: 1 })),
        );
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await eventually(
      async () =>
        (await metric(cp.httpUrl, 'argus_ingest_messages_total{kind="event"}').catch(() => 0)) >= 500
          ? true
          : undefined,
      20_000,
      '500 events stored before the kill',
    );
    const storedBeforeKill = await metric(cp.httpUrl, 'argus_ingest_messages_total{kind="event"}');
    cp.child.kill('SIGKILL');
    await once(cp.child, 'exit');
    assert.ok(storedBeforeKill < MESSAGES, 'killed in the middle of the ingest');
    await publishing;
    await publisher.endAsync();
    cp = await startControlPlaneProcess(config);
    child = cp.child;
    const db = new Database(join(dir, 'argus.db'), { readonly: true });
    try {
      await eventually(
        async () => {
          const { n } = db.prepare('SELECT count(*) AS n FROM events').get() as { n: number };
          return n >= MESSAGES ? true : undefined;
        },
        30_000,
        `${MESSAGES} events stored after the restart`,
      );
      await new Promise((r) => setTimeout(r, 300));
      const rows = db.prepare('SELECT id, seq FROM events').all() as { id: string; seq: number }[];
      assert.equal(rows.length, MESSAGES, 'no duplicates');
      const stored = new Set(rows.map((r) => r.id));
      assert.equal(sent.filter((m) => !stored.has(m.id)).length, 0, 'no loss');
    } finally {
      db.close();
    }
    cp.child.kill('SIGTERM');
    const [code] = await once(cp.child, 'exit');
    assert.equal(code, 0);
    child = undefined;
  });
});
