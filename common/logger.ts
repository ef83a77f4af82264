import { type Logger, pino } from 'pino';

export type { Logger };

const level = process.env.ARGUS_LOG_LEVEL ?? 'info';

/**
 * The process-wide logger. Logs go to stderr so that stdout stays clean for machine-readable
 * output (`--json`). Components take a child logger named after themselves.
 */
export const rootLogger: Logger = pino(
  { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime },
  pino.destination({ fd: 2, sync: true }),
);

export function createLogger(component: string): Logger {
  return rootLogger.child({ component });
}
