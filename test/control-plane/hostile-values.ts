import fc from 'fast-check';
import type { CommandResult, EventMessage, Identity } from '../../contract/index.ts';
import { telemetry } from '../helpers/telemetry.ts';
import { eventMessage } from './fixtures.ts';

/**
 * Generators of hostile values for the MQTT contract's messages: numbers at and past every kind of
 * bound (and past what a double or a 64-bit column holds), strings at and past lengths, with NUL
 * and unpaired surrogates, unicode, lists and objects past their sizes, nesting. Shared by the
 * property tests of the contract's bounds and of ingest.
 */

const edgeNumber = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.constantFrom(
    0,
    -0,
    1,
    -1,
    -2,
    0.5,
    2 ** 31 - 1,
    2 ** 31,
    2 ** 53 - 1,
    2 ** 53,
    2 ** 63,
    2 ** 64,
    1e15,
    1e15 + 1,
    1e308,
    -1e308,
    5e-324,
    65_535,
    65_536,
    131_070,
    100.0001,
    -273.16,
  ),
);

const edgeString = fc.oneof(
  fc.string({ maxLength: 70 }),
  fc.string({ unit: 'grapheme', maxLength: 70 }),
  fc.string({ unit: 'binary', maxLength: 70 }),
  fc.constantFrom(
    '',
    'x'.repeat(64),
    'x'.repeat(65),
    'x'.repeat(128),
    'x'.repeat(129),
    'x'.repeat(2000),
    'x'.repeat(2001),
    '\u0000',
    'a\u0000b',
    '\ud800',
    'a\tb\\c\nd\re',
    '2026-05-01T10:00:00Z',
    '2026-05-01T10:00:00.1234567890123456789Z',
    '9999-12-31T23:59:59+23:59',
    '0000-01-01T00:00:00Z',
    '2026-02-29T00:00:00Z',
    'online',
    'snapshot',
  ),
);

/** JSON arrays nested `depth` levels */
const nesting = fc.integer({ min: 1, max: 80 }).map((depth) => {
  let v: unknown = 0;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
});

const edgeObject = fc.oneof(
  fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 4 }), { maxKeys: 70 }),
  fc.dictionary(fc.string({ maxLength: 10 }), nesting, { maxKeys: 3 }),
  fc.jsonValue({ maxDepth: 8 }),
);

/** any value a hostile device may put in a field */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  edgeNumber,
  edgeString,
  edgeObject,
  nesting,
  fc.array(edgeNumber, { maxLength: 70 }),
  fc.array(edgeString, { maxLength: 70 }),
  fc.constant(null),
  fc.boolean(),
);

const T = '2026-05-01T10:00:00.000Z';

export const identityMessage = (device: string): Identity => ({
  v: 1,
  device,
  hardwareClass: 'x86_64-avx512',
  executionProviders: ['cpu'],
  software: { version: '0.1.0', node: 'v20' },
  models: [{ name: 'yolo', version: 1, sha256: 'ab'.repeat(32) }],
  cameras: [{ id: 'cam-1', scene: 'scenes/cam-1.yaml' }],
  startedAt: T,
});

export const resultMessage = (device: string, id: string): CommandResult => ({
  v: 1,
  id,
  device,
  name: 'snapshot',
  ok: true,
  message: 'done',
  at: T,
  data: { snapshot: { id: 'snap-00000001', width: 640, height: 480 } },
});

export const eventFor = (device: string): EventMessage =>
  eventMessage({
    device,
    at: T,
    startedAt: T,
    snapshot: { id: 'snap-00000001', width: 640, height: 480 },
    counters: { in: 1 },
  });

