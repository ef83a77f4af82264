import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { deviceClientId, topics } from '../../contract/index.ts';
import { type ControlPlane, controlPlaneConfig, startControlPlane } from '../../control-plane/index.ts';
import { eventMessage } from '../control-plane/fixtures.ts';
import { createAdminToken } from '../control-plane/setup.ts';

/** the device that behaves: its events must keep being acknowledged and stored whatever the fuzzers send */
export const LEGIT_DEVICE = 'legit-box';
export const LEGIT_TOKEN = 'token-of-the-legit-box-for-fuzzing';
/** the box whose fresh connections check that the broker still takes new clients */
export const FRESH_DEVICE = 'fresh-box';
export const FRESH_TOKEN = 'token-of-the-fresh-box-for-fuzzing';

/**
 * Headers that make an HTTP request authenticated. The HTTP fuzzer sends each request anonymously,
 * with `adminHeaders` (an admin API token), with `deviceHeaders` or with garbage credentials.
 */
export type AuthHeaders = () => Record<string, string>;

export interface FuzzTarget {
  cp: ControlPlane;
  legit: LegitDevice;
  /** headers of an admin (all routes allowed) */
  adminHeaders: AuthHeaders;
  /** headers with which the legit device authenticates as itself (snapshot upload) */
  deviceHeaders: AuthHeaders;
  /** limits.http.bodyBytes of the control plane */
  bodyBytes: number;
  /** uncaught exceptions and unhandled rejections seen since the start */
  faults: string[];
  close(): Promise<void>;
}

/**
 * A device publishing an event every `intervalMs` at QoS 1 over MQTT v5, as a box does. It records
 * which events were acknowledged and when the last acknowledgement came, so that a fuzzer can tell
 * a stall (no PUBACK for the legit device) and, at the end, check every acknowledged event is stored.
 */
export class LegitDevice {
  readonly acked: string[] = [];
  lastAckAt = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private seq = 0;
  private inFlight = 0;

  constructor(private readonly client: MqttClient) {}

  static async connect(url: string): Promise<LegitDevice> {
    const client = connect(url, {
      protocolVersion: 5,
      clientId: deviceClientId(LEGIT_DEVICE),
      username: LEGIT_DEVICE,
      password: LEGIT_TOKEN,
      reconnectPeriod: 200,
    });
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    return new LegitDevice(client);
  }

  /** publishes one event and resolves once it is acknowledged */
  async publishOne(): Promise<string> {
    const m = eventMessage({
      device: LEGIT_DEVICE,
      camera: 'cam-1',
      cameraSeq: this.seq++,
      id: randomUUID(),
    });
    this.inFlight++;
    try {
      await this.client.publishAsync(topics.events(LEGIT_DEVICE), JSON.stringify(m), { qos: 1 });
    } finally {
      this.inFlight--;
    }
    this.acked.push(m.id);
    this.lastAckAt = Date.now();
    return m.id;
  }

  start(intervalMs = 20): void {
    this.timer ??= setInterval(() => {
      // one at a time in flight at most, as a spool sends; a stall shows as an old lastAckAt
      if (this.inFlight === 0) this.publishOne().catch(() => {});
    }, intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** ms since the last acknowledgement, 0 while nothing waits for one */
  waitingMs(): number {
    return this.inFlight === 0 ? 0 : Date.now() - this.lastAckAt;
  }

  async close(): Promise<void> {
    this.stop();
    await this.client.endAsync(true);
  }
}

/** the acknowledged events of the legit device that are not in the database */
export async function missingLegitEvents(target: FuzzTarget): Promise<string[]> {
  const { sql } = target.cp.repository;
  const rows = await sql.read<{ id: string }>(`SELECT id FROM events WHERE device = ${sql.p(1)}`, [
    LEGIT_DEVICE,
  ]);
  const stored = new Set(rows.map((r) => r.id));
  return target.legit.acked.filter((id) => !stored.has(id));
}

export interface FuzzTargetOptions {
  /**
   * `secure` (the default, as deployed): device credentials on. `open`, explicitly, for the payload
   * fuzzer: its clients publish as many devices would (each enrolled, each hostile), which a
   * secure broker refuses before ingest sees them; that a device acts only as itself is the
   * property tested in test/control-plane/mqtt-auth.test.ts
   */
  broker?: 'secure' | 'open';
}

/**
 * A control plane as deployed (embedded broker, SQLite), the legit device connected and publishing,
 * an admin API token, and a record of every uncaught exception and unhandled rejection of the
 * process.
 */
export async function startFuzzTarget(o: FuzzTargetOptions = {}): Promise<FuzzTarget> {
  const faults: string[] = [];
  const onFault = (kind: string) => (err: unknown) => {
    faults.push(`${kind}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  };
  const onException = onFault('uncaught exception');
  const onRejection = onFault('unhandled rejection');
  process.on('uncaughtException', onException);
  process.on('unhandledRejection', onRejection);
  const dir = await mkdtemp(join(tmpdir(), 'argus-fuzz-'));
  const config = controlPlaneConfig({
    http: { port: 0 },
    limits: { http: { connectionsPerAddress: 100_000 } },
    // every fuzzing connection comes from 127.0.0.1: the per-address bound would refuse the legit
    // device's address too (the bound itself is tested in mqtt-auth.test.ts)
    mqtt: {
      embedded: { port: 0, deviceCredentials: o.broker !== 'open', maxConnectionsPerAddress: 100_000 },
    },
    storage: { sqlite: { path: join(dir, 'argus.db'), synchronous: 'normal' } },
    devices: [
      { id: LEGIT_DEVICE, token: LEGIT_TOKEN },
      { id: FRESH_DEVICE, token: FRESH_TOKEN },
    ],
  });
  const cp = await startControlPlane(config);
  const admin = await createAdminToken(cp.repository.sql);
  const legit = await LegitDevice.connect(cp.mqttUrl);
  legit.start();
  return {
    cp,
    legit,
    adminHeaders: () => ({ authorization: `Bearer ${admin}` }),
    deviceHeaders: () => ({ authorization: `Bearer ${LEGIT_TOKEN}` }),
    bodyBytes: config.limits.http.bodyBytes,
    faults,
    async close() {
      await legit.close();
      await cp.close();
      await rm(dir, { recursive: true, force: true });
      process.off('uncaughtException', onException);
      process.off('unhandledRejection', onRejection);
    },
  };
}
