import { randomBytes } from 'node:crypto';
import { connect, type MqttClient } from 'mqtt';
import { ArgusError, errorMessage } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { redactUrl } from '../../common/net.ts';
import { DEVICE_ID_PATTERN, deviceClientId, TOPIC_ROOT, topics } from '../../contract/index.ts';
import type { ExternalBrokerSettings } from '../config.ts';
import type { ClientTlsMaterial } from '../tls.ts';
import type { BrokerAccessControl } from './access-control.ts';

const CONTROL_TOPIC = '$CONTROL/dynamic-security/v1';
const RESPONSE_TOPIC = `${CONTROL_TOPIC}/response`;
const CONNECT_TIMEOUT_MS = 10_000;
const COMMAND_TIMEOUT_MS = 10_000;
const CONTROL_PLANE_ROLE = 'argus-control-plane';
const DEVICE_ID = new RegExp(DEVICE_ID_PATTERN);
/** Node's codes for a TLS peer certificate refused (OpenSSL's verify errors, host name, alerts) */
const TLS_REFUSAL = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_)/;

type AclType =
  | 'publishClientSend'
  | 'publishClientReceive'
  | 'subscribePattern'
  | 'subscribeLiteral'
  | 'unsubscribePattern'
  | 'unsubscribeLiteral';

/** one ACL of a dynamic-security role; a higher priority is checked first */
export interface Acl {
  acltype: AclType;
  topic: string;
  allow: boolean;
  priority: number;
}

interface Response {
  command: string;
  error?: string;
  data?: unknown;
  correlationData?: string;
}

/** the role of one device (Mosquitto 2.0's dynamic security has no %u substitution: one per device) */
export const deviceRoleName = (device: string): string => `argus-device-${device}`;

/**
 * What a device may do: publish its own messages, subscribe to and receive its own commands.
 * Everything else is refused by the default ACL access the control plane sets (no publish, no
 * subscribe), and receiving anything but its commands is denied here too.
 */
export function deviceAcls(device: string): Acl[] {
  const publish = [
    topics.available(device),
    topics.identity(device),
    topics.telemetry(device),
    topics.events(device),
    topics.status(device),
    topics.commandResult(device),
  ].map((topic): Acl => ({ acltype: 'publishClientSend', topic, allow: true, priority: 0 }));
  return [
    ...publish,
    { acltype: 'subscribePattern', topic: topics.commandFilter(device), allow: true, priority: 0 },
    { acltype: 'publishClientReceive', topic: topics.commandFilter(device), allow: true, priority: 1 },
    { acltype: 'publishClientReceive', topic: '#', allow: false, priority: -1 },
  ];
}

/** what the control plane may do: read everything under the root (shared when grouped), send commands */
export function controlPlaneAcls(sharedGroup: string | undefined): Acl[] {
  const filter = `${TOPIC_ROOT}/#`;
  return [
    { acltype: 'subscribePattern', topic: filter, allow: true, priority: 0 },
    ...(sharedGroup
      ? [
          {
            acltype: 'subscribePattern',
            topic: `$share/${sharedGroup}/${filter}`,
            allow: true,
            priority: 0,
          } as Acl,
        ]
      : []),
    { acltype: 'publishClientReceive', topic: filter, allow: true, priority: 0 },
    { acltype: 'publishClientSend', topic: `${TOPIC_ROOT}/+/cmd/+`, allow: true, priority: 0 },
  ];
}

const aclKey = (a: Pick<Acl, 'acltype' | 'topic'>) => `${a.acltype} ${a.topic}`;

/**
 * The control plane as the admin of Mosquitto 2's dynamic security plugin: JSON commands on
 * `$CONTROL/dynamic-security/v1`, answers on its `/response` topic (matched by correlation data).
 * At start it makes the broker refuse by default (no publish, no subscribe), keeps the control
 * plane's role and client as configured, and then gives each device a client (username = device
 * id, client id bound to `argus-<device id>`, its credential as password) with its own role.
 * Deleting a client makes the broker disconnect it; changing its password does too.
 */
