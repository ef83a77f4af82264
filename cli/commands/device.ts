import { ArgusError } from '../../common/errors.ts';
import { DeviceAgent } from '../../device/agent.ts';
import { type Command, parseCommandArgs } from '../command.ts';

export const deviceRun: Command = {
  path: ['device', 'run'],
  summary: 'run the device agent: cameras, event spool, MQTT uplink, commands, /healthz',
  usage: 'argus device run --config <agent.yaml>',
  async run(args, ctx) {
    const { values, positionals } = parseCommandArgs(this, args, { config: { type: 'string' } });
    if (!values.config || positionals.length > 0) {
      throw new ArgusError('device run needs a config file', `usage: ${this.usage}`);
    }
    const agent = await DeviceAgent.start({ configFile: values.config });
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await agent.stop();
    return 0;
  },
};
