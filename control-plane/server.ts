import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { errorMessage } from '../common/errors.ts';
import { createLogger, type Logger } from '../common/logger.ts';
import { isLoopback, redactUrl } from '../common/net.ts';
import { FINAL_UPDATE_STATES } from '../contract/index.ts';
import { buildApi } from './api/app.ts';
import type { RouteAccess } from './api/auth-plugin.ts';
import { type ArtifactReferences, ArtifactRegistry } from './artifacts/registry.ts';
import { DeviceCredentials } from './auth.ts';
import { syncBrokerCredentials } from './broker-credential-sync.ts';
import { CommandSender } from './commands.ts';
import type { ControlPlaneConfig, ExternalBrokerSettings } from './config.ts';
import { DeviceHealth } from './device-health.ts';
import { Enrollment } from './enrollment.ts';
import { EventBus } from './event-bus.ts';
import { HarvestedFrames } from './harvest/frames.ts';
import { Ingestor } from './ingest/ingestor.ts';
import { RateLimitedLog } from './ingest/rate-limited-log.ts';
import { LeasedJob } from './leased-job.ts';
import { LoopRunStore } from './loop/store.ts';
import { Metrics } from './metrics.ts';
import type { BrokerAccessControl } from './mqtt/access-control.ts';
import { startEmbeddedBroker } from './mqtt/embedded.ts';
import { connectExternalBroker } from './mqtt/external.ts';
import type { Deliver, MqttLink } from './mqtt/link.ts';
import { MosquittoDynamicSecurity } from './mqtt/mosquitto-dynsec.ts';
import { artifactRetention } from './retention/artifacts.ts';
import { harvestRetention } from './retention/harvest.ts';
import { RETENTION_KINDS } from './retention/kinds.ts';
import { Retention } from './retention/retention.ts';
import { type ArtifactVariants, RolloutEngine } from './rollouts/engine.ts';
import { Rollouts } from './rollouts/service.ts';
import { ScenePreviews } from './scenes/preview.ts';
import { SceneBundles } from './scenes/publish.ts';
import { ApiTokens } from './storage/api-tokens.ts';
import { AuditLog } from './storage/audit.ts';
import { DeviceCredentialStore } from './storage/device-credentials.ts';
import { DeviceHistory, statusChangesOf } from './storage/device-history.ts';
import { LeaseStore } from './storage/leases.ts';
import { LoginFailures } from './storage/login-failures.ts';
import { openRepository } from './storage/open.ts';
import { QuarantineStore } from './storage/quarantine.ts';
import type { Repository, StoredEvent } from './storage/repository.ts';
import { Sessions } from './storage/sessions.ts';
import { Users } from './storage/users.ts';
import { loadClientTls, loadServerTls } from './tls.ts';

export interface ControlPlane {
  /** base URL of the REST API, e.g. http://127.0.0.1:8080 */
  httpUrl: string;
  /** where devices connect: the embedded broker, or the external broker's URL */
  mqttUrl: string;
  repository: Repository;
  metrics: Metrics;
  /** the broker's side of device credentials (`grant` on issue, `revoke`), when it needs telling */
  accessControl: BrokerAccessControl | undefined;
  /** claim tokens, rotation and revocation of device credentials */
  enrollment: Enrollment;
  /** every route of the HTTP API, with its access level */
  routes: readonly RouteAccess[];
  /** rollouts of artifacts to devices: assignedTo (downloads), referencedArtifacts (retention) */
  rollouts: Rollouts;
  /** the artifact registry (what `POST /api/v1/artifacts` publishes to) */
  artifacts: ArtifactRegistry;
  /** the frames boxes harvested for the loop (its bytes in the registry's blob store) */
  harvest: HarvestedFrames;
  /** called for every newly stored event, after its transaction committed */
  onEvent(listener: (event: StoredEvent) => void): () => void;
  /** stores what was received, then stops the API, the broker link and the database; idempotent */
  close(): Promise<void>;
}

/** parts of the control plane given by the caller instead of the defaults */
export interface ControlPlaneParts {
  /**
   * which artifacts are assigned to which device and referenced by a rollout: the registry's
   * download authorization and its retention ask it. Default: the rollouts' assignments
   */
  artifactReferences?: ArtifactReferences;
  /** where rollouts take each device's variant of an artifact from. Default: the registry */
  artifacts?: ArtifactVariants;
}

/**
 * The jobs that run on one replica at a time, each under its lease: retention, and the health
 * sweep recording devices that fall silent (published on this replica's live streams)
 */
