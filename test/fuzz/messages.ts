import fc from 'fast-check';
import { COMMAND_NAMES, type DeviceTopicKind, TOPIC_ROOT, UPDATE_STATES } from '../../contract/index.ts';
import type { Doc } from './hostile.ts';
import { LEGIT_DEVICE } from './target.ts';

/** the MQTT topic kinds the fuzzers cover: every kind of the contract, and topics outside it */
export type FuzzedKind = DeviceTopicKind | 'unknown';
export const FUZZED_KINDS: readonly FuzzedKind[] = [
  'available',
  'identity',
  'telemetry',
  'events',
  'status',
  'cmd_result',
  'update',
  'unknown',
];

/** device ids the fuzzers publish as and put in payloads: the legit device's among them */
export const deviceId: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(LEGIT_DEVICE, 'box-1', 'fuzz-a', 'fuzz-b', '0', 'a'.repeat(63)),
  fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,20}$/),
);

const timestamp = fc.oneof(
  fc
    .date({ min: new Date('1970-01-01'), max: new Date('2100-01-01'), noInvalidDate: true })
    .map((d) => d.toISOString()),
  fc.constantFrom(
    '2026-05-01T10:00:00Z',
    '2026-05-01T10:00:00.123456789+14:00',
    '1969-12-31T23:59:59Z',
    '9999-12-31T23:59:59Z',
  ),
);
const id = fc.oneof(fc.uuid(), fc.stringMatching(/^[A-Za-z0-9_-]{8,64}$/));
const cameraId = fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,10}$/);
const fraction = fc.double({ min: 0, max: 1, noNaN: true });
const positive = fc.double({ min: 0, max: 1e12, noNaN: true });
const count = fc.nat();
const freeObject = fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 });

const available = fc.record(
  { v: fc.constant(1), state: fc.constantFrom('online', 'offline'), at: timestamp },
  { requiredKeys: ['v', 'state'] },
);

const identity = (device: string) =>
  fc.record({
    v: fc.constant(1),
    device: fc.constant(device),
    hardwareClass: fc.constantFrom('x86_64-avx512', 'rk3588-npu', 'jetson-orin'),
    executionProviders: fc.array(fc.constantFrom('cpu', 'cuda', 'rknpu'), { maxLength: 3 }),
    software: fc.record({ version: fc.constantFrom('0.1.0', '1.2.3'), node: fc.constant('v20.20.2') }),
    models: fc.array(
      fc.record({
        name: fc.string({ maxLength: 20 }),
        version: count,
        sha256: fc.stringMatching(/^[0-9a-f]{64}$/),
      }),
      { maxLength: 3 },
    ),
    cameras: fc.array(fc.record({ id: cameraId, scene: fc.string({ maxLength: 30 }) }), { maxLength: 4 }),
    startedAt: timestamp,
  });

const telemetry = (device: string) =>
  fc.record(
    {
      v: fc.constant(1),
      device: fc.constant(device),
      at: timestamp,
      uptimeS: positive,
      cpuPercent: positive,
      load1: positive,
      memoryRssMiB: positive,
      memoryUsedPercent: fc.double({ min: 0, max: 100, noNaN: true }),
      diskFreeMiB: positive,
      temperatureC: fc.option(fc.double({ min: -40, max: 120, noNaN: true }), { nil: null }),
      spool: fc.record({ pending: count, bytes: count, dropped: count }),
      cameras: fc.array(
        fc.record(
          {
            id: cameraId,
            state: fc.constantFrom('online', 'offline', 'starting'),
            fpsIn: positive,
            fpsDetect: positive,
            detectLatencyMs: positive,
            drops: count,
            motionSkippedShare: fraction,
            motionSearchedShare: fraction,
          },
          {
            requiredKeys: [
              'id',
              'state',
              'fpsIn',
              'fpsDetect',
              'detectLatencyMs',
              'drops',
              'motionSkippedShare',
            ],
          },
        ),
        { maxLength: 4 },
      ),
      health: fc.record({
        status: fc.constantFrom('ok', 'degraded'),
        reasons: fc.array(fc.string({ maxLength: 200 }), { maxLength: 32 }),
      }),
      detector: fc.record({ sessions: count, restarts: count }),
    },
    {
      requiredKeys: [
        'v',
        'device',
        'at',
        'uptimeS',
        'cpuPercent',
        'load1',
        'memoryRssMiB',
        'memoryUsedPercent',
        'diskFreeMiB',
        'temperatureC',
        'spool',
        'cameras',
      ],
    },
  );

const event = (device: string) =>
  fc.record(
    {
      v: fc.constant(1),
      id,
      seq: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      phase: fc.constantFrom('new', 'update', 'end'),
      device: fc.constant(device),
      camera: cameraId,
      cameraSeq: count,
      rule: fc.string({ minLength: 1, maxLength: 64 }),
      ruleType: fc.constantFrom('zone', 'line', 'loitering', 'crowding', 'wrong-way', 'stationary'),
      label: fc.string({ maxLength: 20 }),
      trackId: fc.integer({ min: -1 }),
      zone: fc.string({ maxLength: 20 }),
      direction: fc.constantFrom('in', 'out'),
      startedAt: timestamp,
      at: timestamp,
      endedAt: timestamp,
      score: fraction,
      box: fc.array(fc.double({ noNaN: true, noDefaultInfinity: true }), { minLength: 4, maxLength: 4 }),
      before: freeObject,
      after: freeObject,
      snapshot: fc.record({
        id: fc.stringMatching(/^[A-Za-z0-9_-]{8,64}$/),
        width: fc.integer(),
        height: fc.integer(),
      }),
      counters: fc.dictionary(
        fc.string({ maxLength: 8 }),
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        {
          maxKeys: 4,
        },
      ),
    },
    {
      requiredKeys: [
        'v',
        'id',
        'seq',
        'phase',
        'device',
        'camera',
        'cameraSeq',
        'rule',
        'ruleType',
        'label',
        'trackId',
        'startedAt',
        'at',
        'score',
        'before',
        'after',
      ],
    },
  );

