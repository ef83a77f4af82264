import { dirname, resolve } from 'node:path';
import Type from 'typebox';
import { type LoadedConfig, loadConfigFile, validateConfigDocument } from '../common/config-file.ts';
import { ArgusError } from '../common/errors.ts';
import { sha256Hex } from '../common/hash.ts';
import { compileSchema } from '../common/schema.ts';
import { DEVICE_ID_PATTERN } from '../contract/topics.ts';

const HttpSection = Type.Object(
  {
    host: Type.String({ minLength: 1, default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: '0 picks a free port' }),
  },
  { additionalProperties: false, default: {} },
);

const EmbeddedBroker = Type.Object(
  {
    host: Type.String({ minLength: 1, default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 1883, description: '0 picks a free port' }),
    /**
     * devices connect with username = their id and password = their token (see `devices`); each
     * may publish only under its own topics and subscribe only to its own commands
     */
    deviceCredentials: Type.Boolean({ default: false }),
  },
  { additionalProperties: false },
);

const ExternalBroker = Type.Object(
  {
    url: Type.String({ pattern: '^(mqtt|mqtts|ws|wss)://', description: 'e.g. mqtt://mosquitto:1883' }),
    /** fixed so that the broker keeps the session (and what it queued) across restarts */
    clientId: Type.String({ minLength: 1, maxLength: 128, default: 'argus-control-plane' }),
    username: Type.Optional(Type.String({ minLength: 1 })),
    password: Type.Optional(Type.String({ minLength: 1 })),
    /** how long the broker queues messages for the control plane while it is down */
    sessionExpiryS: Type.Integer({ minimum: 60, default: 7 * 24 * 3600 }),
    /** subscribe as `$share/<group>/…` so that several control planes split the load */
    sharedGroup: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' })),
    /**
     * unacknowledged messages the broker may send at once (MQTT v5 receive maximum). Messages are
     * acknowledged after they are stored, so this window bounds the ingest rate: give the broker
     * a matching limit (Mosquitto: `max_inflight_messages 5000`; its default is 20)
     */
    receiveMaximum: Type.Integer({ minimum: 1, maximum: 65535, default: 5000 }),
  },
  { additionalProperties: false },
);

const MqttSection = Type.Object(
  {
    /** the broker inside the control plane (aedes); the default when `external` is not set */
    embedded: Type.Optional(EmbeddedBroker),
    external: Type.Optional(ExternalBroker),
  },
  { additionalProperties: false, default: {} },
);

const SqliteStorage = Type.Object(
  {
    /** database file, relative to the config file */
    path: Type.String({ minLength: 1, default: 'argus.db' }),
    /** `full` survives power loss (an fsync per batch); `normal` survives process crashes only */
    synchronous: Type.Union([Type.Literal('full'), Type.Literal('normal')], { default: 'full' }),
  },
  { additionalProperties: false },
);

const PostgresStorage = Type.Object(
  {
    url: Type.String({ pattern: '^postgres(ql)?://', description: 'e.g. postgres://argus@db:5432/argus' }),
    poolSize: Type.Integer({ minimum: 2, maximum: 100, default: 8 }),
  },
  { additionalProperties: false },
);

const StorageSection = Type.Object(
  {
    /** SQLite (WAL); the default when `postgres` is not set */
    sqlite: Type.Optional(SqliteStorage),
    postgres: Type.Optional(PostgresStorage),
  },
  { additionalProperties: false, default: {} },
);

const IngestSection = Type.Object(
  {
    /**
     * messages written in one transaction at most (each kind of row goes in as one statement, so
     * the bound is the memory and the length of a transaction)
     */
    maxBatch: Type.Integer({ minimum: 1, maximum: 50_000, default: 2500 }),
    /**
     * a batch waits at most this long for more messages before it is written; 0 writes what
     * arrived by the next turn of the event loop (messages arriving during a write form the next
     * batch, so batches grow with the load)
     */
    maxDelayMs: Type.Number({ minimum: 0, maximum: 1000, default: 0 }),
  },
  { additionalProperties: false, default: {} },
);

