import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type IClientOptions, type IClientPublishOptions, type MqttClient } from 'mqtt';
import { deviceClientId } from '../../contract/index.ts';
import type { AuthSettings } from '../../control-plane/config.ts';
import {
  type ControlPlane,
  type ControlPlaneParts,
  controlPlaneConfig,
  openRepository,
  startControlPlane,
} from '../../control-plane/index.ts';
import { ApiTokens } from '../../control-plane/storage/api-tokens.ts';
import type { SqlAccess } from '../../control-plane/storage/sql-access.ts';

/** the pre-provisioned credential of a test device (the control-plane config's `devices` list) */
export const tokenOf = (device: string): string => `token-of-${device}-for-tests`;
export const TOKEN = tokenOf('box-1');
/** the devices every test control plane knows, each with the credential tokenOf(device) */
export const TEST_DEVICES = ['box-1', 'box-2', 'box-3', 'box-4', 'box-5', 'box-311'];

/**
 * An MQTT client connected as `device`, the way a box connects (client id `argus-<device>`,
 * username the device id, password its credential); rejects with the broker's refusal.
 */
export function deviceClient(
  url: string,
  device: string,
  options: IClientOptions & { credential?: string } = {},
): Promise<MqttClient> {
  const { credential, ...rest } = options;
  const client = connect(url, {
    protocolVersion: 5,
    reconnectPeriod: 0,
    clientId: deviceClientId(device),
    username: device,
    password: credential ?? tokenOf(device),
    ...rest,
  });
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', (err) => {
      client.end(true);
      reject(err);
    });
  });
}

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
  /** settings of the embedded broker besides its port */
  embedded?: Record<string, unknown>;
  /**
   * the embedded broker in open mode, explicitly (deviceCredentials false): one plain client may
   * publish as many devices would, each hostile or not; that devices act only as themselves is
   * mqtt-auth.test.ts's subject
   */
  openMode?: boolean;
  enrollment?: Record<string, unknown>;
  /** the control plane's `auth` section */
  auth?: Partial<AuthSettings>;
  /** parts given instead of the defaults (e.g. which artifacts are assigned to which device) */
  parts?: ControlPlaneParts;
}

/**
 * a plain MQTT v5 client (no credentials) of a broker that lets anyone connect: the embedded one
 * in `openMode`, or the test Mosquitto without dynamic security
 */
export async function openClient(url: string, clientId?: string): Promise<MqttClient> {
  const client = connect(url, { protocolVersion: 5, reconnectPeriod: 0, ...(clientId ? { clientId } : {}) });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

/** publishes with QoS 1 and waits for the PUBACK, failing (a stall) when none comes in `ms` */
export async function acked(
  client: MqttClient,
  topic: string,
  payload: string | Buffer,
  options: IClientPublishOptions = {},
  ms = 10_000,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    client.publishAsync(topic, payload, { qos: 1, ...options }),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`stalled: no PUBACK within ${ms} ms on ${topic}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** a test control plane in its own temporary directory, with an MQTT v5 client of box-1 on its broker */
export interface ControlPlaneWithClient {
  cp: ControlPlane;
  client: MqttClient;
  /** ends the client, closes the control plane and removes the directory */
  close(): Promise<void>;
}

export async function startControlPlaneWithClient(dirPrefix: string): Promise<ControlPlaneWithClient> {
  const dir = await mkdtemp(join(tmpdir(), dirPrefix));
  const cp = await startTestControlPlane({ dir });
  const client = await deviceClient(cp.mqttUrl, 'box-1');
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

/**
 * a control plane on free ports, device credentials on, with TEST_DEVICES provisioned (tokenOf)
 * and an admin API token, which `getJson`, `metric` and `apiFetch` send to it
 */
export async function startTestControlPlane(o: TestControlPlaneOptions): Promise<ControlPlane> {
  const cp = await startControlPlane(
    controlPlaneConfig({
      http: { port: 0 },
      mqtt: o.brokerUrl
        ? { external: { url: o.brokerUrl, clientId: o.clientId ?? 'argus-cp-test' } }
        : { embedded: { port: 0, ...(o.openMode ? { deviceCredentials: false } : {}), ...o.embedded } },
      storage: o.postgresUrl
        ? { postgres: { url: o.postgresUrl } }
        : { sqlite: { path: join(o.dir, 'argus.db'), synchronous: 'normal' } },
      ...(o.enrollment ? { enrollment: o.enrollment } : {}),
      devices: TEST_DEVICES.map((id) => ({ id, token: tokenOf(id) })),
      ...(o.ingest ? { ingest: o.ingest } : {}),
      ...o.config,
      ...(o.auth ? { auth: o.auth } : {}),
    }),
    undefined,
    o.parts,
  );
  useToken(cp.httpUrl, await createAdminToken(cp.repository.sql));
  return cp;
}

/** the API credential sent to each test control plane, by origin */
const tokens = new Map<string, string>();

/** from now on, `apiFetch`, `getJson` and `metric` send `token` to the control plane at `httpUrl` */
export function useToken(httpUrl: string, token: string): void {
  tokens.set(new URL(httpUrl).origin, token);
}

/** the admin API token `apiFetch` sends to the control plane at `httpUrl` */
export function tokenFor(httpUrl: string): string {
  const token = tokens.get(new URL(httpUrl).origin);
  if (!token) throw new Error(`no API token for ${httpUrl}: call useToken first`);
  return token;
}

/** a new admin API token, made through the control plane's token store */
export async function createAdminToken(sql: SqlAccess): Promise<string> {
  return (await new ApiTokens(sql).create('tests', 'admin', 'tests')).secret;
}

/**
 * an admin API token in the SQLite database of a control plane that runs in another process
 * (`argus control-plane run`): call before starting it, then `useToken` with its URL
 */
export async function createAdminTokenInFile(sqlitePath: string): Promise<string> {
  const repo = await openRepository({ kind: 'sqlite', sqlite: { path: sqlitePath, synchronous: 'normal' } });
  try {
    return await createAdminToken(repo.sql);
  } finally {
    await repo.close();
  }
}

/** logs in to the control plane at `httpUrl` and makes an API token with the account's session */
export async function tokenByLogin(httpUrl: string, name: string, password: string): Promise<string> {
  const login = await fetch(`${httpUrl}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, password }),
  });
  if (!login.ok) throw new Error(`login as ${name}: ${login.status} ${await login.text()}`);
  const { csrfToken, role } = (await login.json()) as { csrfToken: string; role: string };
  const res = await fetch(`${httpUrl}/api/v1/tokens`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      cookie: login.headers.get('set-cookie')!.split(';')[0]!,
      'x-csrf-token': csrfToken,
    },
    body: JSON.stringify({ name: 'tests', role }),
  });
  if (res.status !== 201) throw new Error(`POST /api/v1/tokens: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { secret: string }).secret;
}

/** fetch with the admin token of the control plane at `url` (unless the request sets authorization) */
export function apiFetch(url: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (!headers.has('authorization')) headers.set('authorization', `Bearer ${tokenFor(url)}`);
  return fetch(url, { ...init, headers });
}

export async function getJson<T>(url: string): Promise<T> {
  const res = await apiFetch(url);
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** the value of one Prometheus sample, e.g. `argus_ingest_rejected_total{reason="schema"}` */
export async function metric(httpUrl: string, sample: string): Promise<number> {
  const text = await (await apiFetch(`${httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  if (!line) throw new Error(`no sample ${sample} in /metrics`);
  return Number(line.slice(sample.length + 1));
}
