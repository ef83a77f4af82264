import { type ParseArgsConfig, parseArgs } from 'node:util';
import { ArgusError } from '../common/errors.ts';

export interface CommandContext {
  /** aborted on Ctrl-C: long steps stop and clean up */
  signal: AbortSignal;
  stdout: NodeJS.WritableStream;
}

export interface Command {
  /** words after `argus`, e.g. ["models", "fetch"] */
  path: string[];
  summary: string;
  usage: string;
  /** an example file to start from, named in --help (relative to the Argus directory) */
  example?: string;
  /** parses its arguments with `parseCommandArgs` before doing anything (which answers --help) */
  run(args: string[], ctx: CommandContext): Promise<number>;
}

type ParseOption = NonNullable<ParseArgsConfig['options']>[string];
/** a command-line option: how parseArgs reads it, and what --help says of it */
export type CommandOption = ParseOption & {
  description: string;
  /** what the value is, e.g. FILE, N (string options) */
  value?: string;
};
type Options = Record<string, CommandOption>;

/** `--help` was given: the command's help, to print instead of running it */
export class HelpRequested extends Error {
  constructor(readonly text: string) {
    super('help requested');
  }
}

/** the help of `command` with its `options`: summary, usage, each option, the example to start from */
export function commandHelp(command: Command, options: Options): string {
  const flags = Object.entries(options).map(([name, o]) => ({
    flag: `--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`,
    text: `${o.description}${o.multiple ? ' (may be given more than once)' : ''}`,
  }));
  flags.push({ flag: '--help', text: 'show this help' });
  const width = Math.max(...flags.map((f) => f.flag.length));
  const lines = [
    command.summary,
    '',
    `usage: ${command.usage}`,
    '',
    'options:',
    ...flags.map((f) => `  ${f.flag.padEnd(width)}  ${f.text}`),
  ];
  if (command.example) lines.push('', `example: ${command.example} (a file to start from)`);
  return `${lines.join('\n')}\n`;
}

/**
 * parseArgs with errors that show the command's usage; `--help` among the arguments throws
 * HelpRequested with the command's help instead
 */
export function parseCommandArgs<O extends Options>(command: Command, args: string[], options: O) {
  if (args.includes('--help')) throw new HelpRequested(commandHelp(command, options));
  const parse = Object.fromEntries(
    Object.entries(options).map(([name, { description: _d, value: _v, ...o }]) => [name, o]),
  ) as { [K in keyof O]: Omit<O[K], 'description' | 'value'> };
  try {
    return parseArgs({ args, options: parse, allowPositionals: true, strict: true });
  } catch (err) {
    throw new ArgusError(
      `${(err as Error).message}`,
      `usage: ${command.usage}; argus ${command.path.join(' ')} --help describes the options`,
    );
  }
}

export function parseIntegerList(value: string, flag: string): number[] {
  const out = value.split(',').map((s) => s.trim());
  if (out.some((s) => !/^\d+$/.test(s)))
    throw new ArgusError(`${flag} takes comma-separated frame numbers, got "${value}"`);
  return out.map(Number);
}

export function parsePositiveNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0)
    throw new ArgusError(`${flag} takes a non-negative number, got "${value}"`);
  return n;
}

/** a whole-number option, at least `min` */
export function integerOption(value: string | undefined, flag: string, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new ArgusError(`${flag} takes a whole number ≥ ${min}, got "${value}"`);
  return n;
}

export function onePositional(command: Command, positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new ArgusError(`expected one ${what}`, `usage: ${command.usage}`);
  return positionals[0]!;
}

/** resolves when the command is interrupted (Ctrl-C, SIGTERM) */
export function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}
