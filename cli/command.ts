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
  run(args: string[], ctx: CommandContext): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs with errors that show the command's usage */
export function parseCommandArgs<O extends Options>(command: Command, args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new ArgusError(`${(err as Error).message}`, `usage: ${command.usage}`);
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
