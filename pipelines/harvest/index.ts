/**
 * Harvest for the data–model loop (issue 18): the pure choice, on the box, of the frames worth
 * sending to the teacher (see HarvestSelector), and its config. The device agent feeds it each
 * detected frame; a benchmark can run it over a video with no device.
 */
export { DEFAULT_HARVEST_CONFIG, type HarvestConfig, HarvestConfigSchema } from './config.ts';
export { frameHash, hashDistance, type PixelFrame } from './frame-hash.ts';
export {
  agreementShare,
  HARVEST_REASONS,
  type HarvestCounters,
  type HarvestDecision,
  type HarvestInput,
  type HarvestReason,
  HarvestSelector,
  type HarvestSpent,
  layoutOf,
} from './selector.ts';
