import { connect, type IConnackPacket, type MqttClient } from 'mqtt';
import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import { type Availability, CONTRACT_VERSION, topics, validators } from '../contract/index.ts';
import type { DeviceConfig } from './config.ts';
import type { Spool } from './spool.ts';
import { type ClientTls, TlsErrorLog, tlsConnectOptions } from './tls.ts';

export interface UplinkOptions {
  device: string;
  mqtt: DeviceConfig['mqtt'];
  /** the device's credential: the MQTT password, with the device id as username */
  credential: string;
  spool: Spool;
  log: Logger;
  /** a message on the device's command topics */
  onCommand: (topic: string, payload: Buffer) => void;
  /** the CA (and client certificate) to verify an mqtts:// broker with */
  tls?: ClientTls;
  /** after every (re)connect, once the retained availability and identity are published */
  onConnected?: () => void;
  /**
   * a spooled message's PUBACK came: `sentAt` when it was handed to MQTT, `ackedAt` now (ms,
   * performance clock). The control plane acknowledges a message once it is in its database.
   */
  onDelivered?: (seq: number, sentAt: number, ackedAt: number) => void;
}

const REFUSAL_BACKOFF_START_MS = 1000;
const REFUSAL_BACKOFF_MAX_MS = 60_000;
const STOP_PUBLISH_TIMEOUT_MS = 2000;
/** while disconnected, one log line when it starts, then at most one summary per this */
const OUTAGE_SUMMARY_MS = 60_000;
/** MQTT v5 CONNACK / DISCONNECT reason codes that need an operator, with what to do */
const FATAL_REASONS: Record<number, string> = {
  133: 'the broker refuses the client id argus-<device id>: is another box configured with this device id?',
  134: 'the broker refuses the device credential: it was revoked or replaced; enroll the box again (controlPlane.claimToken)',
  135: 'the device is not authorized: check its credential and the broker ACL',
  138: 'the device is banned by the broker',
  142: 'another client connected with this device id: is another box configured with this device id?',
};

const availability = (state: Availability['state'], at?: Date): string => {
  const msg: Availability = { v: CONTRACT_VERSION, state, ...(at ? { at: at.toISOString() } : {}) };
  return JSON.stringify(validators.available.parse(msg, 'availability'));
};

/**
 * The device's MQTT v5 link: a persistent session (fixed client id, `clean: false`, a session
 * expiry), a retained Last Will marking the device offline, retained `online` and identity on every
 * connect, and the spool published in order with QoS 1 through a bounded in-flight window.
 *
 * Delivery: a spooled message is handed to mqtt.js once (`Spool.lease`). mqtt.js keeps it until its
 * PUBACK and, after a reconnect, resends what it holds (in its original order, before anything
 * newer), so the agent never republishes a message the client still holds; only a message mqtt.js
 * gives back unsent (an error in its callback) is leased again. The PUBACK deletes the message from
 * the spool. After a restart of the agent, everything still in the spool is published again from the
 * oldest: messages whose PUBACK was lost arrive twice, which QoS 1 allows and the control plane
 * de-duplicates by (id, seq).
 */
export class Uplink {
  private client: MqttClient | undefined;
  private window = 1;
  private identity: string | undefined;
  private pumpQueued = false;
  private pausedUntil = 0;
  private resumeTimer: NodeJS.Timeout | undefined;
  private refusalBackoff = REFUSAL_BACKOFF_START_MS;
  private closed = false;
  /** a reconnect of `useCredential` is under way: its close is not a lost connection */
  private switching = false;
  private lostAt: number | undefined;
  private startedAt = Date.now();
  private attempts = 0;
  private lastSummary = 0;
  private errorLogged = false;
  private everConnected = false;
  private drainWaiters: (() => void)[] = [];
  /** when each leased message was handed to MQTT (ms, performance clock), until its PUBACK */
  private readonly sentAt = new Map<number, number>();

  constructor(private readonly o: UplinkOptions) {}

  get connected(): boolean {
    return this.client?.connected === true;
  }

  /** since when (ms, epoch) the uplink has been disconnected or, never connected, trying; undefined while connected */
  get disconnectedSince(): number | undefined {
    if (this.connected) return undefined;
    return this.lostAt ?? (this.everConnected ? Date.now() : this.startedAt);
  }

