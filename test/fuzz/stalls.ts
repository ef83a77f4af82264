import { within } from './property.ts';
import { type FuzzTarget, missingLegitEvents } from './target.ts';

/** longer than this without an acknowledgement is a stall */
export const STALL_MS = 10_000;

/** throws if the process saw a fault or the legit device waits too long for its PUBACK */
export function assertHealthy(target: FuzzTarget): void {
  if (target.faults.length > 0) throw new Error(`crash: ${target.faults[0]}`);
  const waiting = target.legit.waitingMs();
  if (waiting > STALL_MS) throw new Error(`stall: the legit device has waited ${waiting} ms for a PUBACK`);
}

/**
 * The legit device's flow after a fuzz run: a new event is acknowledged within STALL_MS, and every
 * event it had acknowledged is stored. Answers how many it had acknowledged.
 */
export async function assertLegitFlows(target: FuzzTarget): Promise<number> {
  assertHealthy(target);
  await within(STALL_MS, 'the PUBACK of a legit event after fuzzing', target.legit.publishOne());
  const missing = await missingLegitEvents(target);
  if (missing.length > 0)
    throw new Error(`${missing.length} acknowledged legit events are not stored, e.g. ${missing[0]}`);
  return target.legit.acked.length;
}

/** resident memory now, MiB */
export const rssMiB = (): number => Math.round(process.memoryUsage().rss / 2 ** 20);

/** how much resident memory a fuzz run may add (the process holds the fuzzer and the control plane) */
export const RSS_GROWTH_LIMIT_MIB = 512;
