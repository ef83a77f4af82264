import { dirname, join, resolve } from 'node:path';
import Type from 'typebox';
import { type LoadedConfig, loadConfigFile, validateConfigDocument } from '../common/config-file.ts';
import { ArgusError } from '../common/errors.ts';
import { sha256Hex } from '../common/hash.ts';
import { compileSchema } from '../common/schema.ts';
import { DEVICE_ID_PATTERN } from '../contract/topics.ts';
import { defaultKeyring } from '../models/bundle/keys.ts';
import { MAX_CLAIM_TTL_S } from './enrollment.ts';

const ServerTls = Type.Object(
  {
    /** PEM certificate (with its chain), relative to the config file; `argus ca issue --host …` */
    cert: Type.String({ minLength: 1 }),
    /** PEM private key, relative to the config file (keep it 0600) */
    key: Type.String({ minLength: 1 }),
  },
  { additionalProperties: false },
);

const HttpSection = Type.Object(
  {
    host: Type.String({ minLength: 1, default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: '0 picks a free port' }),
    /** HTTPS with this certificate; without it the API is plain HTTP (warned at start off loopback) */
    tls: Type.Optional(ServerTls),
  },
  { additionalProperties: false, default: {} },
);

const EmbeddedBroker = Type.Object(
  {
    host: Type.String({ minLength: 1, default: '127.0.0.1' }),
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 1883, description: '0 picks a free port' }),
    /**
     * devices connect with username = their id, password = their credential and client id =
     * `argus-<id>`; each may publish only under its own topics and subscribe only to its own
     * commands. `false` (open mode: anyone may do anything) is logged as a warning at every start
     */
    deviceCredentials: Type.Boolean({ default: true }),
    /** largest MQTT packet accepted; a larger one closes the connection before it is read */
    maxPacketBytes: Type.Integer({ minimum: 128 * 1024, maximum: 256 * 1024 * 1024, default: 256 * 1024 }),
    /** a TCP connection that has not sent its MQTT CONNECT within this time is closed */
    connectTimeoutS: Type.Number({ exclusiveMinimum: 0, maximum: 300, default: 10 }),
    /** open connections from one remote address; more are closed at once */
    maxConnectionsPerAddress: Type.Integer({ minimum: 1, maximum: 100_000, default: 100 }),
    /**
     * every this many seconds the credentials of open connections are checked against the
     * database, so that a device revoked by the CLI or another replica is disconnected
     */
    credentialCheckS: Type.Number({ minimum: 0.1, maximum: 300, default: 5 }),
    /** MQTTS (MQTT over TLS) with this certificate instead of plain MQTT */
    tls: Type.Optional(
      Type.Object(
        {
          ...ServerTls.properties,
          /**
           * mutual TLS: a client must show a certificate signed by this CA (PEM, relative to the
           * config file) whose common name is the device id it connects as (its MQTT username);
           * `argus ca issue --client --name <device id>`
           */
          clientCa: Type.Optional(Type.String({ minLength: 1 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

const DynamicSecurity = Type.Object(
  {
    /**
     * the broker's dynamic-security admin (`mosquitto_ctrl dynsec init FILE USER PASSWORD`); the
     * control plane uses it to keep its own role and client (`username`/`password` above, bound to
     * `clientId`: give each replica its own) and one client and role per device
     */
    adminUsername: Type.String({ minLength: 1 }),
    adminPassword: Type.String({ minLength: 8 }),
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
    /**
     * Mosquitto 2's dynamic security plugin: the control plane manages the broker's clients and
     * ACLs (each device publishes and subscribes only under its own topics). Without it the
     * broker's own configuration decides who may do what, and the control plane warns at start.
     */
    dynamicSecurity: Type.Optional(DynamicSecurity),
    /** for an mqtts:// broker with a certificate of the fleet CA (paths relative to the config file) */
    tls: Type.Optional(
      Type.Object(
        {
          /** the CA the broker's certificate must be signed by */
          ca: Type.String({ minLength: 1 }),
          /** a client certificate and key, for a broker that requires one */
          cert: Type.Optional(Type.String({ minLength: 1 })),
          key: Type.Optional(Type.String({ minLength: 1 })),
        },
        { additionalProperties: false },
      ),
    ),
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
    /**
     * nesting of arrays and objects a message may have (checked before it is parsed); deeper ones
     * are rejected as `too_deep`. The contract's own messages need 4
     */
    maxJsonDepth: Type.Integer({ minimum: 4, maximum: 128, default: 32 }),
    /**
     * messages per device: a token bucket of `burst` messages refilled at `messagesPerSecond`. A
     * device over it has its acknowledgements paced (QoS 1: it slows down, nothing is lost);
     * other devices are not slowed. The burst covers a box's spool replay after a long outage
     */
    deviceRate: Type.Object(
      {
        messagesPerSecond: Type.Number({ minimum: 1, maximum: 1_000_000, default: 1000 }),
        burst: Type.Integer({ minimum: 1, maximum: 10_000_000, default: 60_000 }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, default: {} },
);

/** how long and how much of one kind of row is kept; the older rows go first */
const RetentionLimit = (maxAgeDays: number, maxMiB: number, what: string) =>
  Type.Object(
    {
      maxAgeDays: Type.Number({
        exclusiveMinimum: 0,
        default: maxAgeDays,
        description: `${what} older than this (days) are deleted`,
      }),
      maxMiB: Type.Number({
        exclusiveMinimum: 0,
        default: maxMiB,
        description: `${what} beyond this total (MiB, estimated from the stored bytes) are deleted, oldest first`,
      }),
    },
    { additionalProperties: false, default: {} },
  );

const RetentionSection = Type.Object(
  {
    /** false: nothing is ever deleted (the database grows without bound) */
    enabled: Type.Boolean({ default: true }),
    /** a retention run every this many seconds, on the one replica holding the `retention` lease */
    intervalS: Type.Number({ minimum: 1, default: 600 }),
    /** rows deleted in one transaction: ingest waits for one such transaction at most */
    batchRows: Type.Integer({ minimum: 1, maximum: 10_000, default: 1000 }),
    /** pause between two deleting transactions, so that ingest keeps its pace */
    pauseMs: Type.Number({ minimum: 0, maximum: 10_000, default: 50 }),
    /**
     * The defaults fit a 16 GB disk beside the system (about 5.5 GiB in all): snapshots are the
     * bulk (~7 MB a minute for two cameras at the demo's rate), so pictures go after a week and
     * events after a month
     */
    events: RetentionLimit(30, 1024, 'event messages'),
    snapshots: RetentionLimit(7, 4096, 'snapshots'),
    cameraStatuses: RetentionLimit(30, 64, "camera status messages (each camera's latest is kept)"),
    telemetry: RetentionLimit(14, 256, 'telemetry history messages'),
    availability: RetentionLimit(30, 16, "device availability changes (each device's latest is kept)"),
    audit: RetentionLimit(365, 256, 'audit entries (logins and state changes)'),
    quarantine: RetentionLimit(14, 256, 'quarantined messages'),
    commands: RetentionLimit(30, 16, 'commands sent to devices, with their results'),
    /** only artifacts no rollout references go, bytes and row; the newest unreferenced first kept */
    artifacts: RetentionLimit(90, 10_240, 'published artifacts that no rollout references'),
    /** frames the boxes harvested for the loop (issue 18), row and JPEG */
    harvest: RetentionLimit(30, 5_120, 'harvested frames'),
  },
  { additionalProperties: false, default: {} },
);

const HealthSection = Type.Object(
  {
    /**
     * a device that sent nothing for this long counts as offline, its cameras unknown and its
     * telemetry stale: three heartbeats at the device's default `heartbeatS` (30 s)
     */
    staleAfterS: Type.Number({ minimum: 1, default: 90 }),
    /** how often the replica holding the `device-health` lease records devices falling silent */
    sweepS: Type.Number({ exclusiveMinimum: 0, default: 15 }),
  },
  { additionalProperties: false, default: {} },
);

const RolloutsSection = Type.Object(
  {
    /** how often the replica holding the `rollouts` lease drives the rollouts (sends, timeouts, waves) */
    tickS: Type.Number({ exclusiveMinimum: 0, maximum: 3600, default: 2 }),
    /** an assignment sent and not answered is published again this often (the device dedupes by its id) */
    resendS: Type.Number({ minimum: 1, maximum: 86_400, default: 60 }),
    /** commands (update, update-cancel) published per tick at most */
    maxSendsPerTick: Type.Integer({ minimum: 1, maximum: 100_000, default: 1000 }),
  },
  { additionalProperties: false, default: {} },
);

const LeasesSection = Type.Object(
  {
    /**
     * a replica that stops renewing a lease (killed, cut off from the database) loses it after
     * this long, and another replica takes the job on (rollouts, the health sweep, retention, the
     * broker sync): shorter fails over sooner, at one renewal write a third of it per job
     */
    ttlS: Type.Number({ minimum: 3, maximum: 600, default: 30 }),
  },
  { additionalProperties: false, default: {} },
);

const EnrollmentSection = Type.Object(
  {
    /** how long a claim token of `argus control-plane enroll` stays valid unless `--ttl` says otherwise */
    claimTtlS: Type.Integer({ minimum: 60, maximum: MAX_CLAIM_TTL_S, default: 24 * 3600 }),
    /** claim exchanges and credential rotations per minute from one address */
    exchangesPerMinute: Type.Integer({ minimum: 1, maximum: 10_000, default: 20 }),
    /**
     * with an external broker: every this many seconds the broker is told of the revocations of
     * the last ten minutes (made by the CLI or another replica) and pending rotations are sent, by
     * the one replica holding the `broker-credentials` lease
     */
    brokerSyncS: Type.Number({ minimum: 0.5, maximum: 300, default: 5 }),
  },
  { additionalProperties: false, default: {} },
);

const AuthSection = Type.Object(
  {
    /** a browser session ends this long after its login */
    sessionTtlS: Type.Integer({ minimum: 60, maximum: 30 * 24 * 3600, default: 12 * 3600 }),
    /** login attempts one address may make per `addressWindowS` (further attempts answer 429) */
    loginsPerAddress: Type.Integer({ minimum: 1, maximum: 10_000, default: 20 }),
    addressWindowS: Type.Integer({ minimum: 1, maximum: 3600, default: 60 }),
    /**
     * failed logins of one account, from any address, within `accountWindowS` after which the
     * account's logins answer 429 until the window has passed (counted in the database, so every
     * replica agrees)
     */
    failuresPerAccount: Type.Integer({ minimum: 1, maximum: 1000, default: 5 }),
    accountWindowS: Type.Integer({ minimum: 1, maximum: 24 * 3600, default: 900 }),
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
        'a client must send its whole request (headers and body) within this time (408 beyond); a snapshot of 4 MiB at 1 Mbit/s takes ~35 s. A bundle upload (POST /api/v1/artifacts) may take longer while it keeps sending: it is ended once no byte came for this long',
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
    deviceUploadsPerMinute: Type.Integer({
      minimum: 1,
      maximum: 100_000,
      default: 600,
      description:
        'snapshot uploads, and apart from them harvested-frame uploads, one device may make per minute (each counted once its credential is checked); more are answered 429 with Retry-After, and the box keeps them queued. A harvest budget of 3,600 frames an hour, its maximum, is 60 a minute; a box back from a day offline drains 1,440 frames at the default budget in under 3 minutes',
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

const ArtifactsSection = Type.Object(
  {
    /**
     * where the registry keeps the bytes of published bundles (content-addressed, relative to the
     * config file); default: `artifacts/` beside the SQLite database, or beside the config file
     * with PostgreSQL. Created on the first publication
     */
    dir: Type.Optional(Type.String({ minLength: 1 })),
    /**
     * the trusted factory keys (a directory of `<key id>.pub`, as `argus keys trust` writes it):
     * a bundle is published only when one of them signed it. Default: the keyring the model
     * factory writes on this machine (`$ARGUS_KEYS_DIR/trusted`, else `~/.config/argus/keys/trusted`)
     */
    keyring: Type.Optional(Type.String({ minLength: 1 })),
    /** bytes of one uploaded bundle at most (413 beyond, checked as it streams) */
    maxUploadBytes: Type.Integer({ minimum: 1024, maximum: 4 * 1024 * MiB, default: 128 * MiB }),
    /**
     * uploads received and verified at once (503 with Retry-After beyond): each streams to a
     * staging file in `dir` and is verified as a stream, holding its manifest, signature and
     * descriptor (a few KiB) in memory, never the model file
     */
    uploadsAtOnce: Type.Integer({ minimum: 1, maximum: 64, default: 2 }),
    /** downloads one device may have open at once (429 with Retry-After beyond) */
    downloadsPerDevice: Type.Integer({ minimum: 1, maximum: 64, default: 2 }),
    /**
     * downloads open at once in all (503 with Retry-After beyond); each is streamed with
     * backpressure and holds ~64 KiB of memory
     */
    downloads: Type.Integer({ minimum: 1, maximum: 100_000, default: 2048 }),
  },
  { additionalProperties: false, default: {} },
);

const ScenesSection = Type.Object(
  {
    /**
     * the private key that signs the scenes the console's editor publishes (PKCS#8 PEM as
     * `argus keys generate NAME` writes it, `<keys dir>/signing/NAME.key`; relative to the config
     * file). Its public key must be in `artifacts.keyring` and in the boxes' `ota.keyring`. None
     * by default: the editor then previews but does not publish, and says what to set
     */
    signingKey: Type.Optional(Type.String({ minLength: 1 })),
    /** the recordings a scene preview may replay, by name: video files (relative to the config file) */
    recordings: Type.Record(
      Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' }),
      Type.String({ minLength: 1 }),
      {
        default: {},
        maxProperties: 64,
      },
    ),
    /** the detector a preview runs (a catalog model name or a model directory) */
    model: Type.String({ minLength: 1, default: 'nanodet' }),
    /** a preview is stopped after this long, with the events it raised so far */
    previewTimeoutS: Type.Number({ minimum: 1, maximum: 600, default: 60 }),
    /** seconds of a recording one preview replays at most */
    previewSeconds: Type.Number({ minimum: 1, maximum: 3600, default: 60 }),
    /** previews running at once on this control plane (each operator runs one at a time) */
    previewsAtOnce: Type.Integer({ minimum: 1, maximum: 16, default: 1 }),
    /** a published scene bundle expires this many days after it was built */
    expiresInDays: Type.Integer({ minimum: 1, maximum: 3650, default: 365 }),
  },
  { additionalProperties: false, default: {} },
);

const LoopSection = Type.Object(
  {
    /**
     * where each loop run keeps its steps' outputs, one directory per run (relative to the config
     * file); default: `loop/` beside the SQLite database, or beside the config file
     */
    dir: Type.Optional(Type.String({ minLength: 1 })),
    /**
     * the private key that signs a passing candidate (as `argus keys generate NAME` writes it;
     * relative to the config file): its public key must be in `artifacts.keyring` and the boxes'
     * `ota.keyring`. None by default: the run then fails at its end, saying what to set
     */
    signingKey: Type.Optional(Type.String({ minLength: 1 })),
    /** how often a running run checks that it may go on (the lease, a cancellation), seconds */
    checkS: Type.Number({ minimum: 0.1, maximum: 60, default: 1 }),
    /** how often a worker looks for a queued run, seconds */
    pollS: Type.Number({ minimum: 0.1, maximum: 3600, default: 5 }),
    /**
     * the loop's own settings: `annotated` (required: the hand-annotated frames the gate checks),
     * `teacher`, `baseline`, `student`, `adapt`, `gate`, `calibrationFrames`, `threads` …, validated
     * by their own schema (models/loop/settings.ts, LoopSettingsSchema) when a worker or `loop run`
     * opens the job
     */
    options: Type.Record(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9]{0,63}$' }), Type.Unknown(), {
      default: {},
      maxProperties: 32,
    }),
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
    retention: RetentionSection,
    health: HealthSection,
    rollouts: RolloutsSection,
    /** the leases under which one replica at a time runs each job */
    leases: LeasesSection,
    enrollment: EnrollmentSection,
    /** operators' logins: sessions and their throttling */
    auth: AuthSection,
    limits: LimitsSection,
    /** the artifact registry: signed model and scene bundles for over-the-air updates */
    artifacts: ArtifactsSection,
    /** the console's scene editor: previews of a scene on a recording, publication as a signed bundle */
    scenes: ScenesSection,
    /** the data–model loop as a job (`argus loop worker`, `argus loop run`) */
    loop: LoopSection,
    /**
     * pre-provisioned device credentials (besides those issued through enrollment): used until
     * the device is rotated, re-enrolled or revoked
     */
    devices: Type.Array(DeviceCredential, { default: [] }),
  },
  { additionalProperties: false },
);

type ConfigFile = Type.Static<typeof ControlPlaneConfigSchema>;
export type ExternalBrokerSettings = Type.Static<typeof ExternalBroker>;
export type DynamicSecuritySettings = Type.Static<typeof DynamicSecurity>;
export type EmbeddedBrokerSettings = Type.Static<typeof EmbeddedBroker>;
export type ServerTlsSettings = Type.Static<typeof ServerTls>;
export type EmbeddedTlsSettings = EmbeddedBrokerSettings['tls'] & {};
export type SqliteSettings = Type.Static<typeof SqliteStorage>;
export type PostgresSettings = Type.Static<typeof PostgresStorage>;
export type IngestSettings = Type.Static<typeof IngestSection>;
export type RetentionSettings = Type.Static<typeof RetentionSection>;
export type RetentionLimitSettings = Type.Static<ReturnType<typeof RetentionLimit>>;
export type HealthSettings = Type.Static<typeof HealthSection>;
export type RolloutSettings = Type.Static<typeof RolloutsSection>;
export type EnrollmentSettings = Type.Static<typeof EnrollmentSection>;
export type AuthSettings = Type.Static<typeof AuthSection>;
export type HttpLimitSettings = Type.Static<typeof HttpLimits>;
/** the `scenes` section with its paths resolved */
export type SceneEditorSettings = Type.Static<typeof ScenesSection>;
/** the `loop` section with its paths resolved */
export type LoopSettings = Omit<Type.Static<typeof LoopSection>, 'dir'> & { dir: string };
/** the `artifacts` section with its paths resolved */
export type ArtifactSettings = Omit<Type.Static<typeof ArtifactsSection>, 'dir' | 'keyring'> & {
  dir: string;
  keyring: string;
};

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
  retention: RetentionSettings;
  health: HealthSettings;
  rollouts: RolloutSettings;
  leases: ConfigFile['leases'];
  enrollment: EnrollmentSettings;
  auth: AuthSettings;
  limits: ConfigFile['limits'];
  artifacts: ArtifactSettings;
  scenes: SceneEditorSettings;
  loop: LoopSettings;
  devices: ProvisionedDevice[];
}

/** a device of the config's `devices` list */
export interface ProvisionedDevice {
  id: string;
  tokenSha256: string;
  /** the token itself when the config gives it (a broker that checks passwords needs it) */
  token?: string;
}

const validator = compileSchema<ConfigFile>(ControlPlaneConfigSchema);
const embeddedDefaults = compileSchema<EmbeddedBrokerSettings>(EmbeddedBroker);
const sqliteDefaults = compileSchema<SqliteSettings>(SqliteStorage);

function resolveConfig(loaded: LoadedConfig<ConfigFile>, baseDir: string): ControlPlaneConfig {
  const v = loaded.value;
  const problems: string[] = [];
  if (v.mqtt.embedded && v.mqtt.external)
    problems.push(`  ${loaded.locate(['mqtt'])}: mqtt: set either "embedded" or "external", not both`);
  const external = v.mqtt.external;
  if (external?.dynamicSecurity && !(external.username && external.password))
    problems.push(
      `  ${loaded.locate(['mqtt', 'external'])}: mqtt.external: with "dynamicSecurity", give the control plane's own "username" and "password" (its broker client is created with them)`,
    );
  if (external?.tls && Boolean(external.tls.cert) !== Boolean(external.tls.key))
    problems.push(
      `  ${loaded.locate(['mqtt', 'external', 'tls'])}: mqtt.external.tls: give both "cert" and "key", or neither`,
    );
  if (v.mqtt.embedded?.tls?.clientCa && !v.mqtt.embedded.deviceCredentials)
    problems.push(
      `  ${loaded.locate(['mqtt', 'embedded', 'tls', 'clientCa'])}: mqtt.embedded.tls.clientCa: mutual TLS binds a certificate to the device it connects as: set "deviceCredentials: true" too`,
    );
  if (v.storage.sqlite && v.storage.postgres)
    problems.push(`  ${loaded.locate(['storage'])}: storage: set either "sqlite" or "postgres", not both`);
  const seen = new Set<string>();
  const devices = v.devices.map((d, i) => {
    const where = loaded.locate(['devices', i]);
    if (seen.has(d.id)) problems.push(`  ${where}: devices.${i}: device "${d.id}" is listed twice`);
    seen.add(d.id);
    if (Boolean(d.token) === Boolean(d.tokenSha256))
      problems.push(`  ${where}: devices.${i}: give exactly one of "token" or "tokenSha256"`);
    return {
      id: d.id,
      tokenSha256: d.tokenSha256 ?? sha256Hex(d.token ?? ''),
      ...(d.token ? { token: d.token } : {}),
    };
  });
  if (problems.length > 0)
    throw new ArgusError(`control-plane config ${loaded.file} is invalid:\n${problems.join('\n')}`);
  const path = (p: string) => resolve(baseDir, p);
  const embedded = v.mqtt.embedded ?? (embeddedDefaults.withDefaults({}) as EmbeddedBrokerSettings);
  const mqtt: BrokerSettings = external
    ? {
        kind: 'external',
        external: external.tls
          ? {
              ...external,
              tls: {
                ca: path(external.tls.ca),
                ...(external.tls.cert ? { cert: path(external.tls.cert) } : {}),
                ...(external.tls.key ? { key: path(external.tls.key) } : {}),
              },
            }
          : external,
      }
    : {
        kind: 'embedded',
        embedded: embedded.tls
          ? {
              ...embedded,
              tls: {
                cert: path(embedded.tls.cert),
                key: path(embedded.tls.key),
                ...(embedded.tls.clientCa ? { clientCa: path(embedded.tls.clientCa) } : {}),
              },
            }
          : embedded,
      };
  const http = v.http.tls
    ? { ...v.http, tls: { cert: path(v.http.tls.cert), key: path(v.http.tls.key) } }
    : v.http;
  const storage: StorageSettings = v.storage.postgres
    ? { kind: 'postgres', postgres: v.storage.postgres }
    : (() => {
        const sqlite = v.storage.sqlite ?? (sqliteDefaults.withDefaults({}) as SqliteSettings);
        return { kind: 'sqlite', sqlite: { ...sqlite, path: path(sqlite.path) } } as const;
      })();
  const artifacts: ArtifactSettings = {
    ...v.artifacts,
    dir: v.artifacts.dir
      ? path(v.artifacts.dir)
      : storage.kind === 'sqlite'
        ? join(dirname(storage.sqlite.path), 'artifacts')
        : path('artifacts'),
    keyring: v.artifacts.keyring ? path(v.artifacts.keyring) : defaultKeyring(),
  };
  const scenes: SceneEditorSettings = {
    ...v.scenes,
    ...(v.scenes.signingKey ? { signingKey: path(v.scenes.signingKey) } : {}),
    recordings: Object.fromEntries(Object.entries(v.scenes.recordings).map(([k, f]) => [k, path(f)])),
  };
  const loop: LoopSettings = {
    ...v.loop,
    dir: v.loop.dir
      ? path(v.loop.dir)
      : storage.kind === 'sqlite'
        ? join(dirname(storage.sqlite.path), 'loop')
        : path('loop'),
    ...(v.loop.signingKey ? { signingKey: path(v.loop.signingKey) } : {}),
  };
  return {
    http,
    mqtt,
    storage,
    artifacts,
    scenes,
    loop,
    ingest: v.ingest,
    retention: v.retention,
    health: v.health,
    rollouts: v.rollouts,
    leases: v.leases,
    enrollment: v.enrollment,
    auth: v.auth,
    limits: v.limits,
    devices,
  };
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
