import fc from 'fast-check';

/** the fixed seeds of the fuzzers (a topic kind's is `payloads` + its index); `npm test` and `npm run fuzz` use them */
export const SEEDS = { payloads: 14_001, packets: 14_002, http: 14_003 };

/** how a fuzz run is chosen: its seed, and to replay one failing case its path */
export interface FuzzRun {
  seed: number;
  /** fast-check's counterexample path: with the seed, runs just the failing case again */
  path?: string;
}

/** the seed and path of the environment (FUZZ_SEED, FUZZ_PATH), else `seed` */
export function fuzzRun(seed: number): FuzzRun {
  const env = process.env.FUZZ_SEED;
  const path = process.env.FUZZ_PATH;
  return { seed: env ? Number(env) : seed, ...(path ? { path } : {}) };
}

/** a generated case, shortened for a failure message */
export function describeCase(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (Buffer.isBuffer(v) || (v as { type?: string })?.type === 'Buffer') {
      const b = Buffer.isBuffer(v) ? v : Buffer.from((v as { data: number[] }).data);
      return `<${b.length} bytes: ${JSON.stringify(b.subarray(0, 160).toString('latin1'))}${b.length > 160 ? '…' : ''}>`;
    }
    if (typeof v === 'string' && v.length > 200) return `${v.slice(0, 200)}… (${v.length} chars)`;
    return v;
  })!.slice(0, 4000);
}

/**
 * Runs an async property `runs` times from the seed (or only the case at `path`), without
 * shrinking (a case that stalls the control plane leaves nothing to shrink against). A failure
 * throws an error naming the seed and path that replay it, the case, and what went wrong.
 */
export async function checkProperty<T>(
  name: string,
  arbitrary: fc.Arbitrary<T>,
  property: (value: T) => Promise<void>,
  runs: number,
  run: FuzzRun,
): Promise<void> {
  const outcome = await fc.check(
    fc.asyncProperty(arbitrary, async (value) => {
      await property(value);
    }),
    { seed: run.seed, numRuns: runs, endOnFailure: true, ...(run.path ? { path: run.path } : {}) },
  );
  if (!outcome.failed) return;
  const error =
    outcome.errorInstance instanceof Error ? outcome.errorInstance.message : String(outcome.errorInstance);
  throw new Error(
    `fuzz ${name} failed: ${error}\n` +
      `  replay: FUZZ_ONLY=${name} FUZZ_SEED=${outcome.seed} FUZZ_PATH="${outcome.counterexamplePath}" npm run fuzz\n` +
      `  case: ${describeCase(outcome.counterexample?.[0])}`,
  );
}

/** resolves as `p` does, or rejects after `ms` saying what did not happen */
export async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`stall: ${what} within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
