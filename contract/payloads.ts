import Type from 'typebox';
import { compileSchema } from '../common/schema.ts';
import { COMMAND_NAMES, CONTRACT_VERSION, DEVICE_ID_PATTERN } from './topics.ts';

/**
 * Payload schemas of every MQTT message, shared by the device agent (which builds them) and the
 * control plane (which validates them on ingest). One schema per message is the source of its
 * TypeScript type, its runtime validation and the README's contract documentation.
 */

const V = Type.Literal(CONTRACT_VERSION);

// RFC 3339 without what JavaScript's Date cannot read (leap second 60, bracketed zone suffixes):
// a timestamp that passes here always becomes a number on both sides (common/timestamp.ts)
const Timestamp = Type.String({ format: 'date-time', description: 'RFC 3339 with a zone, e.g. UTC' });
const DeviceId = Type.String({ pattern: DEVICE_ID_PATTERN });
const CameraId = Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' });
const Box = Type.Array(Type.Number(), {
  minItems: 4,
  maxItems: 4,
  description: '[x1, y1, x2, y2] in source pixels',
});

/** largest payload the control plane accepts; snapshots travel over HTTP, never in MQTT */
export const MAX_PAYLOAD_BYTES = 64 * 1024;

export const AvailabilitySchema = Type.Object(
  {
    v: V,
    state: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
    at: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);

export const IdentitySchema = Type.Object(
  {
    v: V,
    device: DeviceId,
    hardwareClass: Type.String({ description: 'e.g. x86_64-avx512, rk3588-npu, jetson-orin' }),
    executionProviders: Type.Array(Type.String(), {
      description: 'providers available on the box, preferred first',
    }),
    software: Type.Object({ version: Type.String(), node: Type.String() }, { additionalProperties: false }),
    models: Type.Array(
      Type.Object(
        { name: Type.String(), version: Type.Integer(), sha256: Type.String() },
        { additionalProperties: false },
      ),
    ),
    cameras: Type.Array(Type.Object({ id: CameraId, scene: Type.String() }, { additionalProperties: false })),
    startedAt: Timestamp,
  },
  { additionalProperties: false },
);

const CameraTelemetry = Type.Object(
  {
    id: CameraId,
    state: Type.Union([Type.Literal('online'), Type.Literal('offline'), Type.Literal('starting')]),
    fpsIn: Type.Number({ minimum: 0, description: 'frames/s reaching the pipeline' }),
    fpsDetect: Type.Number({ minimum: 0, description: 'frames/s run through the detector' }),
    detectLatencyMs: Type.Number({ minimum: 0, description: 'p50 inference latency' }),
    drops: Type.Integer({
      minimum: 0,
      description: 'frames dropped because inference was slower than input',
    }),
    motionSkippedShare: Type.Number({ minimum: 0, maximum: 1 }),
    motionSearchedShare: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 1,
        description:
          'share of the pixels reaching the pipeline that the detector looked at (whole frames and moving regions)',
      }),
    ),
  },
  { additionalProperties: false },
);

