import Type from 'typebox';
import { compileSchema } from '../common/schema.ts';
import { CONTRACT_BOUNDS } from './bounds.ts';
import { otaValidators } from './ota.ts';
import { COMMAND_NAMES, CONTRACT_VERSION, DEVICE_ID_PATTERN } from './topics.ts';

/**
 * Payload schemas of every MQTT message, shared by the device agent (which builds them) and the
 * control plane (which validates them on ingest). One schema per message is the source of its
 * TypeScript type, its runtime validation and the README's contract documentation.
 */

const V = Type.Literal(CONTRACT_VERSION);

export { CONTRACT_BOUNDS } from './bounds.ts';

const B = CONTRACT_BOUNDS;
/**
 * text stored in a column of its own (an id, a rule, a label, a reason): no NUL character, which
 * PostgreSQL cannot store in text (in the payload's JSON text a NUL is escaped and harmless)
 */
const NO_NUL = '^[^\\u0000]*$';
const Name = (description?: string) =>
  Type.String({ maxLength: B.name, ...(description ? { description } : {}) });
const Text = (description?: string) =>
  Type.String({ maxLength: B.text, ...(description ? { description } : {}) });
/** a non-negative measurement */
const Amount = (o: { maximum?: number; description?: string } = {}) =>
  Type.Number({ minimum: 0, maximum: B.magnitude, ...o });
const Counter = (description?: string) =>
  Type.Integer({ minimum: 0, maximum: B.counter, ...(description ? { description } : {}) });
/** a free-form object: at most CONTRACT_BOUNDS.keys keys, values of any JSON type */
const FreeObject = (description: string) =>
  Type.Record(Type.String(), Type.Unknown(), { maxProperties: B.keys, description });

// RFC 3339 without what JavaScript's Date cannot read (leap second 60, bracketed zone suffixes):
// a timestamp that passes here always becomes a number on both sides (common/timestamp.ts)
const Timestamp = Type.String({
  format: 'date-time',
  maxLength: 40,
  description: 'RFC 3339 with a zone, e.g. UTC',
});
const DeviceId = Type.String({ pattern: DEVICE_ID_PATTERN });
const CameraId = Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' });
const Box = Type.Array(Type.Number({ minimum: -B.pixels, maximum: 2 * B.pixels }), {
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
    hardwareClass: Name('e.g. x86_64-avx512, rk3588-npu, jetson-orin'),
    executionProviders: Type.Array(Name(), {
      maxItems: B.items,
      description: 'providers available on the box, preferred first',
    }),
    software: Type.Object({ version: Name(), node: Name() }, { additionalProperties: false }),
    models: Type.Array(
      Type.Object(
        { name: Name(), version: Type.Integer({ minimum: 0, maximum: B.int32 }), sha256: Name() },
        { additionalProperties: false },
      ),
      { maxItems: B.items },
    ),
    cameras: Type.Array(
      Type.Object({ id: CameraId, scene: Type.String({ maxLength: 1024 }) }, { additionalProperties: false }),
      { maxItems: B.items },
    ),
    startedAt: Timestamp,
  },
  { additionalProperties: false },
);

/** which version of a model or scene runs: rollouts compare the figures of each */
const VersionRef = (description: string) =>
  Type.Object(
    { name: Name(), version: Type.Integer({ minimum: 0, maximum: B.int32 }) },
    { additionalProperties: false, description },
  );

