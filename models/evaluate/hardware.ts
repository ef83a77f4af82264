import { readFileSync } from 'node:fs';
import { arch, cpus } from 'node:os';

/**
 * The hardware class of this machine as far as inference speed goes: CPU architecture plus the
 * best integer dot-product extension it has (what int8 kernels run on), e.g. `x86_64-amx`,
 * `x86_64-avx512vnni`, `x86_64-avx2`, `arm64-dotprod`. Metrics in bundles are keyed by it.
 */
export function hardwareClass(): string {
  let flags = new Set<string>();
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const line = /^(flags|Features)\s*:(.*)$/m.exec(info);
    flags = new Set((line?.[2] ?? '').trim().split(/\s+/));
  } catch {
    flags = new Set();
  }
  if (arch() === 'x64') {
    const isa = flags.has('amx_int8')
      ? 'amx'
      : flags.has('avx512_vnni')
        ? 'avx512vnni'
        : flags.has('avx_vnni')
          ? 'avxvnni'
          : flags.has('avx2')
            ? 'avx2'
            : 'sse';
    return `x86_64-${isa}`;
  }
  if (arch() === 'arm64') return flags.has('asimddp') ? 'arm64-dotprod' : 'arm64';
  return arch();
}

/** CPU model and core count, recorded next to measured latencies */
export function cpuDescription(): { cpu: string; cores: number } {
  return { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length };
}
