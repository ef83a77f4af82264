import Type from 'typebox';
import {
  COMMAND_NAMES,
  CommandResultSchema,
  DEVICE_ID_PATTERN,
  EventMessageSchema,
  IdentitySchema,
  TelemetrySchema,
} from '../../contract/index.ts';

/** route schemas: request validation, response serialisation, types and the OpenAPI document at /docs */

export const DeviceId = Type.String({ pattern: DEVICE_ID_PATTERN });
export const SnapshotId = Type.String({ pattern: '^[A-Za-z0-9_-]{8,64}$' });
const Timestamp = Type.String({ format: 'date-time' });
const Nullable = <T extends Type.TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const ErrorBody = Type.Object({ error: Type.String(), hint: Type.Optional(Type.String()) });

const HealthVerdict = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
  reasons: Type.Array(Type.String()),
});

export const Device = Type.Object({
  id: Type.String(),
  status: Type.Union([Type.Literal('online'), Type.Literal('offline'), Type.Literal('unknown')], {
    description:
      'from the retained availability message and the Last Will; `offline` also when the device sent nothing for health.staleAfterS',
  }),
  statusAt: Nullable(Timestamp),
  firstSeen: Timestamp,
  lastSeen: Timestamp,
  identity: Nullable(IdentitySchema),
  telemetry: Nullable(TelemetrySchema),
  telemetryAt: Nullable(Timestamp),
  telemetryReceivedAt: Nullable(Timestamp),
  telemetryStale: Type.Boolean({
    description:
      'the figures of `telemetry` are old: not received within health.staleAfterS, or the device is not online',
  }),
  health: Type.Object(
    {
      status: Type.Union([
        Type.Literal('ok'),
        Type.Literal('degraded'),
        Type.Literal('offline'),
        Type.Literal('unknown'),
      ]),
      reasons: Type.Array(Type.String(), {
        description:
          "the device's own reasons and the control plane's (a camera offline, telemetry stale, silence)",
      }),
      reported: Nullable(HealthVerdict),
    },
    { description: "the control plane's verdict; `reported` is the device's own, from its latest telemetry" },
  ),
  cameras: Type.Array(
    Type.Object({
      camera: Type.String(),
      state: Type.Union([Type.Literal('online'), Type.Literal('offline'), Type.Literal('unknown')], {
        description: '`unknown` while the device is not online',
      }),
      at: Timestamp,
      reason: Nullable(Type.String()),
    }),
    { description: 'latest status message of each camera' },
  ),
});

export const TelemetryQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ format: 'date-time', description: 'telemetry time ≥ from' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'telemetry time < to' })),
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 200 }),
    cursor: Type.Optional(
      Type.String({ pattern: '^[0-9]{1,16}$', description: 'nextCursor of the previous page' }),
    ),
  },
  { additionalProperties: false },
);

export const TelemetryPage = Type.Object({
  telemetry: Type.Array(Type.Object({ at: Timestamp, receivedAt: Timestamp, telemetry: TelemetrySchema }), {
    description: 'oldest first',
  }),
  nextCursor: Nullable(Type.String()),
});

export const StatusHistoryQuery = Type.Object(
  {
    camera: Type.Optional(Type.String({ minLength: 1, description: "only this camera's statuses" })),
    from: Type.Optional(Type.String({ format: 'date-time', description: 'received ≥ from' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'received < to' })),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
    cursor: Type.Optional(
      Type.String({
        pattern: '^[0-9]{1,16}~[A-Za-z0-9_-]{1,100}$',
        description: 'nextCursor of the previous page',
      }),
    ),
  },
  { additionalProperties: false },
);

export const DevicesQuery = Type.Object(
  {
    status: Type.Optional(
      Type.Union([Type.Literal('online'), Type.Literal('offline'), Type.Literal('unknown')]),
    ),
    hardwareClass: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 128,
        description: "the identity's hardwareClass, e.g. rk3588-npu",
      }),
    ),
    idPrefix: Type.Optional(
      Type.String({
        pattern: '^[a-z0-9_-]{1,63}$',
        description: 'ids that start with this, e.g. gate- (a site, where ids begin with their site)',
      }),
    ),
    softwareVersion: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, description: "the identity's software.version" }),
    ),
    modelVersion: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 2_147_483_647,
        description: 'some camera of the latest telemetry runs this model version',
      }),
    ),
    sceneVersion: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 2_147_483_647,
        description: 'some camera of the latest telemetry runs this scene version (0: from local config)',
      }),
    ),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
    cursor: Type.Optional(
      Type.String({ pattern: DEVICE_ID_PATTERN, description: 'nextCursor of the previous page' }),
    ),
  },
  { additionalProperties: false },
);

