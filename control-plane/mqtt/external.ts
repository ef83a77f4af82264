import { connect, type IPublishPacket, type MqttClient } from 'mqtt';
import { ArgusError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { redactUrl } from '../../common/net.ts';
import { ingestWildcard } from '../../contract/index.ts';
import type { ExternalBrokerSettings } from '../config.ts';
import type { Verdict } from '../ingest/ingestor.ts';
import type { ClientTlsMaterial } from '../tls.ts';
import { type Deliver, type MqttLink, mayRetain } from './link.ts';

const CONNECT_TIMEOUT_MS = 15_000;
const CLOSE_TIMEOUT_MS = 2000;

/**
 * mqtt.js handles received packets one at a time and sends a QoS 1 PUBACK when `handleMessage`
 * calls back without an error. Calling back with this marker moves on to the next packet without
 * a PUBACK; the link writes the PUBACK itself once the message is stored (see `PubackWriter`).
 */
const ACK_DEFERRED = new Error('puback deferred until the message is stored');

/**
 * Writes the PUBACKs of stored messages straight to the connection, all those of one tick in one
 * write: a PUBACK with reason 0 (success) is the 4 bytes `0x40 0x02 <message id>` in every MQTT
 * version. PUBACKs for a connection that has since been replaced are dropped: the broker sends
 * those messages again on the new one.
 */
class PubackWriter {
  private ids: number[] = [];
  private stream: NodeJS.WritableStream | undefined;

  constructor(private readonly current: () => NodeJS.WritableStream | undefined) {}

  ack(stream: NodeJS.WritableStream, messageId: number): void {
    if (this.current() !== stream) return;
    if (this.stream !== stream) {
      this.ids = [];
      this.stream = stream;
      process.nextTick(() => this.flush());
    } else if (this.ids.length === 0) {
      process.nextTick(() => this.flush());
    }
    this.ids.push(messageId);
  }

  private flush(): void {
    const stream = this.stream;
    const ids = this.ids;
    this.ids = [];
    if (ids.length === 0 || !stream || this.current() !== stream) return;
    const packets = Buffer.allocUnsafe(ids.length * 4);
    ids.forEach((id, i) => {
      packets[i * 4] = 0x40;
      packets[i * 4 + 1] = 0x02;
      packets.writeUInt16BE(id, i * 4 + 2);
    });
    stream.write(packets);
  }
}

/**
 * The control plane as a client of an external broker (Mosquitto, EMQX): MQTT v5, a fixed client
 * id with `clean: false` and a session expiry, so that the broker queues messages while the control
 * plane is down, and QoS 1 on the ingest wildcard (a shared subscription when `sharedGroup` is set).
 * A PUBACK goes out only after the message is stored: if the control plane dies first, the broker
 * delivers the message again and ingest's idempotency absorbs the repeat.
 *
 * The subscription keeps the retain flag as published, so that the link sees which messages the
 * broker keeps: one that ingest did not store, or on a topic that is not retained, is cleared by
 * publishing an empty retained message on its topic (`retainCleared` is told).
 */
export async function connectExternalBroker(
  settings: ExternalBrokerSettings,
  deliver: Deliver,
  log: Logger,
  retainCleared: (topic: string) => void,
  /** for an mqtts:// broker: its CA (and a client certificate), from `settings.tls` */
  tls?: ClientTlsMaterial,
): Promise<MqttLink> {
  const client: MqttClient = connect(settings.url, {
    protocolVersion: 5,
    clientId: settings.clientId,
    clean: false,
    reconnectPeriod: 1000,
    connectTimeout: 10_000,
    resubscribe: false,
    ...(settings.username ? { username: settings.username } : {}),
    ...(settings.password ? { password: settings.password } : {}),
    ...tls,
    properties: {
      sessionExpiryInterval: settings.sessionExpiryS,
      receiveMaximum: settings.receiveMaximum,
    },
  });
  const filter = ingestWildcard(settings.sharedGroup);
  const pubacks = new PubackWriter(() => (client.connected ? client.stream : undefined));

  /** an empty retained message deletes the one the broker keeps (an empty one is never cleared again) */
  const clearRetained = (packet: IPublishPacket, payload: Buffer, verdict: Verdict) => {
    if (!packet.retain || payload.length === 0) return;
    if (verdict === 'stored' && mayRetain(packet.topic)) return;
    retainCleared(packet.topic);
    client.publish(packet.topic, '', { qos: 1, retain: true }, (err) => {
      if (err) log.warn({ topic: packet.topic, err: err.message }, 'cannot clear a retained message');
    });
  };
  client.handleMessage = (packet: IPublishPacket, callback) => {
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    // an empty retained message deletes what the broker kept (ours, clearing one): not a message
    if (packet.retain && payload.length === 0) {
      callback();
      return;
    }
    if (packet.qos !== 1 || packet.messageId === undefined) {
      deliver(packet.topic, payload, (verdict) => clearRetained(packet, payload, verdict));
      callback();
      return;
    }
    const stream = client.stream;
    const messageId = packet.messageId;
    deliver(packet.topic, payload, (verdict) => {
      clearRetained(packet, payload, verdict);
      pubacks.ack(stream, messageId);
    });
    callback(ACK_DEFERRED);
  };

  let lastError: string | undefined;
  client.on('error', (err) => {
    if (err.message !== lastError)
      log.warn({ url: redactUrl(settings.url), err: err.message }, 'mqtt broker error');
    lastError = err.message;
  });
  client.on('connect', (connack) => {
    lastError = undefined;
    log.info(
      { url: redactUrl(settings.url), sessionPresent: connack.sessionPresent },
      'connected to the MQTT broker',
    );
    client.subscribe(filter, { qos: 1, rap: true }, (err) => {
      if (err) log.error({ filter, err: err.message }, 'cannot subscribe to the ingest topics');
    });
  });
  client.on('offline', () =>
    log.warn({ url: redactUrl(settings.url) }, 'MQTT broker unreachable; reconnecting'),
  );

  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no connection within ${CONNECT_TIMEOUT_MS / 1000} s`)),
        CONNECT_TIMEOUT_MS,
      );
      client.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  } catch (err) {
    await client.endAsync(true);
    throw new ArgusError(
      `cannot connect to the MQTT broker ${redactUrl(settings.url)}: ${lastError ?? (err as Error).message}`,
      'check mqtt.external.url (and username/password) and that the broker runs',
    );
  }
  return {
    url: settings.url,
    async publish(topic, payload) {
      await client.publishAsync(topic, payload, { qos: 1 });
    },
    /** after ingest has stopped: its last PUBACKs are written before the DISCONNECT */
    async close() {
      const timer = setTimeout(() => client.end(true), CLOSE_TIMEOUT_MS);
      await client.endAsync(false);
      clearTimeout(timer);
    },
  };
}
