import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { CONTRACT_VERSION, type Identity } from '../contract/index.ts';
import { readDescriptor } from '../inference/descriptor.ts';
import { hardwareClass } from '../inference/hardware-class.ts';
import { DESCRIPTOR_FILE, resolveModelDir } from '../inference/model-dir.ts';
import type { DeviceConfig } from './config.ts';

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
    hardwareClass: config.device.hardwareClass === 'auto' ? hardwareClass() : config.device.hardwareClass,
    executionProviders: availableExecutionProviders(config.detector.executionProviders),
    software: { version: await softwareVersion(), node: process.version },
    models: await installedModels(config.detector.model),
    cameras: config.cameras.filter((c) => c.enabled).map((c) => ({ id: c.id, scene: c.scene })),
    startedAt: startedAt.toISOString(),
  };
}