const status = (device: string) =>
  fc.record(
    {
      v: fc.constant(1),
      id,
      device: fc.constant(device),
      camera: cameraId,
      cameraSeq: count,
      state: fc.constantFrom('online', 'offline'),
      at: timestamp,
      reason: fc.string({ maxLength: 40 }),
    },
    { requiredKeys: ['v', 'id', 'device', 'camera', 'cameraSeq', 'state', 'at'] },
  );

const cmdResult = (device: string) =>
  fc.record(
    {
      v: fc.constant(1),
      id,
      device: fc.constant(device),
      name: fc.constantFrom(...COMMAND_NAMES),
      ok: fc.boolean(),
      message: fc.string({ maxLength: 40 }),
      at: timestamp,
      data: freeObject,
    },
    { requiredKeys: ['v', 'id', 'device', 'name', 'ok', 'message', 'at'] },
  );

const updateStatus = (device: string) =>
  fc.record(
    {
      v: fc.constant(1),
      id,
      device: fc.constant(device),
      assignment: id,
      rollout: id,
      artifact: fc.record({
        id: fc.stringMatching(/^[0-9a-f]{64}$/),
        kind: fc.constantFrom('model', 'scene'),
        name: fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/),
        version: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        bytes: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      }),
      seq: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      state: fc.constantFrom(...UPDATE_STATES),
      at: timestamp,
      reason: fc.string({ maxLength: 40 }),
      progress: fc.record({ bytes: count, total: count }),
    },
    { requiredKeys: ['v', 'id', 'device', 'assignment', 'rollout', 'artifact', 'seq', 'state', 'at'] },
  );

const PLACEHOLDER = 'placeholder-device';
const MESSAGES: Record<FuzzedKind, fc.Arbitrary<unknown>> = {
  available,
  identity: identity(PLACEHOLDER),
  telemetry: telemetry(PLACEHOLDER),
  events: event(PLACEHOLDER),
  status: status(PLACEHOLDER),
  cmd_result: cmdResult(PLACEHOLDER),
  update: updateStatus(PLACEHOLDER),
  unknown: fc.oneof(available, event(PLACEHOLDER), freeObject),
};

/** a message that follows the contract for the kind, from `device` (built once per kind: arbitraries cost) */
export function validMessage(kind: FuzzedKind, device: fc.Arbitrary<string>): fc.Arbitrary<Doc> {
  return fc.tuple(MESSAGES[kind], device).map(([m, d]) => {
    const message = m as Record<string, Doc>;
    return ('device' in message ? { ...message, device: d } : message) as Doc;
  });
}

/** topics outside the contract that a client may still publish to (no wildcards, no NUL, ≤ 100 levels) */
const unknownTopic: fc.Arbitrary<string> = fc.oneof(
  deviceId.map((d) => `${TOPIC_ROOT}/${d}/cmd/reboot`),
  deviceId.map((d) => `${TOPIC_ROOT}/${d}/events/extra`),
  deviceId.map((d) => `${TOPIC_ROOT}/${d}/Events`),
  fc.constantFrom(
    `${TOPIC_ROOT}/UPPER/events`,
    `${TOPIC_ROOT}//events`,
    `${TOPIC_ROOT}/-x/events`,
    `${TOPIC_ROOT}/${'a'.repeat(64)}/events`,
    'argus/v2/box-1/events',
    'argus/v1',
    'argus',
    '/',
    '$SYS/broker/uptime',
    `${TOPIC_ROOT}/box-1/cmd_result/`,
  ),
  fc
    .string({ unit: 'grapheme', minLength: 1, maxLength: 60 })
    .filter((t) => !t.includes('#') && !t.includes('+') && !t.includes(String.fromCharCode(0)))
    .map((t) => `${TOPIC_ROOT}/${t}`),
  // long, and deep up to aedes' 100 levels (past them it closes the connection: see mqtt-packets.ts)
  fc
    .tuple(fc.integer({ min: 1, max: 97 }), fc.integer({ min: 1, max: 20_000 }))
    .map(([levels, chars]) => `${TOPIC_ROOT}/${'x/'.repeat(levels)}${'y'.repeat(chars)}`),
);

/** a publish on a topic of the kind: the payload names mostly the topic's device, often another one */
export function fuzzedPublish(
  kind: FuzzedKind,
  payload: (valid: fc.Arbitrary<Doc>) => fc.Arbitrary<Buffer>,
): fc.Arbitrary<{ topic: string; payload: Buffer; retain: boolean }> {
  // retained now and then: the broker must not keep what ingest refused
  const retain = fc.integer({ min: 0, max: 49 }).map((n) => n === 0);
  if (kind === 'unknown')
    return fc.record({ topic: unknownTopic, payload: payload(validMessage(kind, deviceId)), retain });
  return fc
    .record({
      device: deviceId,
      other: fc.option(deviceId, { freq: 4 }),
      payload: payload(validMessage(kind, fc.constant(PLACEHOLDER))),
      retain,
    })
    .map(({ device, other, payload, retain }) => ({
      topic: `${TOPIC_ROOT}/${device}/${kind}`,
      // the placeholder's bytes, wherever mutation left them, become the topic's device or another's
      payload: Buffer.from(payload.toString('latin1').replaceAll(PLACEHOLDER, other ?? device), 'latin1'),
      retain,
    }));
}
