import { dirname, resolve } from 'node:path';
import Type from 'typebox';
import { type LoadedConfig, loadConfigFile } from '../common/config-file.ts';
import { ArgusError } from '../common/errors.ts';
import { compileSchema } from '../common/schema.ts';
import { DEVICE_ID_PATTERN, deviceClientId } from '../contract/topics.ts';
import { isModelPath } from '../inference/model-dir.ts';
import { DetectorSettingsSchema } from '../inference/settings.ts';
import { CameraSettingsSchema } from '../pipelines/camera-settings.ts';
import { HarvestConfigSchema } from '../pipelines/harvest/config.ts';

const MiB = 1024 * 1024;

const DeviceSection = Type.Object(
  {
    id: Type.String({
      pattern: DEVICE_ID_PATTERN,
      description: 'unique in the fleet: lower-case letters, digits, "-" and "_", at most 63 characters',
    }),
    /** "auto" derives it from the CPU and board, e.g. x86_64-avx512, rk3588-npu, jetson-orin */
    hardwareClass: Type.String({ minLength: 1, default: 'auto' }),
  },
  { additionalProperties: false },
);

const MqttSection = Type.Object(
  {
    url: Type.String({ pattern: '^(mqtt|mqtts|ws|wss)://', description: 'e.g. mqtts://broker.example:8883' }),
    keepaliveS: Type.Integer({ minimum: 5, maximum: 65535, default: 30 }),
    /** telemetry (the heartbeat) every this many seconds */
    heartbeatS: Type.Number({ minimum: 1, default: 30 }),
    /** how long the broker keeps the session (queued commands) while the device is away */
    sessionExpiryS: Type.Integer({ minimum: 60, default: 7 * 24 * 3600 }),
    reconnectS: Type.Number({ exclusiveMinimum: 0, maximum: 300, default: 1 }),
    /** spooled messages published and awaiting their PUBACK at once */
    inflight: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
    /** on shutdown, wait at most this long for spooled messages to be acknowledged */
    shutdownFlushS: Type.Number({ minimum: 0, maximum: 120, default: 5 }),
  },
  { additionalProperties: false },
);

