import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import mqttPacket, { type Packet } from 'mqtt-packet';

/**
 * aedes 1.x speaks MQTT 3.1.1 only, while device agents connect with MQTT v5. This adapter sits
 * between a v5 client's socket and aedes: it parses the client's v5 packets, hands aedes their
 * 3.1.1 equivalents and turns aedes' answers back into v5 packets. v5-only features are dropped on
 * the way in (properties: session expiry, receive maximum, retain handling, will delay); the
 * session itself is kept by aedes for a `clean: false` connect. Clients connecting with 3.1.1 or
 * 3.1 are handed to aedes untouched.
 */

/** CONNACK return codes of 3.1.1 → v5 reason codes */
const CONNACK_REASON: Record<number, number> = { 0: 0, 1: 132, 2: 133, 3: 136, 4: 134, 5: 135 };

/** two connected in-memory streams: what is written to one is read from the other */
function streamPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const make = (peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk, _encoding, callback) {
        peer().push(chunk);
        callback();
      },
      final(callback) {
        peer().push(null);
        callback();
      },
    });
  ends.push(
    make(() => ends[1]!),
    make(() => ends[0]!),
  );
  return [ends[0]!, ends[1]!];
}

function toV311(p: Packet, unsubscribes: Map<number, number>): Packet | undefined {
  switch (p.cmd) {
    case 'connect':
      return {
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: p.clean,
        clientId: p.clientId,
        keepalive: p.keepalive,
        ...(p.username !== undefined ? { username: p.username } : {}),
        ...(p.password !== undefined ? { password: p.password } : {}),
        ...(p.will
          ? { will: { topic: p.will.topic, payload: p.will.payload, qos: p.will.qos, retain: p.will.retain } }
          : {}),
      };
    case 'publish':
      return {
        cmd: 'publish',
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        dup: p.dup,
        ...(p.messageId !== undefined ? { messageId: p.messageId } : {}),
      };
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
      return { cmd: p.cmd, messageId: p.messageId } as Packet;
    case 'subscribe':
      return {
        cmd: 'subscribe',
        messageId: p.messageId,
        subscriptions: p.subscriptions.map((s) => ({ topic: s.topic, qos: s.qos })),
      };
    case 'unsubscribe':
      unsubscribes.set(p.messageId ?? 0, p.unsubscriptions.length);
      return { cmd: 'unsubscribe', messageId: p.messageId, unsubscriptions: p.unsubscriptions };
    case 'pingreq':
      return { cmd: 'pingreq' };
    case 'disconnect':
      return { cmd: 'disconnect' };
    default:
      return undefined;
  }
}

function toV5(p: Packet, unsubscribes: Map<number, number>, maxPacketBytes: number): Packet {
  switch (p.cmd) {
    case 'connack':
      return {
        cmd: 'connack',
        sessionPresent: p.sessionPresent,
        reasonCode: CONNACK_REASON[p.returnCode ?? 0] ?? 128,
        properties: { maximumPacketSize: maxPacketBytes },
      };
    case 'unsuback': {
      const n = unsubscribes.get(p.messageId ?? 0) ?? 1;
      unsubscribes.delete(p.messageId ?? 0);
      return { cmd: 'unsuback', messageId: p.messageId, granted: new Array(n).fill(0) } as Packet;
    }
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
      return { cmd: p.cmd, messageId: p.messageId, reasonCode: 0 } as Packet;
    default:
      return p;
  }
}

/** bridges a v5 client's socket to aedes; `buffered` holds the bytes already read from it */
function bridge(
  socket: Socket,
  buffered: Buffer,
  handle: (conn: Duplex) => void,
  maxPacketBytes: number,
): void {
  const [ours, aedesEnd] = streamPair();
  const unsubscribes = new Map<number, number>();
  const fromClient = mqttPacket.parser({ protocolVersion: 5 });
  const fromAedes = mqttPacket.parser({ protocolVersion: 4 });
  const close = () => {
    socket.destroy();
    aedesEnd.destroy();
  };
  fromClient.on('packet', (p: Packet) => {
    const down = toV311(p, unsubscribes);
    if (!down) return close();
    ours.write(mqttPacket.generate(down, { protocolVersion: 4 }));
  });
  fromAedes.on('packet', (p: Packet) => {
    if (!socket.destroyed)
      socket.write(mqttPacket.generate(toV5(p, unsubscribes, maxPacketBytes), { protocolVersion: 5 }));
  });
  fromClient.on('error', close);
  fromAedes.on('error', close);
  ours.on('data', (chunk: Buffer) => fromAedes.parse(chunk));
  ours.on('end', () => socket.end());
  aedesEnd.on('close', () => setImmediate(() => socket.end()));
  socket.on('data', (chunk: Buffer) => fromClient.parse(chunk));
  socket.on('end', () => ours.end());
  socket.on('close', () => aedesEnd.destroy());
  socket.on('error', () => aedesEnd.destroy());
  handle(aedesEnd);
  fromClient.parse(buffered);
  socket.resume();
}

