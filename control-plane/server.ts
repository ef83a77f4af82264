import { errorMessage } from '../common/errors.ts';
import { createLogger, type Logger } from '../common/logger.ts';
import { redactUrl } from '../common/net.ts';
import { buildApi, type RouteInfo } from './api/app.ts';
import { DeviceCredentials } from './auth.ts';
import { CommandSender } from './commands.ts';
import type { ControlPlaneConfig } from './config.ts';
import { EventBus } from './event-bus.ts';
import { Ingestor } from './ingest/ingestor.ts';
import { RateLimitedLog } from './ingest/rate-limited-log.ts';
import { Metrics } from './metrics.ts';
import { startEmbeddedBroker } from './mqtt/embedded.ts';
import { connectExternalBroker } from './mqtt/external.ts';
import type { MqttLink } from './mqtt/link.ts';
import { openRepository } from './storage/open.ts';
import type { Repository, StoredEvent } from './storage/repository.ts';

export interface ControlPlane {
  /** base URL of the REST API, e.g. http://127.0.0.1:8080 */
  httpUrl: string;
  /** where devices connect: the embedded broker, or the external broker's URL */
  mqttUrl: string;
  repository: Repository;
  metrics: Metrics;
  /** every HTTP route of the API */
  routes: readonly RouteInfo[];
  /** called for every newly stored event, after its transaction committed */
  onEvent(listener: (event: StoredEvent) => void): () => void;
  /** stores what was received, then stops the API, the broker link and the database; idempotent */
  close(): Promise<void>;
}

/**
 * Starts a control plane: storage (migrated), ingest, the MQTT side (embedded broker or external
 * client) and the HTTP API. If a part fails to start, the parts already started are stopped and the
 * error (an ArgusError saying what to fix) is thrown.
 */
export async function startControlPlane(
  config: ControlPlaneConfig,
  log: Logger = createLogger('control-plane'),
): Promise<ControlPlane> {
  const cleanups: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (err) {
        log.error({ err: errorMessage(err) }, 'shutdown step failed');
      }
    }
  };
  try {
    const repository = await openRepository(config.storage);
    cleanups.push(() => repository.close());
    const metrics = new Metrics();
    const bus = new EventBus(config.limits.http.streamBacklogBytes, () =>
      metrics.countHttpLimited('event_depth'),
    );
    const ingestor = new Ingestor(
      repository,
      config.ingest,
      metrics,
      log.child({ part: 'ingest' }),
      (events) => bus.publish(events),
    );
    const deliver = ingestor.accept.bind(ingestor);
    const credentials = new DeviceCredentials(config.devices);
    const mqttLog = log.child({ part: 'mqtt' });
    const refusals = new RateLimitedLog(mqttLog);
    const link: MqttLink =
      config.mqtt.kind === 'embedded'
        ? await startEmbeddedBroker(config.mqtt.embedded, deliver, mqttLog, {
            credentials,
            refused: (topic, device) => {
              metrics.countRejected('not_authorized');
              refusals.warn(
                `${device}`,
                { topic, device },
                "refused: wrong device credentials, or not the device's own topic",
              );
            },
          })
        : await connectExternalBroker(config.mqtt.external, deliver, mqttLog);
    cleanups.push(() => link.close());
    cleanups.push(() => ingestor.stop());
    const api = await buildApi(
      {
        repo: repository,
        credentials,
        bus,
        metrics,
        commands: new CommandSender(repository, () => link, metrics),
        mqttUrl: () => redactUrl(link.url),
        pendingMessages: () => ingestor.pendingCount,
        limits: config.limits.http,
      },
      log.child({ part: 'http' }),
    );
    cleanups.push(() => api.close());
    const address = await api.app.listen({ host: config.http.host, port: config.http.port });
    const httpUrl = address.replace('[::1]', 'localhost');
    log.info(
      {
        http: httpUrl,
        mqtt: redactUrl(link.url),
        storage: repository.backend,
        devices: config.devices.length,
      },
      'control plane running',
    );
    let closing: Promise<void> | undefined;
    return {
      httpUrl,
      mqttUrl: link.url,
      repository,
      metrics,
      routes: api.routes,
      onEvent: (listener) => bus.subscribe(listener),
      close() {
        closing ??= stopAll().then(() => log.info('control plane stopped'));
        return closing;
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