export class MosquittoDynamicSecurity implements BrokerAccessControl {
  readonly checksSecrets = true;
  private next = 0;
  /** every admin connection sees every response: correlation data starts with this connection's id */
  private readonly prefix = randomBytes(6).toString('hex');
  private readonly waiting = new Map<string, (responses: Response[]) => void>();
  /** one request at a time, so that the updates of one device never interleave */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly client: MqttClient,
    private readonly log: Logger,
  ) {
    client.on('message', (topic, payload) => {
      if (topic === RESPONSE_TOPIC) this.onResponse(payload);
    });
  }

  /**
   * Connects as the dynamic-security admin and sets up the broker for the control plane: the
   * default ACL access, the control plane's role, and its client (`settings.username`, bound to
   * `settings.clientId`). Call before the control plane connects with that client.
   */
  static async start(
    settings: ExternalBrokerSettings,
    log: Logger,
    tls?: ClientTlsMaterial,
  ): Promise<MosquittoDynamicSecurity> {
    const admin = settings.dynamicSecurity;
    if (!admin || !settings.username || !settings.password)
      throw new ArgusError('dynamic security needs mqtt.external.dynamicSecurity, username and password');
    const url = redactUrl(settings.url);
    const client = connect(settings.url, {
      protocolVersion: 5,
      // several control planes may run: each admin connection has its own id
      clientId: `${settings.clientId}-dynsec-${randomBytes(4).toString('hex')}`,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: CONNECT_TIMEOUT_MS,
      username: admin.adminUsername,
      password: admin.adminPassword,
      ...tls,
    });
    let lastError: string | undefined;
    client.on('error', (err) => {
      if (err.message !== lastError)
        log.warn({ url, err: err.message }, 'dynamic-security admin connection error');
      lastError = err.message;
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(lastError ?? `no connection within ${CONNECT_TIMEOUT_MS / 1000} s`)),
          CONNECT_TIMEOUT_MS,
        );
        client.once('connect', () => {
          clearTimeout(timer);
          resolve();
        });
        // a CONNACK refusal (bad credentials, not authorized) or a certificate refused will not
        // go away by retrying
        client.on('error', (err) => {
          const code = (err as { code?: unknown }).code;
          if (typeof code !== 'number' && !(typeof code === 'string' && TLS_REFUSAL.test(code))) return;
          clearTimeout(timer);
          reject(err);
        });
      });
      const granted = await client.subscribeAsync(RESPONSE_TOPIC, { qos: 1 });
      if (granted.some((g) => g.qos >= 0x80))
        throw new Error(`not allowed to subscribe to ${RESPONSE_TOPIC}`);
    } catch (err) {
      await client.endAsync(true);
      throw new ArgusError(
        `cannot reach the dynamic security plugin of ${url} as "${admin.adminUsername}": ${errorMessage(err)}`,
        'check mqtt.external.dynamicSecurity (the admin made by `mosquitto_ctrl dynsec init`) and that the broker loads mosquitto_dynamic_security.so',
      );
    }
    const dynsec = new MosquittoDynamicSecurity(client, log);
    try {
      await dynsec
        .request([
          {
            command: 'setDefaultACLAccess',
            acls: [
              { acltype: 'publishClientSend', allow: false },
              { acltype: 'subscribe', allow: false },
            ],
          },
        ])
        .then(expectOk);
      await dynsec.ensureRole(CONTROL_PLANE_ROLE, controlPlaneAcls(settings.sharedGroup));
      await dynsec.ensureClient(settings.username, settings.password, settings.clientId, CONTROL_PLANE_ROLE);
    } catch (err) {
      await dynsec.close();
      throw new ArgusError(
        `cannot set up the dynamic security of ${url}: ${errorMessage(err)}`,
        'check that mqtt.external.dynamicSecurity names the admin client of the broker',
      );
    }
    log.info({ url, role: CONTROL_PLANE_ROLE }, 'broker clients and ACLs managed by the control plane');
    return dynsec;
  }

  async grant(device: string, secret: string): Promise<void> {
    checkDevice(device);
    await this.ensureRole(deviceRoleName(device), deviceAcls(device));
    await this.ensureClient(device, secret, deviceClientId(device), deviceRoleName(device));
    this.log.info({ device }, 'broker client granted');
  }

  async revoke(device: string): Promise<void> {
    checkDevice(device);
    const [client, role] = await this.request([
      { command: 'deleteClient', username: device },
      { command: 'deleteRole', rolename: deviceRoleName(device) },
    ]);
    if (client?.error && client.error !== 'Client not found') throw dynsecError(client);
    if (role?.error && role.error !== 'Role not found') throw dynsecError(role);
    this.log.info({ device }, 'broker client revoked (and disconnected)');
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
    for (const [, done] of this.waiting) done([]);
    this.waiting.clear();
  }

  /** creates the role, or brings an existing one to exactly `acls` */
  private async ensureRole(rolename: string, acls: Acl[]): Promise<void> {
    const [created] = await this.request([{ command: 'createRole', rolename, acls }]);
    if (!created?.error) return;
    if (created.error !== 'Role already exists') throw dynsecError(created);
    const [got] = await this.request([{ command: 'getRole', rolename }]).then(expectOk);
    const have = ((got?.data as { role?: { acls?: Acl[] } })?.role?.acls ?? []) as Acl[];
    const wanted = new Map(acls.map((a) => [aclKey(a), a]));
    const same = (a: Acl, b: Acl | undefined) =>
      b !== undefined && a.allow === b.allow && a.priority === b.priority;
    const stale = have.filter((a) => !same(a, wanted.get(aclKey(a))));
    const haveKeys = new Map(have.map((a) => [aclKey(a), a]));
    const missing = acls.filter((a) => !same(a, haveKeys.get(aclKey(a))));
    if (stale.length + missing.length === 0) return;
    await this.request([
      ...stale.map((a) => ({ command: 'removeRoleACL', rolename, acltype: a.acltype, topic: a.topic })),
      ...missing.map((a) => ({ command: 'addRoleACL', rolename, ...a })),
    ]).then(expectOk);
  }

  /** creates the client, or sets the password, client id and role of an existing one (and enables it) */
  private async ensureClient(username: string, password: string, clientid: string, rolename: string) {
    const roles = [{ rolename }];
    const [created] = await this.request([{ command: 'createClient', username, password, clientid, roles }]);
    if (!created?.error) return;
    if (created.error !== 'Client already exists') throw dynsecError(created);
    await this.request([
      { command: 'modifyClient', username, password, clientid, roles },
      { command: 'enableClient', username },
    ]).then(expectOk);
  }

  /** sends the commands in one message and resolves their responses, in order */
  private request(commands: Record<string, unknown>[]): Promise<Response[]> {
    const run = async () => {
      const base = `${this.prefix}-${++this.next}`;
      const ids = commands.map((_, i) => `${base}.${i}`);
      const answered = new Promise<Response[]>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.waiting.delete(base);
          reject(
            new Error(`no answer from the dynamic security plugin within ${COMMAND_TIMEOUT_MS / 1000} s`),
          );
        }, COMMAND_TIMEOUT_MS);
        this.waiting.set(base, (responses) => {
          clearTimeout(timer);
          resolve(responses);
        });
      });
      const body = { commands: commands.map((c, i) => ({ ...c, correlationData: ids[i] })) };
      await this.client.publishAsync(CONTROL_TOPIC, JSON.stringify(body), { qos: 1 });
      const responses = await answered;
      return ids.map((id, i): Response => {
        const found = responses.find((r) => r.correlationData === id);
        return found ?? { command: String(commands[i]?.command), error: 'no response' };
      });
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private onResponse(payload: Buffer): void {
    let responses: Response[];
    try {
      const parsed = JSON.parse(payload.toString('utf8')) as { responses?: unknown };
      if (!Array.isArray(parsed.responses)) return;
      responses = parsed.responses as Response[];
    } catch {
      return;
    }
    // the plugin answers all the commands of one message in one response message
    const first = responses.find((r) => typeof r?.correlationData === 'string')?.correlationData;
    const base = first?.slice(0, first.lastIndexOf('.'));
    const done = base === undefined ? undefined : this.waiting.get(base);
    if (!base || !done) return;
    this.waiting.delete(base);
    done(responses);
  }
}

function checkDevice(device: string): void {
  if (!DEVICE_ID.test(device)) throw new ArgusError(`"${device}" is not a device id`);
}

function dynsecError(r: Response): Error {
  return new Error(`${r.command}: ${r.error}`);
}

function expectOk(responses: Response[]): Response[] {
  const failed = responses.find((r) => r.error);
  if (failed) throw dynsecError(failed);
  return responses;
}