  /** connects in the background and keeps reconnecting until `stop` */
  start(): void {
    const m = this.o.mqtt;
    const client = connect(m.url, {
      protocolVersion: 5,
      clientId: m.clientId,
      clean: false,
      keepalive: m.keepaliveS,
      reconnectPeriod: m.reconnectS * 1000,
      connectTimeout: 10_000,
      resubscribe: false,
      queueQoSZero: false,
      username: this.o.device,
      password: this.o.credential,
      properties: { sessionExpiryInterval: m.sessionExpiryS },
      ...tlsConnectOptions(this.o.tls),
      will: {
        topic: topics.available(this.o.device),
        payload: Buffer.from(availability('offline')),
        qos: 1,
        retain: true,
      },
    });
    this.client = client;
    const tlsErrors = new TlsErrorLog(this.o.log, this.o.tls, {
      name: 'MQTT broker',
      urlKey: 'mqtt.url',
      url: m.url,
    });
    client.on('error', (err) => tlsErrors.report(err));
    client.on('connect', () => tlsErrors.reset());
    this.startedAt = Date.now();
    this.lastSummary = this.startedAt;
    client.on('connect', (connack) => this.onConnect(client, connack));
    client.on('reconnect', () => this.onReconnect());
    client.on('message', (topic, payload) => this.o.onCommand(topic, payload));
    client.on('close', () => {
      if (this.lostAt !== undefined || this.closed || this.switching || !this.everConnected) return;
      this.lostAt = Date.now();
      this.lastSummary = this.lostAt;
      this.o.log.warn(
        { pending: this.o.spool.stats().pending },
        'mqtt connection lost; spooling and reconnecting',
      );
    });
    client.on('disconnect', (packet) => {
      const code = packet.reasonCode ?? 0;
      this.o.log.error(
        { reasonCode: code },
        `broker disconnected the device: ${FATAL_REASONS[code] ?? 'reason code ' + code}`,
      );
    });
    client.on('error', (err) => {
      const code = (err as { code?: unknown }).code;
      const hint = typeof code === 'number' ? FATAL_REASONS[code] : undefined;
      if (hint) {
        this.o.log.error(
          { url: m.url, clientId: m.clientId, err: err.message },
          `mqtt connection refused: ${hint}`,
        );
      } else if (!this.errorLogged) {
        this.o.log.warn({ url: m.url, err: err.message }, 'mqtt connection failed; retrying');
      }
      this.errorLogged = true;
    });
  }

  /**
   * Connects again with a new credential (after a rotation). The disconnect is a clean one (no
   * Last Will), and what is in flight is published again on the new connection.
   */
  useCredential(credential: string): void {
    const client = this.client;
    if (!client || this.closed) return;
    client.options.password = credential;
    this.o.log.info('reconnecting with the rotated credential');
    this.switching = true;
    client.reconnect();
  }

  /** the retained identity; published now when connected and again on every connect */
  setIdentity(identity: string): void {
    this.identity = identity;
    if (this.connected) this.publishDirect(topics.identity(this.o.device), identity, true);
  }

  /** new messages are in the spool */
  kick(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    queueMicrotask(() => {
      this.pumpQueued = false;
      this.pump();
    });
  }

  /** publishes a message that is not spooled (telemetry): QoS 1 while connected, skipped while not */
  publishTransient(topic: string, payload: string): boolean {
    if (!this.connected) return false;
    this.publishDirect(topic, payload, false);
    return true;
  }