function startLeasedJobs(
  config: ControlPlaneConfig,
  repository: Repository,
  metrics: Metrics,
  bus: EventBus,
  log: Logger,
  health: DeviceHealth,
  engine: RolloutEngine,
  /** with an external broker: one sweep of syncBrokerCredentials */
  brokerSync: (() => Promise<unknown>) | undefined,
  artifacts: ArtifactRegistry,
  harvest: HarvestedFrames,
) {
  const leases = new LeaseStore(repository.sql);
  const ttlMs = config.leases.ttlS * 1000;
  const holder = `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
  const rollouts = new LeasedJob(
    leases,
    { name: 'rollouts', holder, ttlMs, intervalMs: config.rollouts.tickS * 1000 },
    (stillHeld) => engine.tick(stillHeld),
    log.child({ part: 'rollouts' }),
  );
  rollouts.start();
  const sweep = new LeasedJob(
    leases,
    { name: 'device-health', holder, ttlMs, intervalMs: config.health.sweepS * 1000 },
    async () => bus.publishStatus(await health.sweep()),
    log.child({ part: 'health' }),
  );
  sweep.start();
  const retentionLog = log.child({ part: 'retention' });
  const retention = config.retention.enabled
    ? new LeasedJob(
        leases,
        { name: 'retention', holder, ttlMs, intervalMs: config.retention.intervalS * 1000 },
        async (stillHeld) => {
          const report = await new Retention(
            repository,
            config.retention,
            metrics.retention,
            RETENTION_KINDS,
            Date.now,
            [artifactRetention(artifacts), harvestRetention(harvest)],
          ).run(stillHeld);
          retentionLog.info(report, 'retention run');
        },
        retentionLog,
      )
    : undefined;
  retention?.start();
  const brokerLog = log.child({ part: 'broker-credentials' });
  const broker = brokerSync
    ? new LeasedJob(
        leases,
        {
          name: 'broker-credentials',
          holder,
          ttlMs,
          intervalMs: config.enrollment.brokerSyncS * 1000,
        },
        async () => {
          const done = await brokerSync();
          brokerLog.debug(done, 'broker credentials in line with the database');
        },
        brokerLog,
      )
    : undefined;
  broker?.start();
  return {
    health,
    /** a rollout or a device's update changed here: the engine runs soon (on the holder of its lease) */
    pokeRollouts: () => rollouts.poke(),
    get retentionLeader() {
      return retention?.held ?? false;
    },
    async stop() {
      await Promise.all([sweep.stop(), retention?.stop(), broker?.stop(), rollouts.stop()]);
    },
  };
}

/**
 * The external broker link; with dynamic security, the broker's clients and ACLs are set up first
 * (the control plane's own client among them) and kept in `link.accessControl`.
 */
async function connectExternal(
  settings: ExternalBrokerSettings,
  deliver: Deliver,
  log: Logger,
  cleanups: (() => Promise<void>)[],
  retainCleared: (topic: string) => void,
): Promise<MqttLink> {
  const tls = settings.tls ? await loadClientTls(settings.tls, 'mqtt.external.tls') : undefined;
  if (!settings.dynamicSecurity) {
    log.warn(
      { url: redactUrl(settings.url) },
      "mqtt.external.dynamicSecurity is not set: the broker's own configuration decides which client may publish and read what",
    );
    return connectExternalBroker(settings, deliver, log, retainCleared, tls);
  }
  const accessControl = await MosquittoDynamicSecurity.start(settings, log, tls);
  cleanups.push(() => accessControl.close());
  const link = await connectExternalBroker(settings, deliver, log, retainCleared, tls);
  return { url: link.url, accessControl, publish: link.publish, close: link.close };
}

/**
 * Starts a control plane: storage (migrated), ingest, the MQTT side (embedded broker or external
 * client) and the HTTP API. If a part fails to start, the parts already started are stopped and the
 * error (an ArgusError saying what to fix) is thrown.
 */
export async function startControlPlane(
  config: ControlPlaneConfig,
  log: Logger = createLogger('control-plane'),
  parts: ControlPlaneParts = {},
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
    const bus = new EventBus(config.limits.http.streamBacklogBytes);
    const health = new DeviceHealth(repository.sql, config.health);
    // the registry's variants, once it is built below (or the caller's)
    let variants: ArtifactVariants | undefined = parts.artifacts;
    const rollouts = new Rollouts(repository, () => variants, health);
    const ingestor = new Ingestor(
      repository,
      config.ingest,
      metrics,
      log.child({ part: 'ingest' }),
      (events, records) => {
        bus.publish(events);
        bus.publishStatus(statusChangesOf(records));
        // a device whose update ended may complete its wave: the engine need not wait for its tick
        if (records.some((r) => r.kind === 'update' && FINAL_UPDATE_STATES.includes(r.message.state)))
          rollouts.onChanged();
      },
      rollouts.store,
    );
    const deliver = ingestor.accept.bind(ingestor);
    const store = new DeviceCredentialStore(repository.sql);
    await store.provision(config.devices, Date.now());
    const credentials = new DeviceCredentials(store);
    const mqttLog = log.child({ part: 'mqtt' });
    const refusals = new RateLimitedLog(mqttLog);
    const retainCleared = () => {
      metrics.retainCleared++;
    };
    let sendRotations: (devices: string[]) => Promise<void> = async () => undefined;
    const broker: { link: MqttLink; access: BrokerAccessControl | undefined } =
      config.mqtt.kind === 'embedded'
        ? await startEmbeddedBroker(config.mqtt.embedded, deliver, mqttLog, {
            credentials,
            store,
            refused: (topic, device) => {
              metrics.countRejected('not_authorized');
              refusals.warn(
                `${device}`,
                { topic, device },
                "refused: wrong device credentials or client id, or not the device's own topic",
              );
            },
            retainCleared,
            transportRefused: (reason) => {
              metrics.countTransportRefused(reason);
              refusals.warn(
                `transport:${reason}`,
                { reason },
                'MQTT connection closed: a transport bound bit',
              );
            },
            rotationsDue: (devices) => sendRotations(devices),
          }).then((embedded) => ({ link: embedded, access: embedded.accessControl }))
        : await connectExternal(config.mqtt.external, deliver, mqttLog, cleanups, retainCleared).then(
            (external) => ({ link: external, access: external.accessControl }),
          );
    const { link } = broker;
    cleanups.push(() => link.close());
    if (
      config.mqtt.kind === 'embedded' &&
      !config.mqtt.embedded.tls &&
      !isLoopback(config.mqtt.embedded.host)
    )
      mqttLog.warn(
        { host: config.mqtt.embedded.host },
        'the embedded broker is plain MQTT off loopback: device credentials cross the network in clear; set mqtt.embedded.tls',
      );
    cleanups.push(() => ingestor.stop());
    const enrollment = new Enrollment(store, broker.access);
    await enrollment.grantProvisioned(config.devices);
    const commands = new CommandSender(repository, () => link, metrics, config.ingest.maxJsonDepth);
    sendRotations = async (devices) => {
      for (const device of await enrollment.takeRotationRequests(devices))
        await commands.send(device, 'rotate-credential', {});
    };
    const external = config.mqtt.kind === 'external' ? broker.access : undefined;
    const artifacts = new ArtifactRegistry({
      sql: repository.sql,
      settings: config.artifacts,
      references: parts.artifactReferences ?? rollouts,
    });
    await artifacts.blobs.sweepStaging();
    variants ??= artifacts;
    const harvest = new HarvestedFrames(repository.sql, artifacts.blobs);
    const engine = new RolloutEngine(
      rollouts.store,
      () => variants,
      async (device, name, args) => {
        await commands.send(device, name, args);
      },
      (devices) => rollouts.healthy(devices),
      (devices) => rollouts.traits(devices),
      config.rollouts,
      log.child({ part: 'rollouts' }),
    );
    const jobs = startLeasedJobs(
      config,
      repository,
      metrics,
      bus,
      log,
      health,
      engine,
      external &&
        (() =>
          syncBrokerCredentials(store, enrollment, external, async (device) => {
            await commands.send(device, 'rotate-credential', {});
          })),
      artifacts,
      harvest,
    );
    rollouts.onChanged = jobs.pokeRollouts;
    cleanups.push(() => jobs.stop());
    const api = await buildApi(
      {
        repo: repository,
        credentials,
        bus,
        metrics,
        commands,
        rollouts,
        quarantine: new QuarantineStore(repository.sql),
        enrollment,
        enrollmentSettings: config.enrollment,
        mqttUrl: () => redactUrl(link.url),
        pendingMessages: () => ingestor.pendingCount,
        degradedReasons: () => ingestor.degradedReasons,
        health: jobs.health,
        history: new DeviceHistory(repository.sql),
        retentionLeader: () => jobs.retentionLeader,
        auth: {
          settings: config.auth,
          users: new Users(repository.sql),
          sessions: new Sessions(repository.sql),
          tokens: new ApiTokens(repository.sql),
          loginFailures: new LoginFailures(repository.sql),
          audit: new AuditLog(repository.sql),
        },
        limits: config.limits.http,
        artifacts,
        artifactSettings: config.artifacts,
        scenes: {
          previews: new ScenePreviews(config.scenes, log.child({ part: 'scene-preview' })),
          bundles: new SceneBundles(config.scenes, artifacts),
        },
        sceneSettings: config.scenes,
        harvest,
        loopRuns: new LoopRunStore(repository.sql),
      },
      log.child({ part: 'http' }),
      config.http.tls ? await loadServerTls(config.http.tls, 'http.tls') : undefined,
    );
    cleanups.push(() => api.close());
    const address = await api.app.listen({ host: config.http.host, port: config.http.port });
    if (!config.http.tls && !isLoopback(config.http.host))
      log.warn(
        { host: config.http.host },
        'the API is plain HTTP off loopback: device tokens and operator logins cross the network in clear; set http.tls',
      );
    // fastify names the address http: the bounded server it was given speaks HTTPS under http.tls
    const httpUrl = address
      .replace('[::1]', 'localhost')
      .replace(/^http:/, config.http.tls ? 'https:' : 'http:');
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
      accessControl: broker.access,
      enrollment,
      routes: api.routes,
      rollouts,
      artifacts,
      harvest,
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
