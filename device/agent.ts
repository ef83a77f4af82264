import { dirname, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { ArgusError, errorMessage } from '../common/errors.ts';
import { timeOrderedId } from '../common/ids.ts';
import { createLogger, type Logger } from '../common/logger.ts';
import { isLoopback, redactUrl } from '../common/net.ts';
import type { Validator } from '../common/schema.ts';
import {
  type CameraStatus,
  type CameraTelemetry,
  CONTRACT_BOUNDS,
  CONTRACT_VERSION,
  type CommandResult,
  type DetectorTelemetry,
  type EventMessage,
  type HealthTelemetry,
  httpPaths,
  MAX_PAYLOAD_BYTES,
  MAX_SNAPSHOT_BYTES,
  otaValidators,
  topics,
  type UpdateStatus,
  validators,
} from '../contract/index.ts';
import { hardwareClass } from '../inference/hardware-class.ts';
import { resolveModelDir } from '../inference/model-dir.ts';
import { type FactoryDefault, Updater } from '../ota/updater/index.ts';
import type { EventStages } from '../pipelines/runtime/camera.ts';
import { SampleWindow } from '../pipelines/runtime/stats.ts';
import type { CameraHost, HostEvent, HostStatus } from './camera-host.ts';
import { type CommandOutcome, CommandProcessor } from './commands.ts';
import { type DeviceConfig, loadDeviceConfig } from './config.ts';
import { obtainCredential, rotateCredential } from './credential.ts';
import { Harvester } from './harvest.ts';
import { type HealthReport, type HealthServer, healthVerdict, startHealthServer } from './health.ts';
import { type CameraHostFactory, defaultCameraHostFactory } from './hosts.ts';
import { buildIdentity } from './identity.ts';
import { LiveStreamer } from './live/streamer.ts';
import { CarriedEvents } from './open-events.ts';
import { SnapshotUploader } from './snapshots.ts';
import { Spool, type SpoolStats } from './spool.ts';
import { buildTelemetry, SystemSampler } from './telemetry.ts';
import { loadClientTls, tlsConnectOptions } from './tls.ts';
import { Uplink } from './uplink.ts';

export interface DeviceAgentOptions {
  configFile: string;
  createHost?: CameraHostFactory;
  log?: Logger;
  /** aborts a start that waits for the control plane (enrollment) */
  signal?: AbortSignal;
  /** each event message of this run once the control plane acknowledged it, with where its time went */
  onEventDelivered?: (d: EventDelivery) => void;
}

/** one event message's way from its frame to the control plane's database (ms, one clock: the box's) */
export interface EventDelivery {
  camera: string;
  id: string;
  seq: number;
  /** its frame reaching the pipeline (an event of no frame: its emission) → the control plane's PUBACK */
  latencyMs: number;
  /** the frame → the event emitted, with where that went when it came from a detected frame */
  pipeline: { ms: number; stages?: EventStages };
  /** emitted → written to the spool (encoding, the SQLite transaction and its sync) */
  spoolMs: number;
  /** in the spool → handed to MQTT (waiting for the connection and the in-flight window) */
  publishMs: number;
  /**
   * handed to MQTT → its PUBACK: the broker, the control plane's ingest queue and database commit
   * (it acknowledges a message once it stored it), and back
   */
  commitMs: number;
}

/** p50/p99 (ms) of the recent event deliveries (at most DELIVERY_WINDOW), for /healthz */
export type EventDeliveryStats = NonNullable<HealthReport['eventDelivery']>;

/** spooled event messages waiting for their PUBACK that are timed, at most (the oldest are forgotten) */
const MAX_TIMED_IN_FLIGHT = 10_000;
/** recent deliveries the health figures are of */
const DELIVERY_WINDOW = 1000;

interface TimedEvent {
  camera: string;
  id: string;
  seq: number;
  emittedAt: number;
  pipeline: EventDelivery['pipeline'];
  spooledAt: number;
}

/** how long a "snapshot" command waits for the upload before answering that it is queued */
const SNAPSHOT_REPLY_WAIT_MS = 10_000;
/** config sections that only a restart of the agent applies */
const RESTART_ONLY = ['device', 'mqtt', 'tls', 'spool', 'health', 'ota', 'harvest'] as const;

function encode<T>(validator: Validator<T>, message: T, what: string): string {
  const payload = JSON.stringify(validator.parse(message, what));
  const bytes = Buffer.byteLength(payload);
  if (bytes > MAX_PAYLOAD_BYTES)
    throw new ArgusError(`${what} is ${bytes} bytes, more than the contract's ${MAX_PAYLOAD_BYTES}`);
  return payload;
}

/** what the box runs without a committed update: the config's model and each enabled camera's scene */
function factoryDefault(c: DeviceConfig): FactoryDefault {
  return {
    modelDir: resolveModelDir(c.detector.model),
    cameras: c.cameras
      .filter((cam) => cam.enabled)
      .map((cam) => ({ id: cam.id, sceneFile: resolve(c.dir, cam.scene) })),
  };
}

/** a name for the config's own scene of a camera in telemetry: its file's base name */
function sceneName(camera: string, c: DeviceConfig): string {
  const file = c.cameras.find((cam) => cam.id === camera)?.scene ?? camera;
  const base = file
    .split('/')
    .pop()!
    .replace(/\.[a-z]+$/i, '')
    .toLowerCase()
    .replace(/[^a-z0-9._-]/g, '-');
  return /^[a-z0-9]/.test(base) ? base : `scene-${base}`;
}

/**
 * One process per box: runs the cameras (through a CameraHost), writes every event, camera status
 * and command result to the spool before it is published, keeps the MQTT uplink, sends telemetry
 * every `mqtt.heartbeatS`, uploads snapshots, answers commands and serves /healthz.
 */
export class DeviceAgent {
  private config!: DeviceConfig;
  private credential!: string;
  private spool!: Spool;
  private uplink: Uplink | undefined;
  private uploader: SnapshotUploader | undefined;
  /** uploads the spool's harvested frames (a queue of their own) */
  private harvestUploader: SnapshotUploader | undefined;
  private harvester: Harvester | undefined;
  /** live view streams, opened outbound on the control plane's request */
  private live: LiveStreamer | undefined;
  private host: CameraHost | undefined;
  private commands!: CommandProcessor;
  private updater: Updater | undefined;
  private health: HealthServer | undefined;
  private sampler!: SystemSampler;
  private telemetryTimer: NodeJS.Timeout | undefined;
  /** events the previous run left open, and when those not continued end */
  private carried!: CarriedEvents;
  private carriedTimer: NodeJS.Timeout | undefined;
  private stopping: Promise<void> | undefined;
  private readonly startedAt = new Date();
  private readonly createHost: CameraHostFactory;
  private readonly log: Logger;
  /** events the host produced that could not be spooled (they broke the contract) */
  rejectedEvents = 0;
  /** event snapshots never stored for upload: rendering failed or fell behind, or too large */
  lostSnapshots = 0;
  /** event snapshots being rendered, stored in the spool when they are */
  private readonly pendingSnapshots = new Set<Promise<void>>();
  /** spooled event messages of this run waiting for their PUBACK, by spool seq */
  private readonly timed = new Map<number, TimedEvent>();
  private readonly deliveries = {
    latency: new SampleWindow(DELIVERY_WINDOW),
    pipeline: new SampleWindow(DELIVERY_WINDOW),
    spool: new SampleWindow(DELIVERY_WINDOW),
    publish: new SampleWindow(DELIVERY_WINDOW),
    commit: new SampleWindow(DELIVERY_WINDOW),
  };
  /** the reason each camera last went offline, for health */
  private readonly offlineReasons = new Map<string, string>();
  /** the detector's restart count when last seen, and when it last grew */
  private detectorRestart: { at: number; restarts: number } | undefined;
  private detectorRestarts = 0;

  private constructor(private readonly o: DeviceAgentOptions) {
    this.createHost = o.createHost ?? defaultCameraHostFactory;
    this.log = o.log ?? createLogger('device');
  }

  /** loads the config and starts everything; on failure, whatever started is stopped again */
  static async start(options: DeviceAgentOptions): Promise<DeviceAgent> {
    const agent = new DeviceAgent(options);
    try {
      await agent.boot();
    } catch (err) {
      await agent.stop();
      throw err;
    }
    return agent;
  }

  get device(): string {
    return this.config.device.id;
  }

  get healthAddress(): { host: string; port: number } | undefined {
    return this.health?.address;
  }

  get connected(): boolean {
    return this.uplink?.connected === true;
  }

  /** what the updater says the box runs (committed slots, else the config's model and scenes) */
  running() {
    return this.updater?.running();
  }

  spoolStats(): SpoolStats {
    return this.spool.stats();
  }

  healthReport(): HealthReport {
    const cameras = this.host?.stats() ?? [];
    const detector = this.host?.detectorStats();
    const connected = this.connected;
    const eventDelivery = this.eventDeliveryStats();
    return {
      ...this.verdict(cameras, detector),
      device: this.config.device.id,
      uptimeS: Number(((Date.now() - this.startedAt.getTime()) / 1000).toFixed(1)),
      mqtt: { connected },
      spool: this.spool.stats(),
      cameras,
      ...(detector ? { detector } : {}),
      ...(eventDelivery ? { eventDelivery } : {}),
    };
  }

  /** the box's verdict on itself (see healthVerdict) */
  private verdict(cameras: CameraTelemetry[], detector: DetectorTelemetry | undefined): HealthTelemetry {
    const now = Date.now();
    if (detector && detector.restarts > this.detectorRestarts)
      this.detectorRestart = { at: now, restarts: detector.restarts };
    this.detectorRestarts = detector?.restarts ?? this.detectorRestarts;
    return healthVerdict({
      now,
      mqttDisconnectedSince: this.uplink ? this.uplink.disconnectedSince : now,
      uploads: this.uploader?.uploadState ?? { failing: undefined, since: undefined, detail: undefined },
      spool: this.spool.stats(),
      cameras,
      offlineReasons: this.offlineReasons,
      detectorRestart: this.detectorRestart,
    });
  }

  private async boot(): Promise<void> {
    this.config = await loadDeviceConfig(this.o.configFile);
    const c = this.config;
    this.spool = Spool.open(c.spool.path, c.spool, this.log);
    this.carried = new CarriedEvents(
      this.spool.openEvents(),
      (id) => this.spool.forgetOpenEvent(id),
      this.log,
    );
    this.sampler = new SystemSampler(dirname(c.spool.path));
    this.commands = new CommandProcessor(
      c.device.id,
      {
        'reload-config': () => this.reload(),
        snapshot: (args) => this.snapshotCommand(args),
        'restart-camera': (args) => this.restartCameraCommand(args),
        'rotate-credential': () => this.rotateCredentialCommand(),
        update: (args) => this.updater!.assign(args),
        'update-cancel': (args) => this.updater!.cancel(args),
        'live-start': (args) => this.liveStreamer().start(args),
        'live-stop': (args) => this.liveStreamer().stop(args),
      },
      (result) => this.spoolResult(result),
      this.log,
    );
    const tls = c.tls ? await loadClientTls(c.tls) : undefined;
    this.updater = await Updater.open({
      device: c.device.id,
      hardwareClass: c.device.hardwareClass === 'auto' ? hardwareClass() : c.device.hardwareClass,
      otaDir: c.ota.dir,
      artifactUrl: (id) =>
        new URL(httpPaths.artifact(c.device.id, id), this.config.controlPlane.url).toString(),
      credential: () => this.credential,
      tls: tlsConnectOptions(tls),
      settings: { ...c.ota, keyring: c.ota.keyring },
      factory: factoryDefault(c),
      report: (status) => this.spoolUpdate(status),
      // the control plane's device view names the new version at once, not at the next heartbeat
      changed: () => this.sendTelemetry(),
      log: this.log.child({ part: 'updater' }),
    });
    this.health = await startHealthServer(c.health.host, c.health.port, () => this.healthReport(), c.file);
    if (c.harvest.enabled)
      this.harvester = new Harvester(
        c.harvest,
        this.spool,
        () => this.runningModel(),
        () => this.harvestUploader?.kick(),
        this.log.child({ part: 'harvest' }),
      );
    await this.harvester?.start(c.detector);
    this.host = await this.startHost(c);
    const cameras = new Set(c.cameras.filter((cam) => cam.enabled).map((cam) => cam.id));
    for (const e of this.carried.endCarried((camera) => cameras.has(camera))) this.onHostEvent(e);
    if (this.carried.size > 0) {
      this.carriedTimer = setTimeout(() => {
        for (const e of this.carried.endCarried()) this.onHostEvent(e);
      }, c.spool.resumeOpenEventsS * 1000);
    }
    const { credential, source } = await obtainCredential(
      c,
      this.log,
      this.o.signal ?? new AbortController().signal,
    );
    this.credential = credential;
    this.uploader = new SnapshotUploader(
      c.device.id,
      c.controlPlane.url,
      credential,
      this.spool,
      this.log,
      tls,
    );
    this.uploader.start();
    this.harvestUploader = new SnapshotUploader(
      c.device.id,
      c.controlPlane.url,
      credential,
      this.spool,
      this.log,
      tls,
      undefined,
      'harvest',
    );
    this.harvestUploader.start();
    this.live = new LiveStreamer({
      device: c.device.id,
      controlPlane: () => ({ url: this.config.controlPlane.url, credential: this.credential }),
      tls,
      cameras: () => this.config.cameras.filter((cam) => cam.enabled),
      log: this.log,
    });
    this.uplink = new Uplink({
      device: c.device.id,
      mqtt: c.mqtt,
      credential,
      ...(tls ? { tls } : {}),
      spool: this.spool,
      log: this.log,
      onCommand: (topic, payload) => this.commands.handle(topic, payload),
      onConnected: () => {
        // the control plane is likely reachable again: snapshot uploads stop waiting out their backoff
        this.uploader?.retryNow();
        this.harvestUploader?.retryNow();
        void this.sendTelemetry();
      },
      onDelivered: (seq, sentAt, ackedAt) => this.onDelivered(seq, sentAt, ackedAt),
    });
    this.uplink.setIdentity(JSON.stringify(await buildIdentity(this.effective(c), this.startedAt)));
    this.uplink.start();
    await this.updater.start(() => this.host);
    this.telemetryTimer = setInterval(() => void this.sendTelemetry(), c.mqtt.heartbeatS * 1000);
    this.log.info(
      {
        device: c.device.id,
        mqtt: c.mqtt.url,
        credential: source,
        health: `http://${this.health.address.host}:${this.health.address.port}/healthz`,
        spool: c.spool.path,
        pending: this.spool.stats().pending,
      },
      'device agent running',
    );
    for (const [key, url] of [
      ['mqtt.url', c.mqtt.url],
      ['controlPlane.url', c.controlPlane.url],
    ] as const) {
      const { protocol, hostname } = new URL(url);
      if (!['mqtts:', 'wss:', 'https:'].includes(protocol) && !isLoopback(hostname))
        this.log.warn(
          { url: redactUrl(url) },
          `${key} is not TLS: this box's credential crosses the network in clear`,
        );
    }
  }

  /**
   * Graceful shutdown: stops the cameras (their last events are spooled), answers commands in
   * progress, gives the uplink `mqtt.shutdownFlushS` to deliver what is pending, publishes the
   * device offline, disconnects and closes the spool. Whatever was not delivered stays spooled.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.telemetryTimer);
    clearTimeout(this.carriedTimer);
    const step = async (what: string, fn: () => Promise<unknown> | undefined) => {
      try {
        await fn();
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, `shutdown: ${what} failed`);
      }
    };
    await step('stopping updates', () => this.updater?.stop());
    await step('stopping live streams', async () => this.live?.stopAll());
    await step('stopping the cameras', () => this.host?.stop());
    await step('storing rendered snapshots', () => this.snapshotsStored());
    await step('stopping snapshot uploads', () => this.uploader?.stop());
    await step('stopping harvested frame uploads', () => this.harvestUploader?.stop());
    await step('stopping the spot checks', () => this.harvester?.stop());
    await step('answering commands', () => this.commands?.idle());
    if (this.uplink?.connected) {
      const drained = await this.uplink.drain(this.config.mqtt.shutdownFlushS * 1000);
      if (!drained)
        this.log.warn(
          { pending: this.spool.stats().pending },
          'shutdown: messages stay spooled for the next start',
        );
    }
    await step('disconnecting', () => this.uplink?.stop());
    await step('closing the health endpoint', () => this.health?.close());
    await step('closing the spool', async () => this.spool?.close());
    if (this.health) this.log.info({ device: this.config.device.id }, 'device agent stopped');
  }

  /**
   * the config as the box runs it: the model and scenes the updater committed in place of the
   * config's own (its factory default)
   */
  private effective(config: DeviceConfig): DeviceConfig {
    const running = this.updater?.running();
    if (!running) return config;
    return {
      ...config,
      detector: { ...config.detector, model: running.model.dir },
      cameras: config.cameras.map((cam) => {
        const scene = running.scenes.get(cam.id);
        return scene && scene.version > 0 ? { ...cam, scene: scene.file } : cam;
      }),
    };
  }

  private async startHost(config: DeviceConfig): Promise<CameraHost> {
    const effective = this.effective(config);
    const host = this.createHost(effective, this.log);
    host.onEvent((e) => this.onHostEvent(e));
    host.onStatus((s) => this.onHostStatus(s));
    const harvester = this.harvester;
    if (harvester) host.onDetected?.((d) => harvester.observe(d));
    try {
      await host.start(effective.cameras, effective.dir);
    } catch (err) {
      await host.stop().catch(() => undefined);
      throw err;
    }
    return host;
  }

  /**
   * Spools the event with its snapshot's reference and sends it; the snapshot's JPEG goes into the
   * spool for upload when it is rendered (the control plane answers 404 for it until then, and the
   * console retries). A snapshot that fails to render or is larger than the contract allows is
   * counted (`lostSnapshots`, telemetry `spool.snapshots.lost`) and logged; the event stays as sent.
   */
  private onHostEvent(host: HostEvent): void {
    const emittedAt = host.emittedAt ?? performance.now();
    const device = this.config.device.id;
    const e = this.carried.adopt(host);
    const snapshot = e.snapshot
      ? { id: timeOrderedId(), width: e.snapshot.width, height: e.snapshot.height }
      : undefined;
    let spooled: { seq: number };
    try {
      spooled = this.spool.appendForCamera(
        'event',
        topics.events(device),
        e.camera,
        (cameraSeq) => {
          const message: EventMessage = {
            v: CONTRACT_VERSION,
            ...e.message,
            device,
            camera: e.camera,
            cameraSeq,
            ...(snapshot ? { snapshot } : {}),
          };
          return encode(
            validators.events,
            message,
            `event ${e.message.id}/${e.message.seq} of camera ${e.camera}`,
          );
        },
        { openEvent: { id: e.message.id, open: e.message.phase !== 'end' } },
      );
    } catch (err) {
      this.rejectedEvents++;
      this.log.error({ camera: e.camera, err: errorMessage(err) }, 'event not spooled');
      return;
    }
    this.timeEvent({
      camera: e.camera,
      id: e.message.id,
      seq: e.message.seq,
      emittedAt,
      pipeline: { ms: e.latencyMs ?? 0, ...(e.stages ? { stages: e.stages } : {}) },
      spooledAt: performance.now(),
      spoolSeq: spooled.seq,
    });
    this.uplink?.kick();
    if (snapshot && e.snapshot) this.storeSnapshot(e.camera, snapshot.id, e.snapshot.jpeg);
  }

  private timeEvent({ spoolSeq, ...t }: TimedEvent & { spoolSeq: number }): void {
    this.timed.set(spoolSeq, t);
    if (this.timed.size > MAX_TIMED_IN_FLIGHT) this.timed.delete(this.timed.keys().next().value!);
  }

  /** a spooled message's PUBACK: an event of this run is timed from its frame to here */
  private onDelivered(spoolSeq: number, sentAt: number, ackedAt: number): void {
    const t = this.timed.get(spoolSeq);
    if (!t) return;
    this.timed.delete(spoolSeq);
    const d: EventDelivery = {
      camera: t.camera,
      id: t.id,
      seq: t.seq,
      latencyMs: t.pipeline.ms + ackedAt - t.emittedAt,
      pipeline: t.pipeline,
      spoolMs: t.spooledAt - t.emittedAt,
      publishMs: sentAt - t.spooledAt,
      commitMs: ackedAt - sentAt,
    };
    this.deliveries.latency.add(d.latencyMs);
    this.deliveries.pipeline.add(d.pipeline.ms);
    this.deliveries.spool.add(d.spoolMs);
    this.deliveries.publish.add(d.publishMs);
    this.deliveries.commit.add(d.commitMs);
    try {
      this.o.onEventDelivered?.(d);
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'an event delivery listener failed');
    }
  }

  /** p50/p99 of the recent event deliveries; undefined before the first */
  eventDeliveryStats(): EventDeliveryStats | undefined {
    const w = this.deliveries;
    if (w.latency.count === 0) return undefined;
    const p99 = (s: SampleWindow) => Number(s.percentile(99).toFixed(1));
    return {
      count: w.latency.count,
      latencyMs: { p50: Number(w.latency.percentile(50).toFixed(1)), p99: p99(w.latency) },
      p99Ms: {
        pipeline: p99(w.pipeline),
        spool: p99(w.spool),
        publish: p99(w.publish),
        commit: p99(w.commit),
      },
    };
  }

  /** puts the event's snapshot `id` in the spool for upload once it is rendered */
  private storeSnapshot(camera: string, id: string, rendering: Promise<Buffer>): void {
    const stored = rendering
      .then(
        (jpeg) => {
          if (jpeg.length > MAX_SNAPSHOT_BYTES) {
            this.lostSnapshots++;
            this.log.error(
              { camera, snapshot: id, bytes: jpeg.length, max: MAX_SNAPSHOT_BYTES },
              'snapshot larger than the contract allows; the event was sent without its picture (lower the scene snapshot quality)',
            );
            return;
          }
          this.spool.addSnapshot({ id, jpeg });
          this.uploader?.kick();
        },
        (err: unknown) => {
          this.lostSnapshots++;
          this.log.warn({ camera, snapshot: id, err: errorMessage(err) }, 'snapshot not rendered');
        },
      )
      .catch((err: unknown) => {
        this.lostSnapshots++;
        this.log.error({ camera, snapshot: id, err: errorMessage(err) }, 'snapshot not spooled');
      })
      .finally(() => this.pendingSnapshots.delete(stored));
    this.pendingSnapshots.add(stored);
  }

  /** resolves once every snapshot rendering now is in the spool (or lost) */
  private async snapshotsStored(): Promise<void> {
    while (this.pendingSnapshots.size > 0) await Promise.all([...this.pendingSnapshots]);
  }

  private onHostStatus(s: HostStatus): void {
    const device = this.config.device.id;
    if (s.state === 'offline') this.offlineReasons.set(s.camera, s.reason ?? 'no reason given');
    else this.offlineReasons.delete(s.camera);
    try {
      this.spool.appendForCamera('status', topics.status(device), s.camera, (cameraSeq) => {
        const message: CameraStatus = {
          v: CONTRACT_VERSION,
          id: timeOrderedId(),
          device,
          camera: s.camera,
          cameraSeq,
          state: s.state,
          at: s.at.toISOString(),
          // the contract bounds the text (and a NUL cannot be stored): cut rather than lost
          ...(s.reason ? { reason: s.reason.replaceAll('\u0000', '').slice(0, CONTRACT_BOUNDS.text) } : {}),
        };
        return encode(validators.status, message, `status of camera ${s.camera}`);
      });
    } catch (err) {
      this.log.error({ camera: s.camera, err: errorMessage(err) }, 'camera status not spooled');
      return;
    }
    this.uplink?.kick();
  }

  private spoolUpdate(status: UpdateStatus): void {
    this.spool.append(
      'update',
      topics.update(this.config.device.id),
      encode(otaValidators.update, status, `update status ${status.assignment}/${status.seq}`),
    );
    this.uplink?.kick();
  }

  private spoolResult(result: CommandResult): void {
    const device = this.config.device.id;
    this.spool.append(
      'cmd_result',
      topics.commandResult(device),
      encode(validators.cmd_result, result, 'command result'),
    );
    this.uplink?.kick();
  }

  private async sendTelemetry(): Promise<void> {
    if (!this.uplink?.connected || !this.host) return;
    try {
      const cameras = this.withVersions(this.host.stats());
      const detector = this.host.detectorStats();
      const telemetry = buildTelemetry(
        this.config.device.id,
        await this.sampler.sample(),
        this.spool.stats(),
        cameras,
        detector,
        this.verdict(cameras, detector),
        this.lostSnapshots,
        this.harvester?.stats(),
      );
      this.uplink.publishTransient(topics.telemetry(this.config.device.id), JSON.stringify(telemetry));
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'telemetry not sent');
    }
  }

  /**
   * the model the cameras run, as a harvested frame names it: the updater's committed model, else
   * the config's (its directory's name, version 0)
   */
  private runningModel(): { name: string; version: number } {
    const model = this.updater?.running()?.model;
    const fallback = (model?.dir ?? this.config.detector.model)
      .split('/')
      .filter(Boolean)
      .pop()!
      .toLowerCase()
      .replace(/[^a-z0-9._-]/g, '-');
    const name = model?.name ?? (/^[a-z0-9]/.test(fallback) ? fallback : `model-${fallback}`);
    return { name: name.slice(0, 128), version: model?.version ?? 0 };
  }

  /** each camera's model and scene version, where the host does not say them itself */
  private withVersions(cameras: CameraTelemetry[]): CameraTelemetry[] {
    const running = this.updater?.running();
    if (!running) return cameras;
    const { name, version } = running.model;
    return cameras.map((cam) => {
      const scene = running.scenes.get(cam.id);
      return {
        ...cam,
        ...(!cam.model && name && version !== undefined ? { model: { name, version } } : {}),
        ...(!cam.scene && scene
          ? { scene: { name: scene.name ?? sceneName(cam.id, this.config), version: scene.version } }
          : {}),
      };
    });
  }

  private liveStreamer(): LiveStreamer {
    if (!this.live) throw new ArgusError('the agent is still starting: send the live view request again');
    return this.live;
  }

  private camera(args: Record<string, unknown>): string {
    const ids = this.config.cameras.filter((c) => c.enabled).map((c) => c.id);
    if (typeof args.camera !== 'string')
      throw new ArgusError('args.camera (the camera id) is required', `cameras: ${ids.join(', ') || 'none'}`);
    return args.camera;
  }

  private async snapshotCommand(args: Record<string, unknown>): Promise<CommandOutcome> {
    const camera = this.camera(args);
    const shot = await this.host!.snapshotNow(camera);
    const id = timeOrderedId();
    this.spool.addSnapshot({ id, jpeg: shot.jpeg });
    this.uploader!.kick();
    const uploaded = await this.uploader!.waitFor(id, SNAPSHOT_REPLY_WAIT_MS);
    return {
      ok: true,
      message: uploaded
        ? `snapshot ${id} of camera ${camera} uploaded`
        : `snapshot ${id} of camera ${camera} is queued: the control plane has not taken it yet`,
      data: { camera, uploaded, snapshot: { id, width: shot.width, height: shot.height } },
    };
  }

  private async restartCameraCommand(args: Record<string, unknown>): Promise<CommandOutcome> {
    const camera = this.camera(args);
    await this.host!.restartCamera(camera);
    return { ok: true, message: `camera ${camera} restarted` };
  }

  /**
   * Fetches a new credential with the current one and stores it (the control plane keeps the
   * current one valid until the new one is used), then uploads with it and reconnects with it.
   */
  private async rotateCredentialCommand(): Promise<CommandOutcome> {
    const next = await rotateCredential(this.config, this.credential);
    this.credential = next;
    this.uploader!.setControlPlane(this.config.controlPlane.url, next);
    this.harvestUploader!.setControlPlane(this.config.controlPlane.url, next);
    this.uplink!.useCredential(next);
    return {
      ok: true,
      message: `credential rotated and stored in ${this.config.controlPlane.credentialFile}`,
    };
  }

  /**
   * Re-reads and validates the config file. An invalid file changes nothing and its problems (with
   * their lines) are the answer. Cameras, detector, recording and control plane are applied live
   * (the camera host is replaced), of the control plane its URL; device, mqtt, spool, health and
   * the control plane's credential settings need a restart of the agent.
   */
  private async reload(): Promise<CommandOutcome> {
    const current = this.config;
    const next = await loadDeviceConfig(current.file);
    const needsRestart: string[] = RESTART_ONLY.filter((k) => !isDeepStrictEqual(next[k], current[k]));
    if (!isDeepStrictEqual({ ...next.controlPlane, url: '' }, { ...current.controlPlane, url: '' }))
      needsRestart.push('controlPlane credential settings');
    if (needsRestart.length > 0) {
      return {
        ok: false,
        message: `${needsRestart.join(', ')} changed in ${current.file}: restart the agent to apply; nothing was applied`,
      };
    }
    const applied: string[] = [];
    const hostChanged = (['cameras', 'detector', 'recorded'] as const).filter(
      (k) => !isDeepStrictEqual(next[k], current[k]),
    );
    if (hostChanged.length > 0) {
      await this.replaceHost(next);
      applied.push(...hostChanged);
    }
    if (next.controlPlane.url !== current.controlPlane.url) {
      this.uploader!.setControlPlane(next.controlPlane.url);
      this.harvestUploader!.setControlPlane(next.controlPlane.url);
      applied.push('controlPlane');
    }
    this.config = next;
    this.updater?.setFactory(factoryDefault(next));
    if (hostChanged.length > 0)
      this.uplink!.setIdentity(JSON.stringify(await buildIdentity(this.effective(next), this.startedAt)));
    return {
      ok: true,
      message:
        applied.length > 0
          ? `reloaded ${next.file}: applied ${applied.join(', ')}`
          : `reloaded ${next.file}: no changes`,
      data: { applied },
    };
  }

  /** stops the running host and starts one for `next`; if that fails, the previous config runs again */
  private async replaceHost(next: DeviceConfig): Promise<void> {
    await this.host?.stop();
    this.host = undefined;
    try {
      this.host = await this.startHost(next);
    } catch (err) {
      this.log.error(
        { err: errorMessage(err) },
        'reloaded cameras failed to start; going back to the previous ones',
      );
      this.host = await this.startHost(this.config);
      throw err;
    }
  }
}
