import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { Aedes, type AuthErrorCode, type Client } from 'aedes';
import { ConnectionsPerAddress } from '../../common/connections-per-address.ts';
import { ArgusError, errorMessage } from '../../common/errors.ts';
import { sha256Hex } from '../../common/hash.ts';
import type { Logger } from '../../common/logger.ts';
import { deviceClientId, parseTopic, topics } from '../../contract/index.ts';
import { type DeviceCredentials, digestValid } from '../auth.ts';
import type { EmbeddedBrokerSettings } from '../config.ts';
import type { TransportRefusal } from '../metrics.ts';
import type { DeviceCredentialStore } from '../storage/device-credentials.ts';
import { loadServerTls, peerCommonName } from '../tls.ts';
import type { BrokerAccessControl } from './access-control.ts';
import { type Deliver, type MqttLink, mayRetain } from './link.ts';
import { acceptMqttConnection } from './v5-adapter.ts';

/** who may connect (with `deviceCredentials`), and where refusals are reported */
export interface DeviceAccess {
  credentials: DeviceCredentials;
  store: DeviceCredentialStore;
  /** wrong credentials, a foreign client id or topic, a refused subscription */
  refused(topic: string, device: string | undefined): void;
  /** a retained message the broker was told not to keep */
  retainCleared(topic: string): void;
  /** a transport bound bit and the connection was closed */
  transportRefused(reason: TransportRefusal): void;
  /** devices connected here whose credential rotation an operator asked for (checked periodically) */
  rotationsDue(connected: string[]): Promise<void>;
}

export interface EmbeddedBroker extends MqttLink {
  /** closes this broker's connections of `device` (its credential was revoked) */
  readonly accessControl: BrokerAccessControl;
  /** re-checks every connection's credential against the database now (also run periodically) */
  checkConnections(): Promise<void>;
}

