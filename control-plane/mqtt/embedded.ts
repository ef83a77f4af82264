import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { Aedes, type AuthErrorCode, type Client } from 'aedes';
import { ArgusError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { parseTopic, topics } from '../../contract/index.ts';
import type { DeviceCredentials } from '../auth.ts';
import type { EmbeddedBrokerSettings } from '../config.ts';
import { loadServerTls, peerCommonName } from '../tls.ts';
import { type Deliver, type MqttLink, mayRetain } from './link.ts';
import { acceptMqttConnection } from './v5-adapter.ts';

/** who may connect (with `deviceCredentials`), and where refusals are reported */
export interface DeviceAccess {
  credentials: DeviceCredentials;
  refused(topic: string, device: string | undefined): void;
  /** a retained message the broker was told not to keep */
  retainCleared(topic: string): void;
}

/**
 * The broker inside the control plane (aedes). Every message a client publishes, and every Last
 * Will, goes through aedes' `authorizePublish` hook before aedes answers the PUBACK (aedes writes
 * the PUBACK before `published` runs, so that hook would be too late): the hook hands the message
 * to ingest and calls back once it is stored, so a device deletes an event from its spool only
 * after it is in the database. The control plane's own publishes (commands) skip the hook. Aedes
 * stores a retained message after the hook, so the hook decides what stays retained: only an
 * availability or identity message, and only once ingest stored it (a rejected one is forwarded
 * but not kept). A device over its rate waits for its PUBACKs, and aedes reads nothing more
 * from its connection meanwhile.
 * MQTT v5 clients (the device agents) reach aedes through the v5 adapter.
 *
 * With `deviceCredentials`, a client connects with its device id and token, publishes only under
 * its own topics (anything else is refused, counted and ends its connection) and subscribes only
 * to its own commands.
 */
export async function startEmbeddedBroker(
  settings: EmbeddedBrokerSettings,
  deliver: Deliver,
  log: Logger,
  access: DeviceAccess,
): Promise<MqttLink> {
  const device = new WeakMap<Client, string>();
  const tls = settings.tls ? await loadServerTls(settings.tls, 'mqtt.embedded.tls') : undefined;
  /** under mutual TLS: the common name of each connection's verified client certificate */
  const certified = new WeakMap<object, string | undefined>();
  const broker = await Aedes.createBroker({
    authorizePublish: (client, packet, callback) => {
      if (settings.deviceCredentials) {
        const parsed = parseTopic(packet.topic);
        const owner = client ? device.get(client) : undefined;
        if (!parsed || parsed.kind === 'cmd' || parsed.device !== owner) {
          access.refused(packet.topic, owner);
          return callback(new Error(`device ${owner} may not publish on ${packet.topic}`));
        }
      }
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
      const clearRetain = () => {
        packet.retain = false;
        access.retainCleared(packet.topic);
      };
      if (packet.retain && !mayRetain(packet.topic)) clearRetain();
      deliver(packet.topic, payload, (verdict) => {
        if (packet.retain && verdict !== 'stored' && payload.length > 0) clearRetain();
        callback(null);
      });
    },
    ...(settings.deviceCredentials
      ? {
          authenticate: (client, username, password, done) => {
            if (tls?.ca && certified.get(client.conn) !== username) {
              access.refused(`(connect: client certificate of "${certified.get(client.conn)}")`, username);
              return done(
                Object.assign(new Error('client certificate of another device'), {
                  returnCode: 5 as AuthErrorCode,
                }),
                null,
              );
            }
            if (username && password && access.credentials.verifyToken(username, password.toString('utf8'))) {
              device.set(client, username);
              return done(null, true);
            }
            const err = Object.assign(new Error(`wrong credentials for "${username ?? ''}"`), {
              returnCode: 4 as AuthErrorCode,
            });
            access.refused('(connect)', username);
            done(err, null);
          },
          authorizeSubscribe: (client, subscription, callback) => {
            const owner = device.get(client);
            const wanted = parseTopic(subscription.topic);
            const own =
              subscription.topic === topics.commandFilter(owner ?? '') ||
              (wanted?.kind === 'cmd' && wanted.device === owner);
            // null refuses this subscription only (SUBACK failure), not the connection
            callback(null, owner !== undefined && own ? subscription : null);
          },
        }
      : {}),
  });
  broker.on('clientError', (client, err) =>
    log.debug({ client: client.id, err: err.message }, 'mqtt client error'),
  );
  const accept = (socket: Socket) =>
    acceptMqttConnection(socket, (conn) => {
      if (tls?.ca) certified.set(conn, peerCommonName(socket as TLSSocket));
      broker.handle(conn);
    });
  const server: Server = tls
    ? createTlsServer({ ...tls, requestCert: tls.ca !== undefined, rejectUnauthorized: true }, accept).on(
        'tlsClientError',
        (err, socket) =>
          log.debug({ address: socket.remoteAddress, err: err.message }, 'TLS handshake failed'),
      )
    : createServer(accept);
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
  const url = `${tls ? 'mqtts' : 'mqtt'}://${settings.host}:${port}`;
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