const KiB = 1024;
const MiB = 1024 * KiB;

const HttpLimits = Type.Object(
  {
    bodyBytes: Type.Integer({
      minimum: 1 * KiB,
      maximum: 64 * MiB,
      default: 64 * KiB,
      description:
        "bytes of a request body at most (413 beyond); snapshot uploads have their own limit, the contract's 4 MiB",
    }),
    jsonDepth: Type.Integer({
      minimum: 2,
      maximum: 1000,
      default: 32,
      description: 'nesting of arrays and objects in a JSON request body at most (400 beyond)',
    }),
    headersTimeoutMs: Type.Integer({
      minimum: 1000,
      maximum: 600_000,
      default: 10_000,
      description:
        'a client must send its request headers within this time of connecting or of its previous request',
    }),
    requestTimeoutMs: Type.Integer({
      minimum: 1000,
      maximum: 3_600_000,
      default: 60_000,
      description:
        'a client must send its whole request (headers and body) within this time; a snapshot of 4 MiB at 1 Mbit/s takes ~35 s',
    }),
    idleTimeoutMs: Type.Integer({
      minimum: 1000,
      maximum: 3_600_000,
      default: 60_000,
      description:
        'a connection on which nothing moves for this long is closed (live streams send a keepalive every 15 s)',
    }),
    keepAliveTimeoutMs: Type.Integer({
      minimum: 100,
      maximum: 600_000,
      default: 5000,
      description: 'an idle keep-alive connection is closed after this long without a new request',
    }),
    connectionsPerAddress: Type.Integer({
      minimum: 1,
      maximum: 100_000,
      default: 64,
      description: 'open HTTP connections from one remote address at most; more are closed at once',
    }),
    connections: Type.Integer({
      minimum: 1,
      maximum: 1_000_000,
      default: 4096,
      description: 'open HTTP connections in all at most; more are closed at once',
    }),
    liveStreams: Type.Integer({
      minimum: 1,
      maximum: 100_000,
      default: 256,
      description: 'live event streams (SSE) open at once at most; more are answered 503 with Retry-After',
    }),
    streamBacklogBytes: Type.Integer({
      minimum: 64 * KiB,
      maximum: 1024 * MiB,
      default: 8 * MiB,
      description:
        'bytes a live stream may hold unsent (its client not reading) before it is cut: ~128 events at the 64 KiB payload limit, ~18,000 typical ones, so several ingest batches at the default maxBatch fit',
    }),
    pageBytes: Type.Integer({
      minimum: 64 * KiB,
      maximum: 256 * MiB,
      default: 4 * MiB,
      description:
        'a page of devices ends early, with its nextCursor, once its identities and telemetry pass this many characters (events are bounded by their limit of 500 at 64 KiB)',
    }),
  },
  { additionalProperties: false, default: {} },
);

const LimitsSection = Type.Object(
  {
    /** bounds of the HTTP API: each counted in `argus_http_limited_total` when it bites */
    http: HttpLimits,
  },
  { additionalProperties: false, default: {} },
);

const DeviceCredential = Type.Object(
  {
    id: Type.String({ pattern: DEVICE_ID_PATTERN }),
    /** the device's token as in its config (`controlPlane.token`) */
    token: Type.Optional(Type.String({ minLength: 16 })),
    /** or only its sha256 (hex), so that the file holds no secret */
    tokenSha256: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$' })),
  },
  { additionalProperties: false },
);

export const ControlPlaneConfigSchema = Type.Object(
  {
    http: HttpSection,
    mqtt: MqttSection,
    storage: StorageSection,
    ingest: IngestSection,
    limits: LimitsSection,
    /** devices allowed to upload snapshots, with their credential */
    devices: Type.Array(DeviceCredential, { default: [] }),
  },
  { additionalProperties: false },
);