export const TelemetrySchema = Type.Object(
  {
    v: V,
    device: DeviceId,
    at: Timestamp,
    uptimeS: Type.Number({ minimum: 0 }),
    cpuPercent: Type.Number({ minimum: 0 }),
    load1: Type.Number({ minimum: 0 }),
    memoryRssMiB: Type.Number({ minimum: 0 }),
    memoryUsedPercent: Type.Number({ minimum: 0, maximum: 100 }),
    diskFreeMiB: Type.Number({ minimum: 0 }),
    temperatureC: Type.Union([Type.Number(), Type.Null()]),
    spool: Type.Object(
      {
        pending: Type.Integer({ minimum: 0 }),
        bytes: Type.Integer({ minimum: 0 }),
        dropped: Type.Integer({
          minimum: 0,
          description: 'events dropped oldest-first because the spool was full',
        }),
        snapshots: Type.Optional(
          Type.Object(
            {
              pending: Type.Integer({ minimum: 0 }),
              bytes: Type.Integer({ minimum: 0 }),
              dropped: Type.Integer({
                minimum: 0,
                description: 'snapshots dropped oldest-first because the store was full',
              }),
            },
            { additionalProperties: false, description: 'snapshots waiting for upload' },
          ),
        ),
        fill: Type.Optional(
          Type.Number({ minimum: 0, maximum: 1, description: "share of the spool's fullest limit in use" }),
        ),
      },
      { additionalProperties: false },
    ),
    cameras: Type.Array(CameraTelemetry),
    /** the box's own verdict on itself, as its /healthz gives it */
    health: Type.Optional(
      Type.Object(
        {
          status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
          reasons: Type.Array(Type.String({ maxLength: 200 }), {
            maxItems: 32,
            description: 'why it is degraded, e.g. "camera cam-1 offline: end of stream"',
          }),
        },
        { additionalProperties: false },
      ),
    ),
    /** the box's detector, when it runs one (a box replaying recorded events does not) */
    detector: Type.Optional(
      Type.Object(
        {
          sessions: Type.Integer({ minimum: 0, description: 'detector sessions running side by side' }),
          restarts: Type.Integer({
            minimum: 0,
            description: 'times a crashed detector thread was started again since the agent started',
          }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const EVENT_PHASES = ['new', 'update', 'end'] as const;
export const RULE_TYPES = ['zone', 'line', 'loitering', 'crowding', 'wrong-way', 'stationary'] as const;

export const EventMessageSchema = Type.Object(
  {
    v: V,
    id: Type.String({
      minLength: 8,
      maxLength: 64,
      description: 'stable id of the event across its lifecycle',
    }),
    seq: Type.Integer({
      minimum: 0,
      maximum: 2 ** 31 - 1,
      description: '0 for new, +1 for each later message of the event',
    }),
    phase: Type.Enum(EVENT_PHASES),
    device: DeviceId,
    camera: CameraId,
    cameraSeq: Type.Integer({ minimum: 0, description: 'per-camera message counter, strictly increasing' }),
    rule: Type.String({ minLength: 1, maxLength: 64, description: 'rule id from the scene' }),
    ruleType: Type.Enum(RULE_TYPES),
    label: Type.String({ description: 'object class, or "*" for rules about many objects' }),
    trackId: Type.Integer({ minimum: -1, description: '-1 for rules about many objects (crowding)' }),
    zone: Type.Optional(Type.String()),
    line: Type.Optional(Type.String()),
    direction: Type.Optional(Type.Union([Type.Literal('in'), Type.Literal('out')])),
    startedAt: Timestamp,
    at: Timestamp,
    endedAt: Type.Optional(Timestamp),
    score: Type.Number({ minimum: 0, maximum: 1 }),
    box: Type.Optional(Box),
    before: Type.Record(Type.String(), Type.Unknown(), { description: 'state before the change' }),
    after: Type.Record(Type.String(), Type.Unknown(), { description: 'state after the change' }),
    snapshot: Type.Optional(
      Type.Object(
        {
          id: Type.String({ pattern: '^[A-Za-z0-9_-]{8,64}$' }),
          width: Type.Integer(),
          height: Type.Integer(),
        },
        { additionalProperties: false },
      ),
    ),
    counters: Type.Optional(Type.Record(Type.String(), Type.Number())),
  },
  { additionalProperties: false },
);

export const CameraStatusSchema = Type.Object(
  {
    v: V,
    id: Type.String({ minLength: 8, maxLength: 64 }),
    device: DeviceId,
    camera: CameraId,
    cameraSeq: Type.Integer({ minimum: 0 }),
    state: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
    at: Timestamp,
    reason: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

export const CommandSchema = Type.Object(
  {
    v: V,
    id: Type.String({ minLength: 8, maxLength: 64 }),
    name: Type.Enum(COMMAND_NAMES),
    args: Type.Record(Type.String(), Type.Unknown()),
    issuedAt: Timestamp,
  },
  { additionalProperties: false },
);

export const CommandResultSchema = Type.Object(
  {
    v: V,
    id: Type.String({ minLength: 8, maxLength: 64, description: 'the command id' }),
    device: DeviceId,
    name: Type.Enum(COMMAND_NAMES),
    ok: Type.Boolean(),
    message: Type.String(),
    at: Timestamp,
    data: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);

export type Availability = Type.Static<typeof AvailabilitySchema>;
export type Identity = Type.Static<typeof IdentitySchema>;
export type Telemetry = Type.Static<typeof TelemetrySchema>;
export type CameraTelemetry = Type.Static<typeof CameraTelemetry>;
export type DetectorTelemetry = NonNullable<Telemetry['detector']>;
export type HealthTelemetry = NonNullable<Telemetry['health']>;
export type EventMessage = Type.Static<typeof EventMessageSchema>;
export type CameraStatus = Type.Static<typeof CameraStatusSchema>;
export type Command = Type.Static<typeof CommandSchema>;
export type CommandResult = Type.Static<typeof CommandResultSchema>;
export type EventPhase = (typeof EVENT_PHASES)[number];
export type RuleType = (typeof RULE_TYPES)[number];

export const validators = {
  available: compileSchema<Availability>(AvailabilitySchema),
  identity: compileSchema<Identity>(IdentitySchema),
  telemetry: compileSchema<Telemetry>(TelemetrySchema),
  events: compileSchema<EventMessage>(EventMessageSchema),
  status: compileSchema<CameraStatus>(CameraStatusSchema),
  command: compileSchema<Command>(CommandSchema),
  cmd_result: compileSchema<CommandResult>(CommandResultSchema),
};