/** what a connection may do before and while it speaks MQTT */
export interface ConnectionBounds {
  /** largest MQTT packet (fixed header included); a larger one closes the connection */
  maxPacketBytes: number;
  /** a connection that has not sent its CONNECT by then is closed */
  connectTimeoutMs: number;
  /** a bound bit: the connection was closed for it */
  refused(reason: 'packet_too_large' | 'connect_timeout'): void;
}

/**
 * Watches the packet lengths in a byte stream (each packet's fixed header: a type byte, then its
 * remaining length as a variable-length integer) and calls `tooLarge` as soon as a header
 * announces more than `max` bytes, before the packet's body is read, so that no parser buffers it.
 */
export class PacketSizeWatch {
  private state: 'type' | 'length' | 'body' = 'type';
  private length = 0;
  private multiplier = 1;
  private headerBytes = 0;
  private remaining = 0;
  private skip = 0;
  private stopped = false;

  constructor(
    private readonly max: number,
    private readonly tooLarge: () => void,
  ) {}

  /** the next `n` bytes were seen already (they are read again after an unshift) */
  seen(n: number): void {
    this.skip += n;
  }

  observe(chunk: Buffer): void {
    let i = 0;
    if (this.skip > 0) {
      i = Math.min(this.skip, chunk.length);
      this.skip -= i;
    }
    while (i < chunk.length && !this.stopped) {
      if (this.state === 'body') {
        const n = Math.min(this.remaining, chunk.length - i);
        this.remaining -= n;
        i += n;
        if (this.remaining === 0) this.state = 'type';
        continue;
      }
      const byte = chunk[i++]!;
      if (this.state === 'type') {
        this.state = 'length';
        this.length = 0;
        this.multiplier = 1;
        this.headerBytes = 1;
        continue;
      }
      this.length += (byte & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.headerBytes++;
      if (this.headerBytes + this.length > this.max || (byte & 0x80 && this.headerBytes > 4)) {
        this.stopped = true;
        this.tooLarge();
        return;
      }
      if (byte & 0x80) continue;
      this.remaining = this.length;
      this.state = this.remaining === 0 ? 'type' : 'body';
    }
  }
}

/**
 * Reads a new connection up to its CONNECT packet and hands it to aedes directly (3.1/3.1.1) or
 * through the v5 bridge. From the first byte on, every packet's announced length is checked
 * against `bounds.maxPacketBytes`, and the CONNECT must arrive within `bounds.connectTimeoutMs`.
 */
export function acceptMqttConnection(
  socket: Socket,
  handle: (conn: Duplex) => void,
  bounds: ConnectionBounds,
): void {
  const refuse = (reason: 'packet_too_large' | 'connect_timeout') => {
    if (socket.destroyed) return;
    bounds.refused(reason);
    socket.destroy();
  };
  const watch = new PacketSizeWatch(bounds.maxPacketBytes, () => refuse('packet_too_large'));
  socket.on('data', (chunk: Buffer) => watch.observe(chunk));
  const timer = setTimeout(() => refuse('connect_timeout'), bounds.connectTimeoutMs);
  socket.once('close', () => clearTimeout(timer));
  const probe = mqttPacket.parser();
  const chunks: Buffer[] = [];
  const onData = (chunk: Buffer) => {
    chunks.push(chunk);
    probe.parse(chunk);
  };
  probe.once('packet', (p: Packet) => {
    clearTimeout(timer);
    socket.off('data', onData);
    if (socket.destroyed) return;
    if (p.cmd !== 'connect') return void socket.destroy();
    socket.pause();
    const buffered = Buffer.concat(chunks);
    if (p.protocolVersion === 5) {
      bridge(socket, buffered, handle, bounds.maxPacketBytes);
    } else {
      watch.seen(buffered.length);
      socket.unshift(buffered);
      handle(socket);
    }
  });
  // \`on\`, not \`once\`: the parser reports an error per chunk, and a chunk read before the socket is
  // gone would meet an emitter without an error listener, which throws (and ends the process)
  probe.on('error', () => {
    socket.off('data', onData);
    socket.destroy();
  });
  socket.on('data', onData);
  socket.on('error', () => socket.destroy());
}
