import { errorMessage } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import {
  CONTRACT_BOUNDS,
  CONTRACT_VERSION,
  type Command,
  type CommandName,
  type CommandResult,
  parseTopic,
  validators,
} from '../contract/index.ts';

/** what a command did: `message` for people, `data` for the control plane */
export interface CommandOutcome {
  ok: boolean;
  message: string;
  data?: Record<string, unknown>;
}

export type CommandHandler = (args: Record<string, unknown>) => Promise<CommandOutcome>;

/** how many recent command ids are remembered to answer a redelivered command without running it again */
const REMEMBERED_RESULTS = 256;

/**
 * Runs the control plane's commands one at a time, in arrival order. A command whose topic or
 * payload does not follow the contract is logged and ignored (there is no valid id to answer).
 * Every valid command gets exactly one result message; a handler's failure becomes `ok: false` with
 * the error's text and the agent keeps running. A command redelivered by the broker (QoS 1) is not
 * run again: its earlier result is sent again.
 */
export class CommandProcessor {
  private queue: Promise<void> = Promise.resolve();
  private readonly results = new Map<string, CommandResult>();
  ignored = 0;

  constructor(
    private readonly device: string,
    private readonly handlers: Record<CommandName, CommandHandler>,
    /** spools the result for publishing */
    private readonly reply: (result: CommandResult) => void,
    private readonly log: Logger,
  ) {}

  handle(topic: string, payload: Buffer): void {
    const parsed = parseTopic(topic);
    if (parsed?.kind !== 'cmd' || parsed.device !== this.device) {
      this.reject(topic, 'not a command topic of this device');
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(payload.toString('utf8'));
    } catch (err) {
      this.reject(topic, `payload is not JSON: ${(err as Error).message}`);
      return;
    }
    if (!validators.command.check(body)) {
      const issues = validators.command.issues(body).map((i) => `${i.path || '(root)'}: ${i.message}`);
      this.reject(topic, `payload does not match the command schema: ${issues.join('; ')}`);
      return;
    }
    const command = body;
    if (command.name !== parsed.command) {
      this.reject(topic, `payload names command "${command.name}" but the topic is for "${parsed.command}"`);
      return;
    }
    this.queue = this.queue
      .then(() => this.run(command))
      .catch((err) =>
        this.log.error({ id: command.id, err: errorMessage(err) }, 'cannot send a command result'),
      );
  }

  /** resolves when every command received so far has been answered */
  idle(): Promise<void> {
    return this.queue;
  }

  private reject(topic: string, reason: string): void {
    this.ignored++;
    this.log.warn({ topic, reason }, 'ignoring malformed command');
  }

  private async run(command: Command): Promise<void> {
    const earlier = this.results.get(command.id);
    if (earlier) {
      this.log.info({ id: command.id, name: command.name }, 'command redelivered; sending its result again');
      this.reply(earlier);
      return;
    }
    const started = performance.now();
    let outcome: CommandOutcome;
    try {
      outcome = await this.handlers[command.name](command.args);
    } catch (err) {
      outcome = { ok: false, message: errorMessage(err) };
    }
    const result: CommandResult = {
      v: CONTRACT_VERSION,
      id: command.id,
      device: this.device,
      name: command.name,
      ok: outcome.ok,
      // the contract bounds the text: a long error is cut rather than the answer lost
      message: outcome.message.slice(0, CONTRACT_BOUNDS.text),
      at: new Date().toISOString(),
      ...(outcome.data ? { data: outcome.data } : {}),
    };
    this.log[outcome.ok ? 'info' : 'warn'](
      { id: command.id, name: command.name, ok: outcome.ok, ms: Math.round(performance.now() - started) },
      `command ${command.name}: ${outcome.message}`,
    );
    this.results.set(command.id, result);
    if (this.results.size > REMEMBERED_RESULTS) this.results.delete(this.results.keys().next().value!);
    this.reply(result);
  }
}
