import { parseTopic } from '../../contract/index.ts';
import type { Ack } from '../ingest/ingestor.ts';
import type { BrokerAccessControl } from './access-control.ts';

/** hands one received message to ingest; `ack` releases its PUBACK */
export type Deliver = (topic: string, payload: Buffer, ack: Ack) => void;

/**
 * Whether a broker may keep a message as retained, before ingest has seen it: only a device's
 * availability and identity are retained; an empty payload (which deletes the retained message)
 * on those topics too. Once ingest has seen it, only a stored message stays retained.
 */
export function mayRetain(topic: string): boolean {
  const kind = parseTopic(topic)?.kind;
  return kind === 'available' || kind === 'identity';
}

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
