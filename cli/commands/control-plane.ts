import { ArgusError } from '../../common/errors.ts';
import { loadControlPlaneConfig, startControlPlane } from '../../control-plane/index.ts';
import { type Command, parseCommandArgs, untilAborted } from '../command.ts';
import { cliActor, deviceArgument, withEnrollment } from './devices.ts';

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

/** `90s`, `15m`, `24h`, `7d` or plain seconds */
function parseDuration(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+)([smhd]?)$/.exec(value.trim());
  if (!m) throw new ArgusError(`${flag} takes a duration like 90s, 15m, 24h or 7d, got "${value}"`);
  return Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
}

export const controlPlaneEnroll: Command = {
  path: ['control-plane', 'enroll'],
  summary: 'make a one-time claim token with which a box gets its own credential',
  usage: 'argus control-plane enroll <device-id> --config <control-plane.yaml> [--ttl 24h]',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      config: {
        type: 'string',
        value: 'FILE',
        description: "the control plane's config (its database receives the claim token)",
      },
      ttl: {
        type: 'string',
        value: 'DURATION',
        description: 'how long the claim token is valid, e.g. 30m, 24h, 7d (default enrollment.claimTtlS)',
      },
    });
    const device = deviceArgument(this, positionals);
    const ttlS = parseDuration(values.ttl, '--ttl');
    return withEnrollment(values.config, this, async (enrollment, config) => {
      const claim = await enrollment.createClaim(device, ttlS ?? config.enrollment.claimTtlS, cliActor());
      ctx.stdout.write(
        `claim token for device ${device}, valid until ${new Date(claim.expiresAt).toISOString()}, usable once (it is not shown again):\n` +
          `  in the device config:  controlPlane: { claimToken: ${claim.token} }\n` +
          'At its first start the box exchanges it for its own credential (stored next to its config, mode 0600).\n',
      );
      return 0;
    });
  },
};
