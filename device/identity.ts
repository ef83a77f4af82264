import { readFile } from 'node:fs/promises';
import { arch } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { CONTRACT_VERSION, type Identity } from '../contract/index.ts';
import { readDescriptor } from '../inference/descriptor.ts';
import { DESCRIPTOR_FILE, resolveModelDir } from '../inference/model-dir.ts';
import type { DeviceConfig } from './config.ts';

const readText = (path: string) => readFile(path, 'utf8').catch(() => '');

/** e.g. x86_64-avx512, x86_64-avx2, rk3588-npu, jetson-orin, aarch64 */
export async function detectHardwareClass(): Promise<string> {
  const cpu = arch();
  if (cpu === 'x64') {
    const flags = new Set(
      /^flags\s*:(.*)$/m
        .exec(await readText('/proc/cpuinfo'))?.[1]
        ?.trim()
        .split(/\s+/),
    );
    if (flags.has('avx512f')) return 'x86_64-avx512';
    if (flags.has('avx2')) return 'x86_64-avx2';
    return 'x86_64';
  }
  if (cpu === 'arm64') {
    const compatible = (await readText('/proc/device-tree/compatible')).split('\0');
    if (compatible.includes('rockchip,rk3588')) return 'rk3588-npu';
    if (compatible.includes('nvidia,tegra234')) return 'jetson-orin';
    if (compatible.some((c) => c.startsWith('nvidia,tegra'))) return 'jetson';
    return 'aarch64';
  }
  return cpu;
}

/** the execution providers this ONNX Runtime build ships, the detector's preferences first, CPU last */
export function availableExecutionProviders(preferred: readonly string[]): string[] {
  const bundled = ort.listSupportedBackends().flatMap((b) => (b.bundled ? [b.name] : []));
  const rank = (p: string) => {
    if (p === 'cpu') return preferred.length + 1;
    const i = preferred.indexOf(p);
    return i < 0 ? preferred.length : i;
  };
  return bundled.sort((a, b) => rank(a) - rank(b));
}

async function softwareVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

async function installedModels(ref: string): Promise<Identity['models']> {
  try {
    const d = await readDescriptor(join(resolveModelDir(ref), DESCRIPTOR_FILE));
    return [{ name: d.name, version: d.version, sha256: d.sha256 }];
  } catch {
    return [];
  }
}

/** who this box is: published retained on every connect and after a config reload */
export async function buildIdentity(config: DeviceConfig, startedAt: Date): Promise<Identity> {
  return {
    v: CONTRACT_VERSION,
    device: config.device.id,
    hardwareClass:
      config.device.hardwareClass === 'auto' ? await detectHardwareClass() : config.device.hardwareClass,
    executionProviders: availableExecutionProviders(config.detector.executionProviders),
    software: { version: await softwareVersion(), node: process.version },
    models: await installedModels(config.detector.model),
    cameras: config.cameras.filter((c) => c.enabled).map((c) => ({ id: c.id, scene: c.scene })),
    startedAt: startedAt.toISOString(),
  };
}
