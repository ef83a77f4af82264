import type { Ack } from '../ingest/ingestor.ts';
import type { BrokerAccessControl } from './access-control.ts';

/** hands one received message to ingest; `ack` releases its PUBACK */
export type Deliver = (topic: string, payload: Buffer, ack: Ack) => void;

/** the control plane's side of MQTT: messages in (to `Deliver`), commands out */
export interface MqttLink {
  /** where devices connect */
  readonly url: string;
  /**
   * what to tell the broker when a device's credential is issued or revoked; absent when the
   * broker needs nothing (an external broker whose ACLs the control plane does not manage)
   */
  readonly accessControl?: BrokerAccessControl;
  publish(topic: string, payload: string): Promise<void>;
  close(): Promise<void>;
}
