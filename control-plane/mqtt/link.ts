import type { Ack } from '../ingest/ingestor.ts';

/** hands one received message to ingest; `ack` releases its PUBACK */
export type Deliver = (topic: string, payload: Buffer, ack: Ack) => void;

/** the control plane's side of MQTT: messages in (to `Deliver`), commands out */
export interface MqttLink {
  /** where devices connect */
  readonly url: string;
  publish(topic: string, payload: string): Promise<void>;
  close(): Promise<void>;
}
