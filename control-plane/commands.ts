import { ArgusError } from '../common/errors.ts';
import { timeOrderedId } from '../common/ids.ts';
import { CONTRACT_VERSION, type Command, type CommandName, topics, validators } from '../contract/index.ts';
import type { Metrics } from './metrics.ts';
import type { MqttLink } from './mqtt/link.ts';
import type { CommandRecord, Repository } from './storage/repository.ts';

/**
 * Sends commands to devices: the command is stored first (so that its result, whenever it comes,
 * has a row to land in), then published with QoS 1 on the device's command topic. The device
 * answers on its cmd_result topic, which ingest stores on the command's row.
 */
export class CommandSender {
  constructor(
    private readonly repo: Repository,
    private readonly link: () => MqttLink,
    private readonly metrics: Metrics,
  ) {}

  async send(device: string, name: CommandName, args: Record<string, unknown>): Promise<CommandRecord> {
    const issuedAt = new Date();
    const command: Command = validators.command.parse(
      { v: CONTRACT_VERSION, id: timeOrderedId(), name, args, issuedAt: issuedAt.toISOString() },
      `command ${name}`,
    );
    const record: CommandRecord = {
      id: command.id,
      device,
      name,
      args,
      issuedAt: issuedAt.getTime(),
      result: null,
      resultAt: null,
    };
    await this.repo.createCommand(record);
    try {
      await this.link().publish(topics.command(device, name), JSON.stringify(command));
    } catch (err) {
      throw new ArgusError(
        `command ${command.id} was stored but not published: ${(err as Error).message}`,
        'check the MQTT broker and send the command again',
      );
    }
    this.metrics.commands++;
    return record;
  }
}
