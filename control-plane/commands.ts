import { exceedsJsonDepth } from '../common/bounded-json.ts';
import { ArgusError } from '../common/errors.ts';
import { timeOrderedId } from '../common/ids.ts';
import {
  CONTRACT_VERSION,
  type Command,
  type CommandName,
  MAX_PAYLOAD_BYTES,
  topics,
  validators,
} from '../contract/index.ts';
import type { Metrics } from './metrics.ts';
import type { MqttLink } from './mqtt/link.ts';
import type { CommandRecord, Repository } from './storage/repository.ts';

/**
 * a command that cannot be published: too large or too deeply nested (the API answers 413), or
 * args outside the contract (400); the message says which
 */
export class CommandRefusedError extends Error {
  override readonly name = 'CommandRefusedError';
  constructor(
    message: string,
    readonly statusCode: 400 | 413,
  ) {
    super(message);
  }
}

/**
 * Sends commands to devices: the command is stored first (so that its result, whenever it comes,
 * has a row to land in), then published with QoS 1 on the device's command topic. The device
 * answers on its cmd_result topic, which ingest stores on the command's row. A command is held to
 * the bounds ingest holds every message to (MAX_PAYLOAD_BYTES, `ingest.maxJsonDepth`): one
 * beyond them is refused before anything is stored or published.
 */
export class CommandSender {
  constructor(
    private readonly repo: Repository,
    private readonly link: () => MqttLink,
    private readonly metrics: Metrics,
    private readonly maxJsonDepth: number,
  ) {}

  async send(device: string, name: CommandName, args: Record<string, unknown>): Promise<CommandRecord> {
    // the command object adds one level around its args
    if (exceedsJsonDepth(args, this.maxJsonDepth - 1))
      throw new CommandRefusedError(
        `the command's args nest deeper than ${this.maxJsonDepth - 1} levels of arrays and objects (ingest.maxJsonDepth ${this.maxJsonDepth})`,
        413,
      );
    const issuedAt = new Date();
    const command: Command = {
      v: CONTRACT_VERSION,
      id: timeOrderedId(),
      name,
      args,
      issuedAt: issuedAt.toISOString(),
    };
    if (!validators.command.check(command)) {
      const issues = validators.command.issues(command).slice(0, 5);
      throw new CommandRefusedError(
        `the command does not follow the contract: ${issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ')}`,
        400,
      );
    }
    const record: CommandRecord = {
      id: command.id,
      device,
      name,
      args,
      issuedAt: issuedAt.getTime(),
      result: null,
      resultAt: null,
    };
    const payload = JSON.stringify(command);
    const bytes = Buffer.byteLength(payload, 'utf8');
    if (bytes > MAX_PAYLOAD_BYTES)
      throw new CommandRefusedError(
        `the command is ${bytes} bytes as JSON, more than the contract's ${MAX_PAYLOAD_BYTES}: send smaller args`,
        413,
      );
    await this.repo.createCommand(record);
    try {
      await this.link().publish(topics.command(device, name), payload);
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
