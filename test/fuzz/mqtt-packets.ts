import { connect as connectTcp } from 'node:net';
import fc from 'fast-check';
import { connect } from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { deviceClientId, TOPIC_ROOT, topics } from '../../contract/index.ts';
import { hostileString } from './hostile.ts';
import { deviceId } from './messages.ts';
import { checkProperty, type FuzzRun, within } from './property.ts';
import { assertHealthy, STALL_MS } from './stalls.ts';
import { FRESH_DEVICE, FRESH_TOKEN, type FuzzTarget } from './target.ts';

/** raw connections opened at once per generated case */
const PER_CASE = 8;
/** how long a raw connection stays open after its bytes were written, unless the broker closes it */
const LINGER_MS = 30;

const protocolVersion = fc.constantFrom(3, 4, 5, 5, 0, 6, 255);
const qos = fc.constantFrom(0, 1, 2, 3);
const messageId = fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.constantFrom(0, 65535, 65536, -1));
const topic = fc.oneof(
  deviceId.map((d) => `${TOPIC_ROOT}/${d}/events`),
  fc.constantFrom('#', '+', `${TOPIC_ROOT}/#`, '$SYS/#', '', '/', 'a/#/b', 'a+', `${'x/'.repeat(200)}x`),
  hostileString,
);
const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));
const properties = fc.option(
  fc.record(
    {
      sessionExpiryInterval: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      receiveMaximum: fc.integer({ min: 0, max: 65535 }),
      maximumPacketSize: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      topicAliasMaximum: fc.integer({ min: 0, max: 65535 }),
      userProperties: fc.dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }), {
        maxKeys: 3,
      }),
      topicAlias: fc.integer({ min: 0, max: 65535 }),
      payloadFormatIndicator: fc.boolean(),
      contentType: fc.string({ maxLength: 20 }),
    },
    { requiredKeys: [] },
  ),
  { nil: undefined },
);

/** packets with every field drawn from valid and invalid values; mqtt-packet refuses some to generate */
const packet: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.record({
    cmd: fc.constant('connect'),
    protocolId: fc.constantFrom('MQTT', 'MQIsdp', 'XXXX', ''),
    protocolVersion,
    clean: fc.boolean(),
    clientId: fc.oneof(deviceId, hostileString, fc.constant('')),
    keepalive: fc.integer({ min: 0, max: 65535 }),
    username: fc.option(fc.oneof(deviceId, hostileString), { nil: undefined }),
    password: fc.option(bytes(64), { nil: undefined }),
    will: fc.option(fc.record({ topic, payload: bytes(256), qos, retain: fc.boolean() }), { nil: undefined }),
    properties,
  }),
  fc.record({
    cmd: fc.constant('publish'),
    topic,
    payload: fc.oneof(bytes(512), fc.constant(Buffer.from('{"v":1,"state":"online"}'))),
    qos,
    retain: fc.boolean(),
    dup: fc.boolean(),
    messageId,
    properties,
  }),
  fc.record({
    cmd: fc.constant('subscribe'),
    messageId,
    subscriptions: fc.array(
      fc.record({ topic, qos, nl: fc.boolean(), rap: fc.boolean(), rh: fc.constantFrom(0, 1, 2, 3) }),
      {
        maxLength: 4,
      },
    ),
    properties,
  }),
  fc.record({
    cmd: fc.constant('unsubscribe'),
    messageId,
    unsubscriptions: fc.array(topic, { maxLength: 4 }),
    properties,
  }),
  fc.record({
    cmd: fc.constantFrom('puback', 'pubrec', 'pubrel', 'pubcomp'),
    messageId,
    reasonCode: fc.constantFrom(0, 16, 128, 255),
  }),
  fc.record({
    cmd: fc.constantFrom('pingreq', 'pingresp', 'disconnect', 'connack', 'suback', 'unsuback', 'auth'),
  }),
);

/** the bytes of a packet, or random bytes where mqtt-packet will not generate it */
function encode(p: Record<string, unknown>, version: number): Buffer {
  try {
    return mqttPacket.generate(p as unknown as Packet, { protocolVersion: version === 5 ? 5 : 4 });
  } catch {
    return Buffer.from(JSON.stringify(p).slice(0, 64));
  }
}

/** the remaining-length varint of an MQTT fixed header for `n` */
function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0 && out.length < 4);
  return Buffer.from(out);
}

type Change =
  | { op: 'none' }
  | { op: 'truncate'; at: number }
  | { op: 'flip'; at: number[]; values: number[] }
  | { op: 'length'; declared: number }
  | { op: 'garbage'; bytes: Buffer }
  | { op: 'split'; at: number };

const change: fc.Arbitrary<Change> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ op: 'none' as const }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('flip' as const),
      at: fc.array(fc.nat(), { minLength: 1, maxLength: 6 }),
      values: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('length' as const),
      declared: fc.oneof(fc.nat({ max: 300 }), fc.constantFrom(268_435_455, 2_097_152, 16_384, 127, 128)),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('garbage' as const), bytes: bytes(2048) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('split' as const), at: fc.nat() }) },
);

