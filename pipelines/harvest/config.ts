import Type from 'typebox';
import { compileSchema } from '../../common/schema.ts';

/**
 * What a box harvests for the data–model loop (issue 18): frames its model is unsure of, chosen on
 * the box on a budget, uploaded with its credential. The defaults keep the uplink small (60 frames
 * an hour, 50 MiB a day: about 1.5 GB a month per box at most) and spread the frames over time.
 */
export const HarvestConfigSchema = Type.Object(
  {
    /** off: the box keeps and uploads no harvested frame */
    enabled: Type.Boolean({ default: true }),
    /** at most this many frames kept in any 60 minutes (the box's cameras together) */
    framesPerHour: Type.Integer({ minimum: 1, maximum: 3600, default: 60 }),
    /** at most this many MiB of JPEG kept in any 24 hours (the box's cameras together) */
    megabytesPerDay: Type.Integer({ minimum: 1, maximum: 10_240, default: 50 }),
    /** at least this long between two kept frames, so that a busy minute does not take the hour's budget */
    minIntervalS: Type.Number({ minimum: 0, maximum: 3600, default: 10 }),
    /** `uncertain`: a detection scored in [low, high) — the model saw something but is not sure */
    uncertain: Type.Object(
      {
        low: Type.Number({ minimum: 0, maximum: 1, default: 0.3 }),
        high: Type.Number({ minimum: 0, maximum: 1, default: 0.5 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** `flicker`: a track not seen at the previous detected frame is found again within this many seconds */
    flickerWithinS: Type.Number({ exclusiveMinimum: 0, maximum: 10, default: 1 }),
    /**
     * `motion-miss`: a moving region of at least this share of the frame holds no detection scored
     * `uncertain.low` or more
     */
    motionMinShare: Type.Number({ minimum: 0, maximum: 1, default: 0.005 }),
    /**
     * the reference model of the spot checks (a catalog name or a model directory, e.g. the fp32
     * model the running int8 one was quantized from; the same input size and colour order): one
     * detected frame every `spotCheckEveryS` is also run through it, on a detector thread at the
     * lowest priority. None: no spot checks
     */
    referenceModel: Type.Optional(Type.String({ minLength: 1 })),
    /** how often a frame is also run through the reference (fp32) model, seconds (0: never) */
    spotCheckEveryS: Type.Number({ minimum: 0, maximum: 86_400, default: 120 }),
    /**
     * `disagreement`: on a spot-checked frame, the share of boxes the two models agree on (same
     * class, IoU ≥ 0.5, the running model's at `uncertain.high` or more) is below this
     */
    disagreementBelow: Type.Number({ minimum: 0, maximum: 1, default: 0.7 }),
    /**
     * near-duplicates are skipped: a frame whose 64-bit difference hash is within this many bits of
     * one of the camera's `dedupRecent` last kept frames and whose detections lie in the same cells
     * of an 8×8 grid (a fixed camera's hash barely changes when people move; see layoutOf)
     */
    dedupBits: Type.Integer({ minimum: 0, maximum: 64, default: 6 }),
    dedupRecent: Type.Integer({ minimum: 1, maximum: 256, default: 32 }),
    /** JPEG quality of a harvested frame (full resolution, no drawing on it) */
    jpegQuality: Type.Integer({ minimum: 30, maximum: 100, default: 85 }),
  },
  { additionalProperties: false, default: {} },
);

export type HarvestConfig = Type.Static<typeof HarvestConfigSchema>;

/** the defaults, for callers without a config file (benchmarks, tests) */
export const DEFAULT_HARVEST_CONFIG: HarvestConfig = compileSchema(HarvestConfigSchema).withDefaults(
  {},
) as HarvestConfig;