  /** resolves true once the spool has no pending message, false after `timeoutMs` */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.o.spool.stats().pending === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.drainWaiters = this.drainWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.drainWaiters.push(done);
    });
  }

  /**
   * Publishes the retained `offline` availability and disconnects. Messages still in flight stay in
   * the spool and are published again at the next start.
   */
  async stop(): Promise<void> {
    const client = this.client;
    if (!client || this.closed) return;
    clearTimeout(this.resumeTimer);
    if (client.connected) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, STOP_PUBLISH_TIMEOUT_MS);
        client.publish(
          topics.available(this.o.device),
          availability('offline', new Date()),
          { qos: 1, retain: true },
          () => {
            clearTimeout(timer);
            resolve();
          },
        );
      });
    }
    this.closed = true;
    const clean = client.connected && Object.keys(client.outgoing).length === 0;
    await client.endAsync(!clean);
  }

  /** another connection attempt: counted; a long outage is summarised at a bounded rate */
  private onReconnect(): void {
    this.attempts++;
    const now = Date.now();
    if (now - this.lastSummary < OUTAGE_SUMMARY_MS) return;
    this.lastSummary = now;
    const since = this.lostAt ?? this.startedAt;
    this.o.log.warn(
      {
        url: this.o.mqtt.url,
        outageS: Math.round((now - since) / 1000),
        attempts: this.attempts,
        pending: this.o.spool.stats().pending,
      },
      this.everConnected
        ? 'mqtt still disconnected; spooling and reconnecting'
        : 'mqtt still not connected; retrying',
    );
  }

  private onConnect(client: MqttClient, connack: IConnackPacket): void {
    if (this.closed) return;
    this.switching = false;
    const receiveMaximum = connack.properties?.receiveMaximum ?? Number.POSITIVE_INFINITY;
    this.window = Math.max(1, Math.min(this.o.mqtt.inflight, receiveMaximum));
    const outageS =
      this.lostAt === undefined ? undefined : Number(((Date.now() - this.lostAt) / 1000).toFixed(1));
    this.o.log.info(
      {
        sessionPresent: connack.sessionPresent,
        window: this.window,
        pending: this.o.spool.stats().pending,
        outageS,
        attempts: this.attempts,
      },
      'mqtt connected',
    );
    this.lostAt = undefined;
    this.attempts = 0;
    this.errorLogged = false;
    this.everConnected = true;
    this.publishDirect(topics.available(this.o.device), availability('online', new Date()), true);
    if (this.identity) this.publishDirect(topics.identity(this.o.device), this.identity, true);
    if (!connack.sessionPresent) {
      // retain handling 2: commands are never taken from retained messages
      client.subscribe(topics.commandFilter(this.o.device), { qos: 1, rh: 2 }, (err) => {
        if (err) this.o.log.error({ err: err.message }, 'cannot subscribe to commands');
      });
    }
    this.o.onConnected?.();
    this.pump();
  }

  private publishDirect(topic: string, payload: string, retain: boolean): void {
    this.client?.publish(topic, payload, { qos: 1, retain }, (err) => {
      if (err && !this.closed) this.o.log.debug({ topic, err: err.message }, 'publish not confirmed');
    });
  }

  private pump(): void {
    const client = this.client;
    if (!client?.connected || this.closed || this.switching || Date.now() < this.pausedUntil) return;
    const free = this.window - this.o.spool.leasedCount;
    if (free > 0) {
      for (const m of this.o.spool.lease(free)) {
        this.sentAt.set(m.seq, performance.now());
        client.publish(m.topic, m.payload, { qos: 1 }, (err) => this.onPublished(m.seq, err));
      }
    }
    if (this.drainWaiters.length > 0 && this.o.spool.stats().pending === 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  private onPublished(seq: number, err: Error | undefined): void {
    const sentAt = this.sentAt.get(seq);
    this.sentAt.delete(seq);
    if (this.closed) return;
    if (!err) {
      this.o.spool.ack(seq);
      this.refusalBackoff = REFUSAL_BACKOFF_START_MS;
      if (sentAt !== undefined) this.o.onDelivered?.(seq, sentAt, performance.now());
    } else if (typeof (err as { code?: unknown }).code === 'number') {
      // the broker refused it (PUBACK reason ≥ 0x80, e.g. not authorized, quota exceeded): keep it,
      // hold the uplink back and try again from this message
      this.o.spool.unlease(seq);
      this.pausedUntil = Date.now() + this.refusalBackoff;
      this.o.log.error(
        { seq, err: errorMessage(err), retryInS: this.refusalBackoff / 1000 },
        'broker refused a spooled message; check the broker ACL for this device',
      );
      clearTimeout(this.resumeTimer);
      this.resumeTimer = setTimeout(() => this.pump(), this.refusalBackoff);
      this.refusalBackoff = Math.min(REFUSAL_BACKOFF_MAX_MS, this.refusalBackoff * 2);
    } else {
      // mqtt.js gave it back unsent (connection closed before it was written)
      this.o.spool.unlease(seq);
    }
    this.kick();
  }
}
