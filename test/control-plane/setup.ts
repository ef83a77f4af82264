import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type MqttClient } from 'mqtt';
import { type ControlPlane, controlPlaneConfig, startControlPlane } from '../../control-plane/index.ts';

export const TOKEN = 'token-of-box-1-for-tests';

export interface TestControlPlaneOptions {
  dir: string;
  /** an external broker's URL; the embedded broker when absent */
  brokerUrl?: string;
  /** a PostgreSQL URL; SQLite in `dir` when absent */
  postgresUrl?: string;
  clientId?: string;
  /** the `ingest` section of the config */
  ingest?: Record<string, unknown>;
  /** more sections of the config (e.g. `retention`, `health`) */
  config?: Record<string, unknown>;
}

/** a test control plane in its own temporary directory, with an MQTT v5 client on its broker */
export interface ControlPlaneWithClient {
  cp: ControlPlane;
  client: MqttClient;
  /** ends the client, closes the control plane and removes the directory */
  close(): Promise<void>;
}

export async function startControlPlaneWithClient(dirPrefix: string): Promise<ControlPlaneWithClient> {
  const dir = await mkdtemp(join(tmpdir(), dirPrefix));
  const cp = await startTestControlPlane({ dir });
  const client = connect(cp.mqttUrl, { protocolVersion: 5 });
  await new Promise<void>((resolve) => client.once('connect', () => resolve()));
  return {
    cp,
    client,
    async close() {
      await client.endAsync();
      await cp.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** a control plane on free ports with box-1 enrolled (token TOKEN) */
export function startTestControlPlane(o: TestControlPlaneOptions): Promise<ControlPlane> {
  return startControlPlane(
    controlPlaneConfig({
      http: { port: 0 },
      mqtt: o.brokerUrl
        ? { external: { url: o.brokerUrl, clientId: o.clientId ?? 'argus-cp-test' } }
        : { embedded: { port: 0 } },
      storage: o.postgresUrl
        ? { postgres: { url: o.postgresUrl } }
        : { sqlite: { path: join(o.dir, 'argus.db'), synchronous: 'normal' } },
      devices: [{ id: 'box-1', token: TOKEN }],
      ...(o.ingest ? { ingest: o.ingest } : {}),
      ...o.config,
    }),
  );
}

export async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** the value of one Prometheus sample, e.g. `argus_ingest_rejected_total{reason="schema"}` */
export async function metric(httpUrl: string, sample: string): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  if (!line) throw new Error(`no sample ${sample} in /metrics`);
  return Number(line.slice(sample.length + 1));
}
