import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';
import { ArgusError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import type { EmbeddedBrokerSettings } from '../config.ts';
import type { Deliver, MqttLink } from './link.ts';
import { acceptMqttConnection } from './v5-adapter.ts';

/**
 * The broker inside the control plane (aedes). Every message a client publishes, and every Last
 * Will, goes through aedes' `authorizePublish` hook before aedes answers the PUBACK (aedes writes
 * the PUBACK before `published` runs, so that hook would be too late): the hook hands the message
 * to ingest and calls back once it is stored, so a device deletes an event from its spool only
 * after it is in the database. The control plane's own publishes (commands) skip the hook.
 * MQTT v5 clients (the device agents) reach aedes through the v5 adapter.
 */
export async function startEmbeddedBroker(
  settings: EmbeddedBrokerSettings,
  deliver: Deliver,
  log: Logger,
): Promise<MqttLink> {
  const broker = await Aedes.createBroker({
    authorizePublish: (_client, packet, callback) => {
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      deliver(packet.topic, payload, () => callback(null));
    },
  });
  broker.on('clientError', (client, err) =>
    log.debug({ client: client.id, err: err.message }, 'mqtt client error'),
  );
  const server: Server = createServer((socket) => acceptMqttConnection(socket, broker.handle));
  server.listen(settings.port, settings.host);
  try {
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([err]) => {
        throw err;
      }),
    ]);
  } catch (err) {
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    throw new ArgusError(
      `the embedded MQTT broker cannot listen on ${settings.host}:${settings.port}: ${(err as Error).message}`,
      'choose another mqtt.embedded.port, or stop what uses it',
    );
  }
  const { port } = server.address() as { port: number };
  const url = `mqtt://${settings.host}:${port}`;
  log.info({ url }, 'embedded MQTT broker listening');
  return {
    url,
    publish: (topic, payload) =>
      new Promise<void>((resolve, reject) =>
        broker.publish(
          { cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false },
          (err) => (err ? reject(err) : resolve()),
        ),
      ),
    async close() {
      server.close();
      await new Promise<void>((resolve) => broker.close(() => resolve()));
    },
  };
}
