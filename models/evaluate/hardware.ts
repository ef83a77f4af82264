import { cpus } from 'node:os';

/** CPU model and core count, recorded next to measured latencies */
export function cpuDescription(): { cpu: string; cores: number } {
  return { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length };
}
