/**
 * The MQTT topic tree shared by device agents and the control plane. Everything lives under a
 * versioned root so that a v2 contract can run beside v1 during a fleet upgrade.
 *
 *   argus/v1/<device>/available          device → cp  retained  Availability (Last Will: offline)
 *   argus/v1/<device>/identity           device → cp  retained  Identity
 *   argus/v1/<device>/telemetry          device → cp  QoS 1     Telemetry (heartbeat every N s)
 *   argus/v1/<device>/events             device → cp  QoS 1     EventMessage (spooled, zero loss)
 *   argus/v1/<device>/status             device → cp  QoS 1     CameraStatus (spooled, zero loss)
 *   argus/v1/<device>/cmd/<name>         cp → device  QoS 1     Command
 *   argus/v1/<device>/cmd_result         device → cp  QoS 1     CommandResult
 *   argus/v1/<device>/update             device → cp  QoS 1     UpdateStatus (spooled, zero loss; contract/ota.ts)
 */

export const CONTRACT_VERSION = 1;
export const TOPIC_ROOT = `argus/v${CONTRACT_VERSION}`;

export const DEVICE_ID_PATTERN = '^[a-z0-9][a-z0-9_-]{0,62}$';
const DEVICE_ID = new RegExp(DEVICE_ID_PATTERN);

/**
 * the MQTT client id of a device: brokers with device credentials (the embedded one, Mosquitto's
 * dynamic security as the control plane configures it) accept no other for it
 */
export const deviceClientId = (device: string): string => `argus-${device}`;

export const DEVICE_TOPIC_KINDS = [
  'available',
  'identity',
  'telemetry',
  'events',
  'status',
  'cmd_result',
  'update',
] as const;
export type DeviceTopicKind = (typeof DEVICE_TOPIC_KINDS)[number];

/**
 * `rotate-credential` (no args): the device fetches a new credential from the control plane with
 * its current one (httpPaths.rotateCredential), stores it and reconnects with it.
 * `update` (args: UpdateAssignment) and `update-cancel` (args: UpdateCancel): see contract/ota.ts.
 * `live-start` (args: LiveStart) and `live-stop` (args: LiveStop): see contract/live.ts.
 */
export const COMMAND_NAMES = [
  'reload-config',
  'snapshot',
  'restart-camera',
  'rotate-credential',
  'update',
  'update-cancel',
  'live-start',
  'live-stop',
] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

export const topics = {
  available: (device: string) => `${TOPIC_ROOT}/${device}/available`,
  identity: (device: string) => `${TOPIC_ROOT}/${device}/identity`,
  telemetry: (device: string) => `${TOPIC_ROOT}/${device}/telemetry`,
  events: (device: string) => `${TOPIC_ROOT}/${device}/events`,
  status: (device: string) => `${TOPIC_ROOT}/${device}/status`,
  command: (device: string, name: CommandName) => `${TOPIC_ROOT}/${device}/cmd/${name}`,
  commandFilter: (device: string) => `${TOPIC_ROOT}/${device}/cmd/+`,
  commandResult: (device: string) => `${TOPIC_ROOT}/${device}/cmd_result`,
  update: (device: string) => `${TOPIC_ROOT}/${device}/update`,
};

/** what the control plane subscribes to; with `group` it uses a shared subscription for scale-out */
export function ingestSubscriptions(group?: string): string[] {
  return DEVICE_TOPIC_KINDS.map((k) => {
    const filter = `${TOPIC_ROOT}/+/${k}`;
    return group ? `$share/${group}/${filter}` : filter;
  });
}

/**
 * One filter for everything under the root, so that topics outside the contract are seen (and
 * counted as unknown) too; with `group` it is a shared subscription.
 */
export function ingestWildcard(group?: string): string {
  return group ? `$share/${group}/${TOPIC_ROOT}/#` : `${TOPIC_ROOT}/#`;
}

export type ParsedTopic =
  | { kind: DeviceTopicKind; device: string }
  | { kind: 'cmd'; device: string; command: CommandName };

/** parses a topic of the tree; undefined for anything else (counted and logged as unknown) */
export function parseTopic(topic: string): ParsedTopic | undefined {
  const parts = topic.split('/');
  if (parts.length < 3 || `${parts[0]}/${parts[1]}` !== TOPIC_ROOT) return undefined;
  const device = parts[2]!;
  if (!DEVICE_ID.test(device)) return undefined;
  if (parts.length === 4) {
    const kind = parts[3] as DeviceTopicKind;
    if ((DEVICE_TOPIC_KINDS as readonly string[]).includes(kind)) return { kind, device };
    return undefined;
  }
  if (parts.length === 5 && parts[3] === 'cmd' && (COMMAND_NAMES as readonly string[]).includes(parts[4]!)) {
    return { kind: 'cmd', device, command: parts[4] as CommandName };
  }
  return undefined;
}
