import { dirname, resolve } from 'node:path';
import Type from 'typebox';
import { type LoadedConfig, loadConfigFile } from '../common/config-file.ts';
import { ArgusError } from '../common/errors.ts';
import { compileSchema } from '../common/schema.ts';
import { DEVICE_ID_PATTERN } from '../contract/topics.ts';
import { isModelPath } from '../inference/model-dir.ts';
import { DetectorSettingsSchema } from '../inference/settings.ts';
import { CameraSettingsSchema } from '../pipelines/camera-settings.ts';

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
    /** fixed per device so that the broker keeps its session; default "argus-<device id>" */
    clientId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    username: Type.Optional(Type.String({ minLength: 1 })),
    password: Type.Optional(Type.String({ minLength: 1 })),
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
    /** the device's credential, sent as `Authorization: Bearer <token>` with snapshot uploads */
    token: Type.String({ minLength: 1 }),
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
    /** snapshots waiting for upload; beyond it the oldest are dropped */
    maxSnapshotBytes: Type.Integer({ minimum: 0, default: 1024 * MiB }),
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

export const DeviceConfigSchema = Type.Object(
  {
    device: DeviceSection,
    mqtt: MqttSection,
    controlPlane: ControlPlaneSection,
    spool: SpoolSection,
    detector: Type.Object(DetectorSettingsSchema.properties, { additionalProperties: false, default: {} }),
    cameras: Type.Array(CameraSettingsSchema, { default: [] }),
    health: HealthSection,
    /** replay recorded pipeline events instead of running cameras (wiring and control-plane tests) */
    recorded: Type.Optional(RecordedSection),
  },
  { additionalProperties: false },
);

export type DeviceConfigFile = Type.Static<typeof DeviceConfigSchema>;
export type MqttSettings = DeviceConfigFile['mqtt'];
export type SpoolSettings = DeviceConfigFile['spool'];
export type RecordedSettings = DeviceConfigFile['recorded'] & {};

/** a validated device config; `spool.path` and `recorded.events` are absolute */
export interface DeviceConfig extends DeviceConfigFile {
  /** the config file */
  file: string;
  /** its directory: the base of relative paths (scenes, spool, recordings) */
  dir: string;
  mqtt: MqttSettings & { clientId: string };
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
    mqtt: { ...value.mqtt, clientId: value.mqtt.clientId ?? `argus-${value.device.id}` },
    spool: { ...value.spool, path: resolve(dir, value.spool.path) },
    // a model directory is relative to the config file, like every other path in it
    ...(isModelPath(value.detector.model)
      ? { detector: { ...value.detector, model: resolve(dir, value.detector.model) } }
      : {}),
    ...(value.recorded
      ? { recorded: { ...value.recorded, events: resolve(dir, value.recorded.events) } }
      : {}),
  };
}
