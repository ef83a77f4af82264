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
