import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { connect, type MqttClient } from 'mqtt';
import {
  type Availability,
  type CameraStatus,
  type CommandResult,
  type EventMessage,
  type Identity,
  parseTopic,
  type Telemetry,
  TOPIC_ROOT,
  validators,
} from '../../contract/index.ts';

export interface StoredMessage {
  kind: 'event' | 'status';
  device: string;
  camera: string;
  cameraSeq: number;
  id: string;
  seq: number;
  arrival: number;
}

/**
 * A stand-in for the control plane's ingest in device tests: a persistent MQTT v5 session (QoS 1)
 * on every device topic, events and camera statuses stored in its own SQLite file keyed by
 * (id, seq) so that a redelivered message is stored once and counted as a duplicate. Every payload
 * is validated against the contract.
 */
export class EventSink {
  readonly client: MqttClient;
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private arrivals = 0;
  duplicates = 0;
  invalid: string[] = [];
  readonly telemetry = new Map<string, Telemetry[]>();
  readonly availability = new Map<string, Availability[]>();
  readonly identity = new Map<string, Identity>();
  readonly results: CommandResult[] = [];

  private constructor(url: string, dir: string) {
    this.db = new Database(join(dir, `sink-${randomUUID()}.db`));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = OFF');
    this.db.exec(`CREATE TABLE messages (
      kind TEXT NOT NULL, device TEXT NOT NULL, camera TEXT NOT NULL, camera_seq INTEGER NOT NULL,
      id TEXT NOT NULL, seq INTEGER NOT NULL, arrival INTEGER NOT NULL, payload TEXT NOT NULL,
      PRIMARY KEY (id, seq))`);
    this.insert = this.db.prepare(
      'INSERT OR IGNORE INTO messages (kind, device, camera, camera_seq, id, seq, arrival, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.client = connect(url, {
      protocolVersion: 5,
      clientId: `argus-test-sink-${randomUUID().slice(0, 8)}`,
      clean: false,
      reconnectPeriod: 200,
      properties: { sessionExpiryInterval: 3600 },
    });
    this.client.on('message', (topic, payload) => this.onMessage(topic, payload));
    this.client.on('error', () => undefined);
  }

  static async connect(url: string, dir: string): Promise<EventSink> {
    const sink = new EventSink(url, dir);
    await new Promise<void>((resolve, reject) => {
      sink.client.once('connect', () => resolve());
      sink.client.once('error', reject);
    });
    await sink.client.subscribeAsync(`${TOPIC_ROOT}/#`, { qos: 1 });
    return sink;
  }

  private onMessage(topic: string, payload: Buffer): void {
    const parsed = parseTopic(topic);
    if (!parsed || parsed.kind === 'cmd') return;
    let body: unknown;
    try {
      body = JSON.parse(payload.toString());
    } catch {
      this.invalid.push(`${topic}: not JSON`);
      return;
    }
    const validator = validators[parsed.kind];
    if (!validator.check(body)) {
      this.invalid.push(`${topic}: ${JSON.stringify(validator.issues(body))}`);
      return;
    }
    const device = parsed.device;
    switch (parsed.kind) {
      case 'events':
      case 'status': {
        const m = body as EventMessage | CameraStatus;
        const seq = parsed.kind === 'events' ? (m as EventMessage).seq : 0;
        const kind = parsed.kind === 'events' ? 'event' : 'status';
        const changes = this.insert.run(
          kind,
          device,
          m.camera,
          m.cameraSeq,
          m.id,
          seq,
          this.arrivals,
          payload.toString(),
        ).changes;
        if (changes === 0) this.duplicates++;
        else this.arrivals++;
        break;
      }
      case 'telemetry':
        this.telemetry.set(device, [...(this.telemetry.get(device) ?? []), body as Telemetry]);
        break;
      case 'available':
        this.availability.set(device, [...(this.availability.get(device) ?? []), body as Availability]);
        break;
      case 'identity':
        this.identity.set(device, body as Identity);
        break;
      case 'cmd_result':
        this.results.push(body as CommandResult);
        break;
    }
  }

  /** distinct events and statuses stored */
  get stored(): number {
    return this.arrivals;
  }

  count(kind: 'event' | 'status', device?: string): number {
    const row = (
      device
        ? this.db
            .prepare('SELECT count(*) AS n FROM messages WHERE kind = ? AND device = ?')
            .get(kind, device)
        : this.db.prepare('SELECT count(*) AS n FROM messages WHERE kind = ?').get(kind)
    ) as { n: number };
    return row.n;
  }

  /** stored messages of one camera in arrival order */
  camera(device: string, camera: string): StoredMessage[] {
    return this.db
      .prepare(
        'SELECT kind, device, camera, camera_seq AS cameraSeq, id, seq, arrival FROM messages WHERE device = ? AND camera = ? ORDER BY arrival',
      )
      .all(device, camera) as StoredMessage[];
  }

  cameras(): { device: string; camera: string }[] {
    return this.db.prepare('SELECT DISTINCT device, camera FROM messages ORDER BY device, camera').all() as {
      device: string;
      camera: string;
    }[];
  }

  events(device: string): EventMessage[] {
    return (
      this.db
        .prepare("SELECT payload FROM messages WHERE kind = 'event' AND device = ? ORDER BY arrival")
        .all(device) as { payload: string }[]
    ).map((r) => JSON.parse(r.payload) as EventMessage);
  }

  /** polls `predicate` until it holds; throws with `what` after `timeoutMs` */
  async waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
    this.db.close();
  }
}