const ControlPlaneSection = Type.Object(
  {
    url: Type.String({ pattern: '^https?://', description: 'base URL, e.g. https://argus.example' }),
    /**
     * a pre-provisioned credential (listed in the control-plane config's `devices`); without it
     * the box enrolls with `claimToken`
     */
    token: Type.Optional(Type.String({ minLength: 16, maxLength: 512 })),
    /**
     * the one-time claim token of `argus control-plane enroll <device>`: at the first start the
     * box exchanges it for its own credential, stored in `credentialFile`; worthless afterwards.
     * Another claim token here later enrolls the box again (e.g. after a revocation)
     */
    claimToken: Type.Optional(Type.String({ minLength: 16, maxLength: 128 })),
    /**
     * where the device's credential is kept (mode 0600), relative to the config file; default
     * `<device id>.credential` next to it. It is used for MQTT (username = device id, password =
     * credential) and as `Authorization: Bearer` for uploads
     */
    credentialFile: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);

const TlsSection = Type.Object(
  {
    /**
     * the fleet CA (PEM, relative to the config file; `argus ca init`): the broker's (mqtts://) and
     * the control plane's (https://) certificates must be signed by it and name the host connected to
     */
    ca: Type.String({ minLength: 1 }),
    /** the box's client certificate for mutual TLS (`argus ca issue --client --name <device id>`) */
    cert: Type.Optional(Type.String({ minLength: 1 })),
    /** its private key (keep it 0600) */
    key: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);

const SpoolSection = Type.Object(
  {
    /** SQLite file, relative to the config file */
    path: Type.String({ minLength: 1, default: 'spool.db' }),
    /** messages kept for the uplink; beyond it the oldest are dropped and counted */
    maxMessages: Type.Integer({ minimum: 10, default: 1_000_000 }),
    maxBytes: Type.Integer({ minimum: MiB / 4, default: 512 * MiB }),
    /** snapshots waiting for upload; beyond either limit the oldest are dropped and counted */
    maxSnapshots: Type.Integer({ minimum: 0, default: 100_000 }),
    maxSnapshotBytes: Type.Integer({ minimum: 0, default: 1024 * MiB }),
    /**
     * harvested frames waiting for upload (a queue of their own: they never push out an event's
     * snapshot); beyond either limit the oldest are dropped and counted
     */
    maxHarvestFrames: Type.Integer({ minimum: 0, default: 2000 }),
    maxHarvestBytes: Type.Integer({ minimum: 0, default: 256 * MiB }),
    /**
     * after a restart, an event the previous run left open (e.g. killed) continues when its camera
     * reports the same rule and place within this many seconds (a parked car still parked), else
     * it ends with reason "agent restarted"
     */
    resumeOpenEventsS: Type.Number({ minimum: 0, maximum: 3600, default: 120 }),
    /** `full` survives power loss (an fsync per event); `normal` survives process crashes only */
    sync: Type.Union([Type.Literal('full'), Type.Literal('normal')], { default: 'full' }),
  },
  { additionalProperties: false, default: {} },
);

const HealthSection = Type.Object(
  {
    host: Type.String({ minLength: 1, default: '127.0.0.1' }),
    /** 0 picks a free port (logged at start) */
    port: Type.Integer({ minimum: 0, maximum: 65535, default: 8099 }),
  },
  { additionalProperties: false, default: {} },
);

const RecordedSection = Type.Object(
  {
    /** JSON lines as written by `argus replay --json --snapshots DIR`, relative to the config file */
    events: Type.String({ minLength: 1 }),
    /** messages per second per camera */
    eventsPerSecond: Type.Number({ exclusiveMinimum: 0, maximum: 10_000, default: 1 }),
    /** start again at the end of the recording */
    loop: Type.Boolean({ default: true }),
  },
  { additionalProperties: false },
);

const OtaSection = Type.Object(
  {
    /**
     * the updater's directory, relative to the config file (default `<device id>.ota` next to it):
     * the model and scene slots, the committed pointer, the trusted versions, downloads in progress
     */
    dir: Type.Optional(Type.String({ minLength: 1 })),
    /** download bandwidth cap in bytes per second over every download of the box; 0 = none */
    maxBytesPerS: Type.Integer({ minimum: 0, default: 0 }),
    /** directory of trusted bundle keys (`*.pub`), relative to the config file; default `$ARGUS_KEYS_DIR/trusted` */
    keyring: Type.Optional(Type.String({ minLength: 1 })),
    /** absolute limits a downloaded bundle is read within (stored and expanded bytes, per file, files) */
    limits: Type.Object(
      {
        maxBundleBytes: Type.Integer({ minimum: 1024, default: 128 * MiB }),
        maxExpandedBytes: Type.Integer({ minimum: 1024, default: 128 * MiB }),
        maxFileBytes: Type.Integer({ minimum: 1024, default: 128 * MiB }),
        maxFiles: Type.Integer({ minimum: 2, maximum: 1000, default: 16 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** at most one download progress status per this many seconds */
    progressS: Type.Number({ minimum: 0.1, maximum: 3600, default: 5 }),
    /** the health window's figures are sampled every this many seconds */
    sampleS: Type.Number({ minimum: 0.05, maximum: 60, default: 1 }),
    /** longest wait between download attempts after a cut */
    retryMaxS: Type.Number({ minimum: 0.1, maximum: 3600, default: 30 }),
  },
  { additionalProperties: false, default: {} },
);

export const DeviceConfigSchema = Type.Object(
  {
    device: DeviceSection,
    mqtt: MqttSection,
    controlPlane: ControlPlaneSection,
    /** how the box verifies the broker and the control plane; without it the system's CAs are used */
    tls: Type.Optional(TlsSection),
    spool: SpoolSection,
    /** frames worth teaching the model from, chosen on the box on a budget (pipelines/harvest/config.ts) */
    harvest: HarvestConfigSchema,
    detector: Type.Object(DetectorSettingsSchema.properties, { additionalProperties: false, default: {} }),
    cameras: Type.Array(CameraSettingsSchema, { default: [] }),
    health: HealthSection,
    /** replay recorded pipeline events instead of running cameras (wiring and control-plane tests) */
    recorded: Type.Optional(RecordedSection),
    /** over-the-air updates of the model and the scenes (ota/updater) */
    ota: OtaSection,
  },
  { additionalProperties: false },
);

export type DeviceConfigFile = Type.Static<typeof DeviceConfigSchema>;
export type MqttSettings = DeviceConfigFile['mqtt'];
export type SpoolSettings = DeviceConfigFile['spool'];
export type DeviceTlsSettings = DeviceConfigFile['tls'] & {};
export type RecordedSettings = DeviceConfigFile['recorded'] & {};
export type OtaConfig = DeviceConfigFile['ota'] & { dir: string };

/** a validated device config; `spool.path`, `recorded.events`, the `tls` files and the `ota` paths are absolute */
export interface DeviceConfig extends DeviceConfigFile {
  /** the config file */
  file: string;
  /** its directory: the base of relative paths (scenes, spool, recordings) */
  dir: string;
  /** the client id is always deviceClientId (`argus-<device id>`): brokers bind it to the device */
  mqtt: MqttSettings & { clientId: string };
  controlPlane: DeviceConfigFile['controlPlane'] & { credentialFile: string };
  ota: OtaConfig;
}

const validator = compileSchema<DeviceConfigFile>(DeviceConfigSchema);

function semanticChecks(loaded: LoadedConfig<DeviceConfigFile>): void {
  const problems: string[] = [];
  const seen = new Map<string, number>();
  loaded.value.cameras.forEach((camera, i) => {
    const first = seen.get(camera.id);
    if (first !== undefined) {
      problems.push(
        `  ${loaded.locate(['cameras', i, 'id'])}: cameras.${i}.id: "${camera.id}" is already the id of cameras.${first} (${loaded.locate(['cameras', first, 'id'])}); camera ids must be unique on the box`,
      );
    } else {
      seen.set(camera.id, i);
    }
  });
  const tls = loaded.value.tls;
  if (tls && Boolean(tls.cert) !== Boolean(tls.key))
    problems.push(
      `  ${loaded.locate(['tls'])}: tls: give both "cert" and "key" (a client certificate and its key), or neither`,
    );
  if (problems.length > 0)
    throw new ArgusError(`device config ${loaded.file} is invalid:\n${problems.join('\n')}`);
}

/**
 * Reads and validates a device config (YAML). Every problem is reported with file:line:col and what
 * to change: schema violations, unknown keys, duplicate camera ids.
 */
export async function loadDeviceConfig(file: string): Promise<DeviceConfig> {
  const path = resolve(file);
  const loaded = await loadConfigFile(path, validator, 'device config');
  semanticChecks(loaded);
  const value = loaded.value;
  const dir = dirname(path);
  return {
    ...value,
    file: path,
    dir,
    mqtt: { ...value.mqtt, clientId: deviceClientId(value.device.id) },
    controlPlane: {
      ...value.controlPlane,
      credentialFile: resolve(dir, value.controlPlane.credentialFile ?? `${value.device.id}.credential`),
    },
    spool: { ...value.spool, path: resolve(dir, value.spool.path) },
    ota: {
      ...value.ota,
      dir: resolve(dir, value.ota.dir ?? `${value.device.id}.ota`),
      ...(value.ota.keyring ? { keyring: resolve(dir, value.ota.keyring) } : {}),
    },
    // a model directory is relative to the config file, like every other path in it
    ...(isModelPath(value.detector.model)
      ? { detector: { ...value.detector, model: resolve(dir, value.detector.model) } }
      : {}),
    ...(value.tls
      ? {
          tls: {
            ca: resolve(dir, value.tls.ca),
            ...(value.tls.cert ? { cert: resolve(dir, value.tls.cert) } : {}),
            ...(value.tls.key ? { key: resolve(dir, value.tls.key) } : {}),
          },
        }
      : {}),
    ...(value.recorded
      ? { recorded: { ...value.recorded, events: resolve(dir, value.recorded.events) } }
      : {}),
  };
}
