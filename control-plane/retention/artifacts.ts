import type { ArtifactRegistry } from '../artifacts/registry.ts';
import type { RetentionStep } from './retention.ts';

/**
 * The `artifacts` kind of retention (`retention.artifacts`): published bundles that no rollout
 * references (the registry asks the rollouts, `ArtifactReferences.referenced`) are deleted, bytes
 * and row, once older than `maxAgeDays`, and the oldest of them while the artifacts' bytes exceed
 * `maxMiB`. A referenced artifact stays whatever its age.
 */
export function artifactRetention(registry: ArtifactRegistry): RetentionStep {
  return {
    name: 'artifacts',
    run: (limit, check, count) => registry.retain(limit, check, count),
  };
}