interface Session {
  device: string;
  /** sha256 of the password the connection authenticated with */
  digest: string;
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
 * MQTT v5 clients (the device agents) reach aedes through the v5 adapter, which also bounds the
 * packet size and the time to CONNECT; connections per remote address are bounded here. With
 * `tls`, the broker speaks MQTTS (and, with `tls.clientCa`, requires each device's certificate).
 *
 * With `deviceCredentials` (the default), a client connects with username = its device id,
 * password = its credential and client id = `argus-<device id>` (so that no device takes over
 * another's session), publishes only under its own topics (anything else is refused, counted and
 * ends its connection) and subscribes only to its own commands (`$SYS/` included: refused). Every
 * `credentialCheckS` the credentials of the open connections are checked against the database, so
 * that a device revoked elsewhere (the CLI, another replica) is disconnected within seconds.
 */
export async function startEmbeddedBroker(
  settings: EmbeddedBrokerSettings,
  deliver: Deliver,
  log: Logger,
  access: DeviceAccess,
): Promise<EmbeddedBroker> {
  const sessions = new WeakMap<Client, Session>();
  const live = new Set<Client>();
  const tls = settings.tls ? await loadServerTls(settings.tls, 'mqtt.embedded.tls') : undefined;
  /** under mutual TLS: the common name of each connection's verified client certificate */
  const certified = new WeakMap<object, string | undefined>();
  const broker = await Aedes.createBroker({
    authorizePublish: (client, packet, callback) => {
      if (settings.deviceCredentials) {
        const parsed = parseTopic(packet.topic);
        const owner = client ? sessions.get(client)?.device : undefined;
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
            const refuse = (returnCode: AuthErrorCode, why: string) => {
              access.refused('(connect)', username);
              done(Object.assign(new Error(why), { returnCode }), null);
            };
            if (tls?.ca && certified.get(client.conn) !== username) {
              access.refused(`(connect: client certificate of "${certified.get(client.conn)}")`, username);
              return done(
                Object.assign(new Error('client certificate of another device'), {
                  returnCode: 5 as AuthErrorCode,
                }),
                null,
              );
            }
            if (!username || !password) return refuse(4, 'a device connects with its id and credential');
            if (client.id !== deviceClientId(username))
              return refuse(2, `device ${username} must connect with client id ${deviceClientId(username)}`);
            const secret = password.toString('utf8');
            access.credentials.verifyToken(username, secret).then(
              (valid) => {
                if (!valid) return refuse(4, `wrong credentials for "${username}"`);
                sessions.set(client, { device: username, digest: sha256Hex(secret) });
                done(null, true);
              },
              (err: unknown) => {
                log.error({ err: errorMessage(err) }, 'cannot check device credentials');
                done(Object.assign(new Error('credentials cannot be checked'), { returnCode: 3 }), null);
              },
            );
          },
          authorizeSubscribe: (client, subscription, callback) => {
            const owner = client ? sessions.get(client)?.device : undefined;
            const wanted = parseTopic(subscription.topic);
            const own =
              owner !== undefined &&
              (subscription.topic === topics.commandFilter(owner) ||
                (wanted?.kind === 'cmd' && wanted.device === owner));
            if (!own) access.refused(subscription.topic, owner);
            // null refuses this subscription only (SUBACK failure), not the connection
            callback(null, own ? subscription : null);
          },
        }
      : {}),
  });
  if (!settings.deviceCredentials)
    log.warn(
      'mqtt.embedded.deviceCredentials is false: ANY client may connect, publish as any device, read every command and send commands to boxes; set it to true (the default) outside a closed lab',
    );
  broker.on('client', (client) => live.add(client));
  broker.on('clientDisconnect', (client) => live.delete(client));
  broker.on('clientError', (client, err) =>
    log.debug({ client: client.id, err: err.message }, 'mqtt client error'),
  );

  const perAddress = new ConnectionsPerAddress(settings.maxConnectionsPerAddress);
  const accept = (socket: Socket) => {
    const refuse = () => {
      access.transportRefused('connections_per_address');
      socket.destroy();
    };
    const now = perAddress.admit(socket, (admitted) => (admitted ? serve(socket) : refuse()));
    if (now === 'admitted') serve(socket);
    else if (now === 'refused') refuse();
  };
  const serve = (socket: Socket) =>
    acceptMqttConnection(
      socket,
      (conn) => {
        if (tls?.ca) certified.set(conn, peerCommonName(socket as TLSSocket));
        return broker.handle(conn);
      },
      {
        maxPacketBytes: settings.maxPacketBytes,
        connectTimeoutMs: settings.connectTimeoutS * 1000,
        refused: access.transportRefused,
      },
    );
  const server: Server = tls
    ? createTlsServer(
        {
          ...tls,
          requestCert: tls.ca !== undefined,
          rejectUnauthorized: true,
          handshakeTimeout: settings.connectTimeoutS * 1000,
        },
        accept,
      ).on('tlsClientError', (err, socket) =>
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
  log.info({ url, deviceCredentials: settings.deviceCredentials }, 'embedded MQTT broker listening');

  const closeDevice = (device: string, why: string) => {
    for (const client of [...live])
      if (sessions.get(client)?.device === device) {
        log.info({ device }, `closing the device's MQTT connection: ${why}`);
        client.close();
      }
  };
  let checking: Promise<void> | undefined;
  const checkConnections = async () => {
    const connected = [...live].filter((c) => sessions.has(c));
    const devices = [...new Set(connected.map((c) => sessions.get(c)!.device))];
    if (devices.length === 0) return;
    const records = await access.store.getMany(devices);
    for (const client of connected) {
      const session = sessions.get(client)!;
      if (!digestValid(records.get(session.device), session.digest)) {
        log.info(
          { device: session.device },
          'closing an MQTT connection whose credential is no longer valid',
        );
        client.close();
      }
    }
    await access.rotationsDue(
      devices.filter((d) => {
        const r = records.get(d);
        return r !== undefined && r.rotationRequestedAt !== null && r.rotationSentAt === null;
      }),
    );
  };
  const timer = settings.deviceCredentials
    ? setInterval(() => {
        checking ??= checkConnections()
          .catch((err: unknown) =>
            log.error({ err: errorMessage(err) }, 'cannot check the credentials of connected devices'),
          )
          .finally(() => {
            checking = undefined;
          });
      }, settings.credentialCheckS * 1000)
    : undefined;
  timer?.unref();

  return {
    url,
    accessControl: {
      // the embedded broker checks every connection against the database itself
      checksSecrets: false,
      grant: async () => undefined,
      revoke: async (device) => closeDevice(device, 'its credential was revoked'),
    },
    checkConnections,
    publish: (topic, payload) =>
      new Promise<void>((resolve, reject) =>
        broker.publish(
          { cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: false, dup: false },
          (err) => (err ? reject(err) : resolve()),
        ),
      ),
    async close() {
      clearInterval(timer);
      await checking;
      server.close();
      await new Promise<void>((resolve) => broker.close(() => resolve()));
    },
  };
}
