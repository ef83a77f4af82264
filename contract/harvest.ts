import Type from 'typebox';
import { compileSchema } from '../common/schema.ts';
import { CONTRACT_BOUNDS } from './bounds.ts';
import { MAX_SNAPSHOT_BYTES, SNAPSHOT_CONTENT_TYPE } from './http.ts';

/**
 * Harvested frames (issue 18): JPEGs a box chose as worth teaching its model from
 * (pipelines/harvest), uploaded over HTTP with its credential like snapshots, with what the box
 * knows of them in the query string. The control plane keeps them per site for the loop.
 */

export const HARVEST_CONTENT_TYPE = SNAPSHOT_CONTENT_TYPE;
/** a harvested frame is a whole frame at full resolution: the same bound as a snapshot (one body parser) */
export const MAX_HARVEST_BYTES = MAX_SNAPSHOT_BYTES;

export const HARVEST_REASON_NAMES = ['uncertain', 'flicker', 'motion-miss', 'disagreement'] as const;
export type HarvestReasonName = (typeof HARVEST_REASON_NAMES)[number];

/** what the box says of a harvested frame: the query string of its upload */
export const HarvestUploadQuerySchema = Type.Object(
  {
    camera: Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' }),
    capturedAt: Type.String({ format: 'date-time', maxLength: 40, description: 'RFC 3339 with a zone' }),
    reasons: Type.String({
      pattern: `^(${HARVEST_REASON_NAMES.join('|')})(,(${HARVEST_REASON_NAMES.join('|')})){0,3}$`,
      maxLength: 64,
      description: `why the box kept it, comma-separated: ${HARVEST_REASON_NAMES.join(', ')}`,
    }),
    model: Type.String({
      pattern: '^[a-z0-9][a-z0-9._-]*$',
      maxLength: CONTRACT_BOUNDS.name,
      description: 'the model the box ran on the frame',
    }),
    modelVersion: Type.Integer({ minimum: 0, maximum: CONTRACT_BOUNDS.int32 }),
  },
  { additionalProperties: false },
);

export type HarvestUploadQuery = Type.Static<typeof HarvestUploadQuerySchema>;

export const harvestValidators = { upload: compileSchema<HarvestUploadQuery>(HarvestUploadQuerySchema) };
