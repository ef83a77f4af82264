import { createHash } from 'node:crypto';
import { timeOrderedId } from '../../common/ids.ts';
import {
  type ArtifactKind,
  type ArtifactRef,
  CONTRACT_VERSION,
  type Identity,
  type UpdateState,
  type UpdateStatus,
} from '../../contract/index.ts';
import type { ArtifactVariants, DeviceTraits } from '../../control-plane/rollouts/engine.ts';
import type { Repository } from '../../control-plane/storage/repository.ts';

/** the identity a box sends, with a hardware class and the models it runs */
export function identityOf(device: string, hardwareClass = 'x86_64-avx2', modelVersion = 1): Identity {
  return {
    v: CONTRACT_VERSION,
    device,
    hardwareClass,
    executionProviders: ['cpu'],
    software: { version: '0.1.0', node: 'v20' },
    models: [{ name: 'detector', version: modelVersion, sha256: 'a'.repeat(64) }],
    cameras: [{ id: 'cam-1', scene: 'scenes/crossing.yaml' }],
    startedAt: new Date().toISOString(),
  };
}

/** stores the identities of `devices` the way ingest does */
export async function storeIdentities(repo: Repository, devices: readonly string[], hardwareClass?: string) {
  const now = Date.now();
  await repo.writeBatch(
    devices.map((device) => {
      const message = identityOf(device, hardwareClass);
      return {
        kind: 'identity' as const,
        device,
        message,
        payload: JSON.stringify(message),
        receivedAt: now,
      };
    }),
  );
}

/** the content address a test gives the variant of (kind, name, version, hardware class) */
export const artifactId = (kind: string, name: string, version: number, hw: string): string =>
  createHash('sha256').update(`${kind}/${name}/${version}/${hw}`).digest('hex');

/**
 * The variants of a fixed catalogue of versions per hardware class, by the ArtifactVariants
 * interface the registry (control-plane/artifacts) implements; `hardwareClasses` lacks a class
 * to make a device unresolvable
 */
export class CatalogueVariants implements ArtifactVariants {
  constructor(
    private readonly versions: readonly number[] = [1, 2, 3],
    private readonly hardwareClasses: readonly string[] = ['x86_64-avx2'],
  ) {}

  async variantFor(kind: ArtifactKind, name: string, version: number, device: DeviceTraits) {
    if (!this.versions.includes(version) || !this.hardwareClasses.includes(device.hardwareClass))
      return undefined;
    const ref: ArtifactRef = {
      id: artifactId(kind, name, version, device.hardwareClass),
      kind,
      name,
      version,
      bytes: 1000 + version,
    };
    return ref;
  }

  /** the catalogue's artifacts never expire */
  async expiresAt(_artifactId: string) {
    return Number.POSITIVE_INFINITY;
  }
}

/** an update status of a device for an assignment */
export function updateStatus(
  a: { device: string; assignment: string; rollout: string; artifact: ArtifactRef },
  seq: number,
  state: UpdateState,
  reason?: string,
): UpdateStatus {
  return {
    v: CONTRACT_VERSION,
    id: timeOrderedId(),
    device: a.device,
    assignment: a.assignment,
    rollout: a.rollout,
    artifact: a.artifact,
    seq,
    state,
    at: new Date().toISOString(),
    ...(reason ? { reason } : {}),
  };
}
