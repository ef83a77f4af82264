import type { HarvestedFrames } from '../harvest/frames.ts';
import type { RetentionStep } from './retention.ts';

/**
 * The `harvest` kind of retention (`retention.harvest`): harvested frames past `maxAgeDays` are
 * deleted, row and then their JPEG in the blob store (unless another row holds the same bytes),
 * then the oldest while their bytes exceed `maxMiB`.
 */
export function harvestRetention(harvest: HarvestedFrames): RetentionStep {
  return {
    name: 'harvest',
    run: (limit, check, count) => harvest.retain(limit, check, count),
  };
}