type ConfigFile = Type.Static<typeof ControlPlaneConfigSchema>;
export type ExternalBrokerSettings = Type.Static<typeof ExternalBroker>;
export type EmbeddedBrokerSettings = Type.Static<typeof EmbeddedBroker>;
export type SqliteSettings = Type.Static<typeof SqliteStorage>;
export type PostgresSettings = Type.Static<typeof PostgresStorage>;
export type IngestSettings = Type.Static<typeof IngestSection>;
export type HttpLimitSettings = Type.Static<typeof HttpLimits>;

export type BrokerSettings =
  | { kind: 'embedded'; embedded: EmbeddedBrokerSettings }
  | { kind: 'external'; external: ExternalBrokerSettings };
export type StorageSettings =
  | { kind: 'sqlite'; sqlite: SqliteSettings }
  | { kind: 'postgres'; postgres: PostgresSettings };

/** a validated control-plane config: exactly one broker and one storage, paths absolute */
export interface ControlPlaneConfig {
  http: ConfigFile['http'];
  mqtt: BrokerSettings;
  storage: StorageSettings;
  ingest: IngestSettings;
  limits: ConfigFile['limits'];
  devices: { id: string; tokenSha256: string }[];
}

const validator = compileSchema<ConfigFile>(ControlPlaneConfigSchema);
const embeddedDefaults = compileSchema<EmbeddedBrokerSettings>(EmbeddedBroker);
const sqliteDefaults = compileSchema<SqliteSettings>(SqliteStorage);

function resolveConfig(loaded: LoadedConfig<ConfigFile>, baseDir: string): ControlPlaneConfig {
  const v = loaded.value;
  const problems: string[] = [];
  if (v.mqtt.embedded && v.mqtt.external)
    problems.push(`  ${loaded.locate(['mqtt'])}: mqtt: set either "embedded" or "external", not both`);
  if (v.storage.sqlite && v.storage.postgres)
    problems.push(`  ${loaded.locate(['storage'])}: storage: set either "sqlite" or "postgres", not both`);
  const seen = new Set<string>();
  const devices = v.devices.map((d, i) => {
    const where = loaded.locate(['devices', i]);
    if (seen.has(d.id)) problems.push(`  ${where}: devices.${i}: device "${d.id}" is listed twice`);
    seen.add(d.id);
    if (Boolean(d.token) === Boolean(d.tokenSha256))
      problems.push(`  ${where}: devices.${i}: give exactly one of "token" or "tokenSha256"`);
    return { id: d.id, tokenSha256: d.tokenSha256 ?? sha256Hex(d.token ?? '') };
  });
  if (problems.length > 0)
    throw new ArgusError(`control-plane config ${loaded.file} is invalid:\n${problems.join('\n')}`);
  const mqtt: BrokerSettings = v.mqtt.external
    ? { kind: 'external', external: v.mqtt.external }
    : {
        kind: 'embedded',
        embedded: v.mqtt.embedded ?? (embeddedDefaults.withDefaults({}) as EmbeddedBrokerSettings),
      };
  const storage: StorageSettings = v.storage.postgres
    ? { kind: 'postgres', postgres: v.storage.postgres }
    : (() => {
        const sqlite = v.storage.sqlite ?? (sqliteDefaults.withDefaults({}) as SqliteSettings);
        return { kind: 'sqlite', sqlite: { ...sqlite, path: resolve(baseDir, sqlite.path) } } as const;
      })();
  return { http: v.http, mqtt, storage, ingest: v.ingest, limits: v.limits, devices };
}

/** validates a config given as data (e.g. by tests or an embedding program); `baseDir` resolves paths */
export function controlPlaneConfig(data: unknown, baseDir = process.cwd()): ControlPlaneConfig {
  const doc = {
    file: '(config object)',
    data,
    locate: () => '(config object)',
    locateKey: () => '(config object)',
  };
  return resolveConfig(validateConfigDocument(doc, validator, 'control-plane config'), baseDir);
}

/** reads and validates a control-plane config file (YAML); errors give file:line:col and the fix */
export async function loadControlPlaneConfig(file: string): Promise<ControlPlaneConfig> {
  const path = resolve(file);
  return resolveConfig(await loadConfigFile(path, validator, 'control-plane config'), dirname(path));
}
