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

export const Device = Type.Object({
  id: Type.String(),
  status: Type.Union([Type.Literal('online'), Type.Literal('offline'), Type.Literal('unknown')], {
    description: 'from the retained availability message and the Last Will',
  }),
  statusAt: Nullable(Timestamp),
  firstSeen: Timestamp,
  lastSeen: Timestamp,
  identity: Nullable(IdentitySchema),
  telemetry: Nullable(TelemetrySchema),
  cameras: Type.Array(
    Type.Object({
      camera: Type.String(),
      state: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
      at: Timestamp,
      reason: Nullable(Type.String()),
    }),
    { description: 'latest status message of each camera' },
  ),
});

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
      Type.String({ pattern: '^[a-z0-9_-]{1,63}$', description: 'ids that start with this, e.g. gate-' }),
    ),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
    cursor: Type.Optional(
      Type.String({ pattern: DEVICE_ID_PATTERN, description: 'nextCursor of the previous page' }),
    ),
  },
  { additionalProperties: false },
);

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

export const SnapshotStored = Type.Object({
  id: Type.String(),
  device: Type.String(),
  bytes: Type.Integer(),
  sha256: Type.String(),
  created: Type.Boolean({ description: 'false when the same snapshot was already stored' }),
});

export const Health = Type.Object({
  status: Type.Literal('ok'),
  storage: Type.String(),
  mqtt: Type.String(),
  pendingMessages: Type.Integer(),
});