export const StatusChange = Type.Object({
  kind: Type.Union([Type.Literal('camera'), Type.Literal('device')]),
  device: Type.String(),
  camera: Nullable(Type.String()),
  state: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
  at: Timestamp,
  reason: Nullable(Type.String()),
  source: Type.Union([Type.Literal('device'), Type.Literal('control-plane')], {
    description: '`control-plane`: the device fell silent (health.staleAfterS) or reported again after that',
  }),
  receivedAt: Timestamp,
});

export const StatusHistoryPage = Type.Object({
  changes: Type.Array(StatusChange, { description: 'newest received first' }),
  nextCursor: Nullable(Type.String()),
});

export const DevicesPage = Type.Object({
  devices: Type.Array(Device, { description: 'by id' }),
  nextCursor: Nullable(Type.String({ description: 'pass as `cursor` for the next page; null on the last' })),
});

export const StoredEvent = Type.Object({
  cursor: Type.String({ description: 'position in ingestion order; pass as `cursor` for the next page' }),
  receivedAt: Timestamp,
  event: EventMessageSchema,
});

export const EventsQuery = Type.Object(
  {
    device: Type.Optional(DeviceId),
    camera: Type.Optional(Type.String({ minLength: 1 })),
    rule: Type.Optional(Type.String({ minLength: 1 })),
    class: Type.Optional(Type.String({ minLength: 1, description: 'object label, e.g. person' })),
    from: Type.Optional(Type.String({ format: 'date-time', description: 'event time ≥ from' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'event time < to' })),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
    cursor: Type.Optional(
      Type.String({ pattern: '^[0-9]+$', description: 'nextCursor of the previous page' }),
    ),
  },
  { additionalProperties: false },
);

export const EventsPage = Type.Object({
  events: Type.Array(StoredEvent, { description: 'newest ingested first' }),
  nextCursor: Nullable(Type.String()),
});

export const StreamQuery = Type.Object(
  {
    device: Type.Optional(DeviceId),
    camera: Type.Optional(Type.String({ minLength: 1 })),
    rule: Type.Optional(Type.String({ minLength: 1 })),
    class: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);

export const CommandName = Type.Union(COMMAND_NAMES.map((n) => Type.Literal(n)));

export const CommandRequest = Type.Object(
  { args: Type.Record(Type.String(), Type.Unknown(), { default: {} }) },
  { additionalProperties: false },
);

export const CommandView = Type.Object({
  id: Type.String(),
  device: Type.String(),
  name: Type.String(),
  args: Type.Record(Type.String(), Type.Unknown()),
  issuedAt: Nullable(Timestamp),
  result: Nullable(CommandResultSchema),
  resultAt: Nullable(Timestamp),
  resultUrl: Type.String(),
});

export const CommandHistoryQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    cursor: Type.Optional(
      Type.String({ pattern: '^[A-Za-z0-9_-]{8,64}$', description: 'nextCursor of the previous page' }),
    ),
  },
  { additionalProperties: false },
);

export const CommandHistoryPage = Type.Object({
  commands: Type.Array(CommandView, {
    description: 'newest issued first, each with its result once answered',
  }),
  nextCursor: Nullable(Type.String()),
});

export const SnapshotStored = Type.Object({
  id: Type.String(),
  device: Type.String(),
  bytes: Type.Integer(),
  sha256: Type.String(),
  created: Type.Boolean({ description: 'false when the same snapshot was already stored' }),
});

export const Health = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')], {
    description: '`degraded` while messages cannot be stored (the database does not answer)',
  }),
  reasons: Type.Array(Type.String(), { description: 'why it is degraded; empty when ok' }),
  storage: Type.String(),
  mqtt: Type.String(),
  pendingMessages: Type.Integer(),
});

export const QuarantineQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
    cursor: Type.Optional(
      Type.String({ pattern: '^[0-9]{1,15}$', description: 'nextCursor of the previous page' }),
    ),
  },
  { additionalProperties: false },
);

export const QuarantinePage = Type.Object({
  messages: Type.Array(
    Type.Object({
      id: Type.String(),
      device: Type.String(),
      topic: Type.String(),
      reason: Type.String({ description: 'a label of argus_ingest_quarantined_total' }),
      detail: Type.String({ description: 'what failed' }),
      payload: Type.String({ description: 'the message as received (its text)' }),
      receivedAt: Timestamp,
    }),
    { description: 'newest first' },
  ),
  nextCursor: Nullable(Type.String()),
});