const CameraTelemetry = Type.Object(
  {
    id: CameraId,
    state: Type.Union([Type.Literal('online'), Type.Literal('offline'), Type.Literal('starting')]),
    fpsIn: Amount({ maximum: 10_000, description: 'frames/s reaching the pipeline' }),
    fpsDetect: Amount({ maximum: 10_000, description: 'frames/s run through the detector' }),
    detectLatencyMs: Amount({ description: 'p50 inference latency' }),
    drops: Counter('frames dropped because inference was slower than input'),
    motionSkippedShare: Type.Number({ minimum: 0, maximum: 1 }),
    model: Type.Optional(VersionRef('the model this camera detects with')),
    scene: Type.Optional(
      VersionRef('the scene this camera runs (version 0: from the config, not from a bundle)'),
    ),
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
    uptimeS: Amount(),
    cpuPercent: Amount({ maximum: 100_000, description: '100 per busy core' }),
    load1: Amount(),
    memoryRssMiB: Amount(),
    memoryUsedPercent: Type.Number({ minimum: 0, maximum: 100 }),
    diskFreeMiB: Amount(),
    temperatureC: Type.Union([Type.Number({ minimum: -273.15, maximum: 1000 }), Type.Null()]),
    spool: Type.Object(
      {
        pending: Counter(),
        bytes: Counter(),
        dropped: Counter('events dropped oldest-first because the spool was full'),
        snapshots: Type.Optional(
          Type.Object(
            {
              pending: Counter(),
              bytes: Counter(),
              dropped: Counter('snapshots dropped oldest-first because the store was full'),
              lost: Type.Optional(
                Counter(
                  'snapshots of events never stored for upload since the agent started: rendering failed or fell behind, or the JPEG was larger than the contract allows',
                ),
              ),
            },
            { additionalProperties: false, description: 'snapshots waiting for upload' },
          ),
        ),
        harvest: Type.Optional(
          Type.Object(
            {
              pending: Counter(),
              bytes: Counter(),
              dropped: Counter('harvested frames dropped oldest-first because their queue was full'),
            },
            { additionalProperties: false, description: 'harvested frames waiting for upload' },
          ),
        ),
        fill: Type.Optional(
          Type.Number({ minimum: 0, maximum: 1, description: "share of the spool's fullest limit in use" }),
        ),
      },
      { additionalProperties: false },
    ),
    cameras: Type.Array(CameraTelemetry, { maxItems: B.items }),
    /** what the box harvested for the loop since it started (pipelines/harvest) */
    harvest: Type.Optional(
      Type.Object(
        {
          considered: Counter('detected frames looked at'),
          candidates: Counter('of them, worth keeping by some reason'),
          duplicates: Counter('candidates skipped as near-duplicates of a kept frame'),
          overBudget: Counter('candidates refused by the budget (frames per hour, MiB per day, interval)'),
          kept: Counter('frames kept and queued for upload'),
          keptBytes: Counter('their JPEG bytes'),
          spotChecks: Counter('frames also run through the reference model'),
          byReason: Type.Object(
            {
              uncertain: Counter(),
              flicker: Counter(),
              'motion-miss': Counter(),
              disagreement: Counter(),
            },
            { additionalProperties: false, description: 'kept frames by reason (a frame may have several)' },
          ),
          framesLastHour: Counter('kept in the last hour, as the budget counts them'),
          bytesLastDay: Counter('kept in the last 24 hours, as the budget counts them'),
        },
        { additionalProperties: false },
      ),
    ),
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
          sessions: Type.Integer({
            minimum: 0,
            maximum: 1024,
            description: 'detector sessions running side by side',
          }),
          restarts: Counter('times a crashed detector thread was started again since the agent started'),
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
      pattern: NO_NUL,
      description: 'stable id of the event across its lifecycle, unique per device',
    }),
    seq: Type.Integer({
      minimum: 0,
      maximum: B.int32,
      description: '0 for new, +1 for each later message of the event',
    }),
    phase: Type.Enum(EVENT_PHASES),
    device: DeviceId,
    camera: CameraId,
    cameraSeq: Counter('per-camera message counter, strictly increasing'),
    rule: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: NO_NUL,
      description: 'rule id from the scene',
    }),
    ruleType: Type.Enum(RULE_TYPES),
    label: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: NO_NUL,
      description: 'object class, or "*" for rules about many objects',
    }),
    trackId: Type.Integer({
      minimum: -1,
      maximum: B.int32,
      description: '-1 for rules about many objects (crowding)',
    }),
    zone: Type.Optional(Name()),
    line: Type.Optional(Name()),
    direction: Type.Optional(Type.Union([Type.Literal('in'), Type.Literal('out')])),
    startedAt: Timestamp,
    at: Timestamp,
    endedAt: Type.Optional(Timestamp),
    score: Type.Number({ minimum: 0, maximum: 1 }),
    box: Type.Optional(Box),
    before: FreeObject('state before the change'),
    after: FreeObject('state after the change'),
    snapshot: Type.Optional(
      Type.Object(
        {
          id: Type.String({ pattern: '^[A-Za-z0-9_-]{8,64}$' }),
          width: Type.Integer({ minimum: 1, maximum: B.pixels }),
          height: Type.Integer({ minimum: 1, maximum: B.pixels }),
        },
        { additionalProperties: false },
      ),
    ),
    counters: Type.Optional(
      Type.Record(Type.String(), Type.Number({ minimum: -B.magnitude, maximum: B.magnitude }), {
        maxProperties: B.keys,
      }),
    ),
  },
  { additionalProperties: false },
);

export const CameraStatusSchema = Type.Object(
  {
    v: V,
    id: Type.String({ minLength: 8, maxLength: 64, pattern: NO_NUL }),
    device: DeviceId,
    camera: CameraId,
    cameraSeq: Counter(),
    state: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
    at: Timestamp,
    reason: Type.Optional(Type.String({ maxLength: B.text, pattern: NO_NUL })),
  },
  { additionalProperties: false },
);

export const CommandSchema = Type.Object(
  {
    v: V,
    id: Type.String({ minLength: 8, maxLength: 64 }),
    name: Type.Enum(COMMAND_NAMES),
    args: FreeObject('the command\'s arguments, e.g. {"camera": "cam-1"}'),
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
    message: Text(),
    at: Timestamp,
    data: Type.Optional(FreeObject('what the command produced, e.g. the snapshot it took')),
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
  update: otaValidators.update,
};
