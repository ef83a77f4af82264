import { JsonBoundsError, parseBoundedJson } from '../../common/bounded-json.ts';
import { type DeviceTopicKind, MAX_PAYLOAD_BYTES, parseTopic, validators } from '../../contract/index.ts';
import type { RejectReason } from '../metrics.ts';
import type { IngestKind, IngestRecord } from '../storage/repository.ts';

const RECORD_KIND: Record<DeviceTopicKind, IngestKind> = {
  events: 'event',
  status: 'status',
  telemetry: 'telemetry',
  identity: 'identity',
  available: 'available',
  cmd_result: 'cmd_result',
  update: 'update',
};

export type Decoded =
  | { ok: true; record: IngestRecord }
  /** a command topic: the control plane's own publish, not for ingest */
  | { ok: 'ignore' }
  | { ok: false; reason: RejectReason; detail: string; device?: string };

/**
 * Checks one MQTT message against the contract: a known topic, at most MAX_PAYLOAD_BYTES, JSON
 * nested at most `maxDepth` levels (checked before it is parsed, so that no later code walking the
 * value can overflow its stack), the topic kind's schema, and a `device` field (where the payload
 * has one) equal to the topic's.
 */
export function decodeMessage(topic: string, payload: Buffer, receivedAt: number, maxDepth: number): Decoded {
  const parsed = parseTopic(topic);
  if (!parsed)
    return {
      ok: false,
      reason: 'unknown_topic',
      detail: `topic "${topic.slice(0, 200)}" is not in the contract`,
    };
  if (parsed.kind === 'cmd') return { ok: 'ignore' };
  const device = parsed.device;
  if (payload.length > MAX_PAYLOAD_BYTES)
    return {
      ok: false,
      reason: 'oversized',
      detail: `${payload.length} bytes, more than ${MAX_PAYLOAD_BYTES}`,
      device,
    };
  const text = payload.toString('utf8');
  let body: unknown;
  try {
    body = parseBoundedJson(text, { maxBytes: MAX_PAYLOAD_BYTES, maxDepth });
  } catch (err) {
    if (!(err instanceof JsonBoundsError)) throw err;
    return { ok: false, reason: err.reason, detail: err.message, device };
  }
  const validator = validators[parsed.kind];
  if (!validator.check(body)) {
    const issues = validator
      .issues(body)
      .slice(0, 5)
      .map((i) => `${i.path.slice(0, 100) || '(root)'}: ${i.message.slice(0, 200)}`);
    return { ok: false, reason: 'schema', detail: issues.join('; '), device };
  }
  const claimed = (body as { device?: string }).device;
  if (claimed !== undefined && claimed !== device)
    return {
      ok: false,
      reason: 'device_mismatch',
      detail: `payload says device "${claimed}" on the topic of "${device}"`,
      device,
    };
  // the body passed the kind's validator above, so it has the record kind's message type
  const record = { kind: RECORD_KIND[parsed.kind], device, message: body, payload: text, receivedAt };
  return { ok: true, record: record as IngestRecord };
}
