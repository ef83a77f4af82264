import { hostname, userInfo } from 'node:os';
import { ArgusError } from '../../common/errors.ts';
import { DEVICE_ID_PATTERN } from '../../contract/index.ts';
import {
  type ControlPlaneConfig,
  DeviceCredentialStore,
  Enrollment,
  loadControlPlaneConfig,
  openRepository,
} from '../../control-plane/index.ts';
import { type Command, parseCommandArgs } from '../command.ts';

/** the device id of a devices/enroll command, checked */
export function deviceArgument(command: Command, positionals: string[]): string {
  const device = positionals[0];
  if (positionals.length !== 1 || !device || !new RegExp(DEVICE_ID_PATTERN).test(device))
    throw new ArgusError(
      'give one device id (lower-case letters, digits, "-" and "_")',
      `usage: ${command.usage}`,
    );
  return device;
}

/** who makes a claim token from the command line, as recorded with it */
export const cliActor = (): string => `cli ${userInfo().username}@${hostname()}`;

/**
 * Runs `fn` on the credential store of the control plane's database (migrated), with the
 * config's pre-provisioned devices taken in. Without the broker: running control planes see
 * the change at their next credential check (mqtt.embedded.credentialCheckS).
 */
export async function withEnrollment<T>(
  configFile: string | undefined,
  command: Command,
  fn: (enrollment: Enrollment, config: ControlPlaneConfig) => Promise<T>,
): Promise<T> {
  if (!configFile) throw new ArgusError('the control-plane config is needed', `usage: ${command.usage}`);
  const config = await loadControlPlaneConfig(configFile);
  const repository = await openRepository(config.storage);
  try {
    const store = new DeviceCredentialStore(repository.sql);
    await store.provision(config.devices, Date.now());
    return await fn(new Enrollment(store, undefined), config);
  } finally {
    await repository.close();
  }
}

const checkS = (config: ControlPlaneConfig): string =>
  config.mqtt.kind === 'embedded' ? `${config.mqtt.embedded.credentialCheckS} s` : 'seconds';

export const devicesRotate: Command = {
  path: ['devices', 'rotate'],
  summary: "rotate a device's credential: the box fetches a new one itself, nobody on site",
  usage: 'argus devices rotate <device-id> --config <control-plane.yaml>',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      config: {
        type: 'string',
        value: 'FILE',
        description: "the control plane's config (the database holding the device credentials)",
      },
    });
    const device = deviceArgument(this, positionals);
    return withEnrollment(values.config, this, async (enrollment, config) => {
      if (!(await enrollment.requestRotation(device)))
        throw new ArgusError(
          `device ${device} has no valid credential to rotate`,
          `enroll it: argus control-plane enroll ${device} --config ${values.config}`,
        );
      ctx.stdout.write(
        `rotation of ${device} requested: the control plane it is connected to sends it rotate-credential within ${checkS(config)}; the box then fetches and stores its new credential\n`,
      );
      return 0;
    });
  },
};

export const devicesRevoke: Command = {
  path: ['devices', 'revoke'],
  summary: "revoke a device's credential: it is disconnected and its uploads are refused",
  usage: 'argus devices revoke <device-id> --config <control-plane.yaml>',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      config: {
        type: 'string',
        value: 'FILE',
        description: "the control plane's config (the database holding the device credentials)",
      },
    });
    const device = deviceArgument(this, positionals);
    return withEnrollment(values.config, this, async (enrollment, config) => {
      if (!(await enrollment.revoke(device)))
        throw new ArgusError(`device ${device} has no credential that is not revoked already`);
      ctx.stdout.write(
        `revoked ${device}: its uploads are refused now and the control plane disconnects it within ${checkS(config)}; to take it back, enroll it again\n`,
      );
      return 0;
    });
  },
};
