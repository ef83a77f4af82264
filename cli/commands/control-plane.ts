import { randomBytes } from 'node:crypto';
import { ArgusError } from '../../common/errors.ts';
import { sha256Hex } from '../../common/hash.ts';
import { DEVICE_ID_PATTERN } from '../../contract/index.ts';
import { loadControlPlaneConfig, startControlPlane } from '../../control-plane/index.ts';
import { type Command, parseCommandArgs, untilAborted } from '../command.ts';

export const controlPlaneRun: Command = {
  path: ['control-plane', 'run'],
  summary: 'run the control plane: MQTT ingest, storage, REST API, live events, console page',
  usage: 'argus control-plane run --config <control-plane.yaml>',
  example: 'examples/control-plane.yaml',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      config: {
        type: 'string',
        value: 'FILE',
        description: 'the control plane config (YAML): listen address, broker, storage, device tokens',
      },
    });
    if (!values.config || positionals.length > 0)
      throw new ArgusError('control-plane run needs a config file', `usage: ${this.usage}`);
    const config = await loadControlPlaneConfig(values.config);
    const controlPlane = await startControlPlane(config);
    await untilAborted(ctx.signal);
    await controlPlane.close();
    return 0;
  },
};

export const controlPlaneEnroll: Command = {
  path: ['control-plane', 'enroll'],
  summary: 'make a credential for a device: its token, and the config line that accepts it',
  usage: 'argus control-plane enroll <device-id>',
  async run(args, ctx) {
    const { positionals } = parseCommandArgs(this, args, {});
    const device = positionals[0];
    if (positionals.length !== 1 || !device || !new RegExp(DEVICE_ID_PATTERN).test(device))
      throw new ArgusError(
        'enroll needs one device id (lower-case letters, digits, "-" and "_")',
        `usage: ${this.usage}`,
      );
    const token = randomBytes(32).toString('base64url');
    ctx.stdout.write(
      `device ${device}\n` +
        `  in the device config:        controlPlane: { token: ${token} }\n` +
        `  in the control-plane config: devices: [{ id: ${device}, tokenSha256: ${sha256Hex(token)} }]\n`,
    );
    return 0;
  },
};
