import fc from 'fast-check';
import { connect, type MqttClient } from 'mqtt';
import { hostilePayload } from './hostile.ts';
import { FUZZED_KINDS, type FuzzedKind, fuzzedPublish } from './messages.ts';
import { checkProperty, type FuzzRun, within } from './property.ts';
import { assertHealthy, STALL_MS } from './stalls.ts';
import type { FuzzTarget } from './target.ts';

/**
 * the largest payload and topic published, in bytes together: past the payload limit of the contract (64 KiB, which ingest
 * rejects as oversized) but within the broker's packet limit (mqtt.embedded.maxPacketBytes,
 * 256 KiB), which closes a connection before reading such a packet, and the client would send it
 * again on every reconnect; packets over the limit are the packet fuzzer's
 */
const MAX_FUZZED_PAYLOAD = 255 * 1024;

/** payloads published at once per generated case (the ingestor batches what arrives together) */
const PER_CASE = 20;

export interface PayloadFuzzCount {
  kind: FuzzedKind;
  payloads: number;
  /** payloads over the real broker; the rest too (none are handed to the ingestor directly) */
  overBroker: number;
  /** publishes the broker answered by closing the connection (the client reconnects) */
  closedByBroker: number;
  seed: number;
}

async function client(url: string, protocolVersion: 4 | 5): Promise<MqttClient> {
  const c = connect(url, {
    protocolVersion,
    reconnectPeriod: 100,
    clientId: `fuzz-${protocolVersion}-${process.pid}`,
  });
  await within(
    STALL_MS,
    'the fuzz client to connect',
    new Promise<void>((resolve) => c.once('connect', () => resolve())),
  );
  return c;
}

/**
 * Publishes `perKind` generated payloads on every topic kind (and topics outside the contract) at
 * QoS 1 over the real embedded broker, `PER_CASE` at once, from an MQTT v5 and a 3.1.1 client, while
 * the legit device publishes its events. Each case must be acknowledged (stored or rejected) within
 * STALL_MS, the legit device must not wait longer than that for its PUBACK, and the process must
 * see no uncaught exception or unhandled rejection.
 */
export async function fuzzMqttPayloads(
  target: FuzzTarget,
  perKind: number,
  run: (kind: FuzzedKind) => FuzzRun,
  kinds: readonly FuzzedKind[] = FUZZED_KINDS,
): Promise<PayloadFuzzCount[]> {
  const clients = [await client(target.cp.mqttUrl, 5), await client(target.cp.mqttUrl, 4)];
  let closedByBroker = 0;
  for (const c of clients) c.on('close', () => closedByBroker++);
  const counts: PayloadFuzzCount[] = [];
  try {
    for (const kind of kinds) {
      const before = closedByBroker;
      let payloads = 0;
      let turn = 0;
      const r = run(kind);
      await checkProperty(
        `mqtt-payloads/${kind}`,
        fc.array(
          // the topic counts towards the packet too (found at seed 14008: a topic of 20,000
          // characters beside a payload of 255 KiB made a packet the broker closes unread)
          fuzzedPublish(kind, hostilePayload).map((p) => ({
            ...p,
            payload: p.payload.subarray(0, Math.max(0, MAX_FUZZED_PAYLOAD - Buffer.byteLength(p.topic))),
          })),
          { minLength: PER_CASE, maxLength: PER_CASE },
        ),
        async (publishes) => {
          const c = clients[turn++ % clients.length]!;
          await within(
            STALL_MS,
            `the PUBACKs of ${publishes.length} fuzzed publishes`,
            Promise.all(
              publishes.map((p) =>
                c.publishAsync(p.topic, p.payload, { qos: 1, retain: p.retain }).catch((err: unknown) => {
                  // a connection the broker closed loses its in-flight publishes: not a stall
                  if (!c.connected) return;
                  throw err;
                }),
              ),
            ),
          );
          payloads += publishes.length;
          assertHealthy(target);
        },
        Math.ceil(perKind / PER_CASE),
        r,
      );
      counts.push({
        kind,
        payloads,
        overBroker: payloads,
        closedByBroker: closedByBroker - before,
        seed: r.seed,
      });
    }
  } finally {
    await Promise.all(clients.map((c) => c.endAsync(true)));
  }
  return counts;
}