/** applies a change; `split` answers two chunks written apart, every other change one */
function applyChange(b: Buffer, c: Change): Buffer[] {
  switch (c.op) {
    case 'none':
      return [b];
    case 'truncate':
      return [b.subarray(0, b.length === 0 ? 0 : c.at % b.length)];
    case 'flip': {
      const out = Buffer.from(b);
      if (out.length > 0)
        c.at.forEach((i, j) => {
          out[i % out.length] = c.values[j]!;
        });
      return [out];
    }
    case 'length': {
      // the fixed header's first byte, a remaining length other than the real one, the rest
      let i = 1;
      while (i < b.length && i < 5 && (b[i]! & 0x80) !== 0) i++;
      return [Buffer.concat([b.subarray(0, 1), varint(c.declared), b.subarray(i + 1)])];
    }
    case 'garbage':
      return [c.bytes];
    case 'split': {
      const at = b.length === 0 ? 0 : c.at % b.length;
      return [b.subarray(0, at), b.subarray(at)];
    }
  }
}

/** one raw connection: often a valid CONNECT first (to reach the states behind it), then fuzzed packets */
const conversation = fc.record({
  connectFirst: fc.constantFrom<0 | 4 | 5>(0, 4, 5, 5),
  packets: fc.array(fc.tuple(packet, change), { minLength: 1, maxLength: 4 }),
});
type Conversation = typeof conversation extends fc.Arbitrary<infer T> ? T : never;

function conversationBytes(c: Conversation): Buffer[] {
  const chunks: Buffer[] = [];
  if (c.connectFirst)
    chunks.push(
      mqttPacket.generate(
        {
          cmd: 'connect',
          protocolId: 'MQTT',
          protocolVersion: c.connectFirst,
          clean: true,
          clientId: '',
          keepalive: 30,
        },
        { protocolVersion: c.connectFirst },
      ),
    );
  for (const [p, ch] of c.packets) chunks.push(...applyChange(encode(p, c.connectFirst || 4), ch));
  return chunks;
}

/** writes the chunks on a raw TCP connection, waits LINGER_MS or until the broker closes it, closes it */
async function talk(url: string, chunks: Buffer[]): Promise<void> {
  const { hostname, port } = new URL(url);
  const socket = connectTcp(Number(port), hostname);
  socket.on('error', () => {});
  socket.on('data', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve) => {
    socket.once('connect', () => resolve());
    socket.once('close', () => resolve());
  });
  for (const chunk of chunks) {
    if (socket.destroyed) break;
    socket.write(chunk);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, LINGER_MS))]);
  socket.destroy();
  await closed;
}

/** a new MQTT client (an enrolled box of its own) connects and has a message acknowledged */
async function freshClientWorks(url: string): Promise<void> {
  const client = connect(url, {
    protocolVersion: 5,
    reconnectPeriod: 0,
    clientId: deviceClientId(FRESH_DEVICE),
    username: FRESH_DEVICE,
    password: FRESH_TOKEN,
  });
  try {
    await within(
      STALL_MS,
      'a fresh client to connect',
      new Promise((resolve) => client.once('connect', resolve)),
    );
    await within(
      STALL_MS,
      'the PUBACK of a fresh client',
      client.publishAsync(topics.available(FRESH_DEVICE), '{"v":1,"state":"online"}', { qos: 1 }),
    );
  } finally {
    await client.endAsync(true);
  }
}

/** every how many cases a fresh client checks the broker */
const FRESH_CLIENT_EVERY = 10;

export interface PacketFuzzCount {
  connections: number;
  packets: number;
  seed: number;
}

/**
 * Malformed MQTT at the protocol level over raw TCP to the embedded broker: mqtt-packet generated
 * packets of every type with fuzzed fields (protocol versions, QoS 3, wildcards in publish topics,
 * v5 properties), truncated, with bytes flipped, with wrong remaining lengths (up to the 256 MB
 * maximum), split across writes, or bare garbage. The broker must stay up for the legit device,
 * whose events keep being acknowledged, and for a fresh client every FRESH_CLIENT_EVERY cases.
 */
export async function fuzzMqttPackets(
  target: FuzzTarget,
  connections: number,
  run: FuzzRun,
): Promise<PacketFuzzCount> {
  let opened = 0;
  let packets = 0;
  await checkProperty(
    'mqtt-packets',
    fc.array(conversation, { minLength: PER_CASE, maxLength: PER_CASE }),
    async (conversations) => {
      await within(
        STALL_MS,
        'the raw connections to end',
        Promise.all(conversations.map((c) => talk(target.cp.mqttUrl, conversationBytes(c)))),
      );
      opened += conversations.length;
      packets += conversations.reduce((n, c) => n + c.packets.length, 0);
      assertHealthy(target);
      if ((opened / PER_CASE) % FRESH_CLIENT_EVERY === 0) await freshClientWorks(target.cp.mqttUrl);
    },
    Math.ceil(connections / PER_CASE),
    run,
  );
  return { connections: opened, packets, seed: run.seed };
}
