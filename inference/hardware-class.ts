import { readFileSync } from 'node:fs';
import { arch } from 'node:os';

const readText = (path: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

let detected: string | undefined;

/**
 * The hardware class of this machine as far as inference goes, the one name a box reports in its
 * identity, the model factory keys measured metrics by and a bundle's variants target: a board
 * with an accelerator by its name (`rk3588-npu`, `jetson-orin`, `jetson`), otherwise the CPU
 * architecture plus the best integer dot-product extension its int8 kernels run on
 * (`x86_64-amx`, `x86_64-avx512vnni`, `x86_64-avxvnni`, `x86_64-avx2`, `x86_64-sse`,
 * `arm64-dotprod`, `arm64`).
 */
export function hardwareClass(): string {
  detected ??= detect();
  return detected;
}

function detect(): string {
  const cpuinfo = readText('/proc/cpuinfo');
  const flags = new Set(
    (/^(?:flags|Features)\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '').trim().split(/\s+/).filter(Boolean),
  );
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
  if (arch() === 'arm64') {
    const compatible = readText('/proc/device-tree/compatible').split('\0');
    if (compatible.includes('rockchip,rk3588')) return 'rk3588-npu';
    if (compatible.includes('nvidia,tegra234')) return 'jetson-orin';
    if (compatible.some((c) => c.startsWith('nvidia,tegra'))) return 'jetson';
    return flags.has('asimddp') ? 'arm64-dotprod' : 'arm64';
  }
  return arch();
}
