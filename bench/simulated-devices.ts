/**
 * The benches' simulated devices: their MQTT client and the events they send, as the device agent
 * makes them (their telemetry is the tests' fixture, test/helpers/telemetry.ts), and the loopback
 * address each connects from (Linux routes 127.0.0.0/8 to lo, so the control plane's
 * per-address limits stay as shipped).
 */
import { connect as connectSocket } from 'node:net';
import { MqttClient } from 'mqtt';
import { timeOrderedId } from '../common/ids.ts';
import { CONTRACT_VERSION, deviceClientId, type EventMessage, topics } from '../contract/index.ts';

/** the loopback address device `i` connects from */
export function addressOf(i: number): string {
  return `127.10.${Math.floor(i / 250) + 1}.${(i % 250) + 1}`;
}

/**
 * a simulated device's MQTT client as the agent makes it (MQTT 5, its own client id and
 * credential, an `offline` will), connecting from its own loopback `address`
 */
export function simulatedDeviceClient(
  broker: URL,
  device: { id: string; token: string; address: string },
): MqttClient {
  const { id, token, address } = device;
  return new MqttClient(
    () => connectSocket({ host: broker.hostname, port: Number(broker.port), localAddress: address }),
    {
      protocolVersion: 5,
      clientId: deviceClientId(id),
      username: id,
      password: token,
      keepalive: 60,
      reconnectPeriod: 1000,
      clean: true,
      will: {
        topic: topics.available(id),
        payload: Buffer.from(JSON.stringify({ v: CONTRACT_VERSION, state: 'offline' })),
        qos: 1,
        retain: true,
      },
    },
  );
}

export function eventPayload(device: string, i: number): EventMessage {
  const at = new Date().toISOString();
  return {
    v: 1,
    // as the device agent makes them
    id: timeOrderedId(),
    seq: 0,
    phase: 'new',
    device,
    camera: `cam-${i % 4}`,
    cameraSeq: i,
    rule: 'left-road',
    ruleType: 'zone',
    label: 'person',
    trackId: i % 50,
    zone: 'left-road',
    startedAt: at,
    at,
    score: 0.83,
    box: [256.3, 217.8, 304.9, 307.1],
    before: { inside: false, occupancy: 0 },
    after: { inside: true, occupancy: 1 },
    counters: { 'left-road.occupancy': 1, 'road-crossing.in': 3 },
  };
}