/** a valid message of each topic kind, and the paths of the fields a property test changes */
export const KINDS = {
  events: {
    valid: (device: string) => eventFor(device) as unknown,
    paths: [
      ['id'],
      ['seq'],
      ['phase'],
      ['camera'],
      ['cameraSeq'],
      ['rule'],
      ['ruleType'],
      ['label'],
      ['trackId'],
      ['zone'],
      ['line'],
      ['direction'],
      ['startedAt'],
      ['at'],
      ['endedAt'],
      ['score'],
      ['box'],
      ['box', 0],
      ['before'],
      ['before', 'x'],
      ['after'],
      ['snapshot', 'id'],
      ['snapshot', 'width'],
      ['snapshot', 'height'],
      ['counters'],
      ['counters', 'in'],
    ],
  },
  status: {
    valid: (device: string) =>
      ({
        v: 1,
        id: 'status-00000001',
        device,
        camera: 'cam-1',
        cameraSeq: 1,
        state: 'online',
        at: T,
        reason: 'started',
      }) as unknown,
    paths: [['id'], ['camera'], ['cameraSeq'], ['state'], ['at'], ['reason']],
  },
  telemetry: {
    valid: (device: string) =>
      telemetry(device, T, {
        health: { status: 'ok', reasons: [] },
        detector: { sessions: 1, restarts: 0 },
      }) as unknown,
    paths: [
      ['at'],
      ['uptimeS'],
      ['cpuPercent'],
      ['load1'],
      ['memoryRssMiB'],
      ['memoryUsedPercent'],
      ['diskFreeMiB'],
      ['temperatureC'],
      ['spool', 'pending'],
      ['spool', 'bytes'],
      ['spool', 'dropped'],
      ['cameras'],
      ['cameras', 0, 'fpsIn'],
      ['cameras', 0, 'drops'],
      ['cameras', 0, 'detectLatencyMs'],
      ['cameras', 0, 'motionSkippedShare'],
      ['health', 'reasons'],
      ['health', 'reasons', 0],
      ['detector', 'sessions'],
      ['detector', 'restarts'],
    ],
  },
  identity: {
    valid: (device: string) => identityMessage(device) as unknown,
    paths: [
      ['hardwareClass'],
      ['executionProviders'],
      ['executionProviders', 0],
      ['software', 'version'],
      ['models'],
      ['models', 0, 'version'],
      ['models', 0, 'name'],
      ['cameras'],
      ['cameras', 0, 'scene'],
      ['startedAt'],
    ],
  },
  available: {
    valid: () => ({ v: 1, state: 'online', at: T }) as unknown,
    paths: [['state'], ['at']],
  },
  cmd_result: {
    valid: (device: string) => resultMessage(device, 'cmd-00000001') as unknown,
    paths: [['id'], ['name'], ['ok'], ['message'], ['at'], ['data'], ['data', 'snapshot'], ['data', 'x']],
  },
} as const;

export type Kind = keyof typeof KINDS;

/** a copy of `message` with the value at `path` replaced */
export function withValue(message: unknown, path: readonly (string | number)[], value: unknown): unknown {
  const copy = structuredClone(message) as Record<string | number, unknown>;
  let at = copy;
  for (const key of path.slice(0, -1)) {
    if (at[key] === null || typeof at[key] !== 'object') at[key] = {};
    at = at[key] as Record<string | number, unknown>;
  }
  at[path.at(-1)!] = value;
  return copy;
}

/** the value at `path` of `message`, if any */
function valueAt(message: unknown, path: readonly (string | number)[]): unknown {
  let at = message;
  for (const key of path)
    at = at !== null && typeof at === 'object' ? (at as Record<string | number, unknown>)[key] : undefined;
  return at;
}

/**
 * a value for a field that holds `current`: mostly of the same type (so that values at and just
 * past the bounds are reached), sometimes of any type
 */
function valueLike(current: unknown): fc.Arbitrary<unknown> {
  const same =
    typeof current === 'number'
      ? edgeNumber
      : typeof current === 'string'
        ? edgeString
        : Array.isArray(current)
          ? fc.oneof(fc.array(edgeNumber, { maxLength: 70 }), fc.array(edgeString, { maxLength: 70 }))
          : current !== null && typeof current === 'object'
            ? edgeObject
            : hostileValue;
  return fc.oneof({ arbitrary: same, weight: 4 }, { arbitrary: hostileValue, weight: 1 });
}

/** a message of `kind` with one to three of its fields given hostile values */
export function hostileMessage(kind: Kind, device: string): fc.Arbitrary<unknown> {
  const { valid, paths } = KINDS[kind];
  const base = valid(device);
  const change = fc
    .constantFrom(...paths)
    .chain((path) => valueLike(valueAt(base, path)).map((value) => [path, value] as const));
  return fc
    .array(change, { minLength: 1, maxLength: 3 })
    .map((changes) => changes.reduce((m, [path, value]) => withValue(m, path, value), base));
}
