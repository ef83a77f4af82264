import { ArgusError } from '../../common/errors.ts';
import { DeviceAgent } from '../../device/agent.ts';
import { type Command, parseCommandArgs, untilAborted } from '../command.ts';

export const deviceRun: Command = {
  path: ['device', 'run'],
  summary: 'run the device agent: cameras, event spool, MQTT uplink, commands, /healthz',
  usage: 'argus device run --config <device.yaml>',
  example: 'examples/device.yaml',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, {
      config: {
        type: 'string',
        value: 'FILE',
        description:
          'the device config (YAML): device id, MQTT broker, control plane, cameras and their scenes',
      },
    });
    if (!values.config || positionals.length > 0) {
      throw new ArgusError('device run needs a config file', `usage: ${this.usage}`);
    }
    const agent = await DeviceAgent.start({ configFile: values.config, signal: ctx.signal });
    await untilAborted(ctx.signal);
    await agent.stop();
    return 0;
  },
};
