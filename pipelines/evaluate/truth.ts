import { readFile, stat } from 'node:fs/promises';
import Type from 'typebox';
import { ArgusError } from '../../common/errors.ts';
import { compileSchema } from '../../common/schema.ts';

/** bounds of a ground-truth file: it is read from disk, possibly someone else's */
const MAX_TRUTH_BYTES = 4 << 20;
const MAX_FRAME = 10_000_000;
const Frame = Type.Integer({ minimum: 0, maximum: MAX_FRAME });
const Fraction = Type.Number({ minimum: 0, maximum: 1 });
const PointSchema = Type.Tuple([Fraction, Fraction]);
const Id = Type.String({ minLength: 1, maxLength: 64 });
const Pixel = Type.Number({ minimum: -10_000, maximum: 100_000 });

/**
 * Ground truth of one recording, annotated by hand (test/fixtures/vtest-events-truth.json is one;
 * its `method` fields say how it was made and checked). Frames are 0-based indices of the decoded
 * recording; geometry is in frame fractions like a scene's, boxes in source pixels.
 */
export const EventTruthSchema = Type.Object(
  {
    source: Type.String({ maxLength: 1000 }),
    fps: Type.Number({ exclusiveMinimum: 0, maximum: 1000 }),
    frames: Type.Integer({ minimum: 1, maximum: MAX_FRAME }),
    width: Type.Integer({ minimum: 1, maximum: 100_000 }),
    height: Type.Integer({ minimum: 1, maximum: 100_000 }),
    method: Type.String({ maxLength: 4000 }),
    /** every person crossing each line: the frame at which the feet pass it, and the direction as the scene's line rule names it */
    lines: Type.Array(
      Type.Object(
        {
          rule: Id,
          line: Type.Tuple([PointSchema, PointSchema]),
          method: Type.String({ maxLength: 4000 }),
          crossings: Type.Array(
            Type.Object(
              {
                frame: Frame,
                direction: Type.Union([Type.Literal('in'), Type.Literal('out')]),
                note: Type.Optional(Type.String({ maxLength: 500 })),
              },
              { additionalProperties: false },
            ),
            { maxItems: 100_000 },
          ),
        },
        { additionalProperties: false },
      ),
      { maxItems: 64 },
    ),
    /** the number of people whose feet are inside each zone, at the listed frames */
    zones: Type.Array(
      Type.Object(
        {
          rule: Id,
          polygon: Type.Array(PointSchema, { minItems: 3, maxItems: 64 }),
          method: Type.String({ maxLength: 4000 }),
          counts: Type.Array(
            Type.Object(
              {
                frame: Frame,
                count: Type.Integer({ minimum: 0, maximum: 10_000 }),
                note: Type.Optional(Type.String({ maxLength: 500 })),
              },
              { additionalProperties: false },
            ),
            { maxItems: 100_000 },
          ),
        },
        { additionalProperties: false },
      ),
      { maxItems: 64 },
    ),
    /** person boxes with identities (the same id is the same person throughout) on some frames */
    identities: Type.Optional(
      Type.Object(
        {
          method: Type.String({ maxLength: 4000 }),
          /** only people whose feet (box bottom) lie below this fraction of the frame height are scored, annotated and found alike */
          minFeetY: Type.Optional(Fraction),
          frames: Type.Array(
            Type.Object(
              {
                frame: Frame,
                persons: Type.Array(
                  Type.Object(
                    { id: Type.Integer({ minimum: 0 }), box: Type.Tuple([Pixel, Pixel, Pixel, Pixel]) },
                    { additionalProperties: false },
                  ),
                  { maxItems: 1000 },
                ),
              },
              { additionalProperties: false },
            ),
            { maxItems: 100_000 },
          ),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export type EventTruth = Type.Static<typeof EventTruthSchema>;

const validator = compileSchema<EventTruth>(EventTruthSchema);

export async function loadEventTruth(file: string): Promise<EventTruth> {
  const size = (await stat(file)).size;
  if (size > MAX_TRUTH_BYTES) {
    throw new ArgusError(
      `${file}: a ground-truth file of ${size} bytes is larger than the ${MAX_TRUTH_BYTES} allowed`,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new ArgusError(
      `${file}: not JSON (${(err as Error).message}); a ground-truth file is one JSON object`,
    );
  }
  return validator.parse(data, `ground truth ${file}`);
}
