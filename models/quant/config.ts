import Type from 'typebox';
import { loadConfigFile } from '../../common/config-file.ts';
import { compileSchema } from '../../common/schema.ts';
import { DEFAULT_CALIBRATION_FRAMES } from './frames.ts';

/**
 * How a model is quantized. Every field has a default, so an empty file (or no file) gives the
 * configuration measured best for NanoDet-g on this product's CPUs (see BENCHMARKS.md).
 */
export const QuantizeConfigSchema = Type.Object(
  {
    activations: Type.Object(
      {
        /** uint8 asymmetric (ORT's fast path on x86) or int8 symmetric */
        type: Type.Union([Type.Literal('uint8'), Type.Literal('int8')], { default: 'uint8' }),
        /** how an activation's range is chosen from the calibration frames */
        calibration: Type.Union([Type.Literal('minmax'), Type.Literal('percentile')], {
          default: 'percentile',
        }),
        /** for `percentile`: share of values (in %) kept inside the range; both tails are clipped */
        percentile: Type.Number({ minimum: 90, maximum: 100, default: 99.999 }),
      },
      { additionalProperties: false, default: {} },
    ),
    weights: Type.Object(
      {
        /** one int8 scale per Conv output channel (else one per weight tensor) */
        perChannel: Type.Boolean({ default: true }),
      },
      { additionalProperties: false, default: {} },
    ),
    keepFloat: Type.Object(
      {
        /** keep the last Conv before each graph output (the detection heads) and what follows it in float */
        outputHeads: Type.Boolean({ default: false }),
        /** further nodes to keep in float, by name; `*` matches any run of characters */
        nodes: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
      },
      { additionalProperties: false, default: {} },
    ),
    /**
     * feed the raw uint8 frame to the first Conv, with the input normalisation folded into its
     * weights (exact except on the one-pixel padding ring; removes a float pass over the frame)
     */
    foldInputNormalization: Type.Boolean({ default: true }),
    /** recording the calibration frames are taken from (default: the sample street video vtest.avi) */
    calibrationVideo: Type.Optional(Type.String({ minLength: 1 })),
    /** calibration frames, FIRST-LAST/STEP of the calibration video */
    calibrationFrames: Type.String({ pattern: '^\\d+-\\d+(/\\d+)?$', default: DEFAULT_CALIBRATION_FRAMES }),
  },
  { additionalProperties: false },
);

export type QuantizeConfig = Type.Static<typeof QuantizeConfigSchema>;

export const quantizeConfigValidator = compileSchema<QuantizeConfig>(QuantizeConfigSchema);

/** the defaults, with any fields of `partial` applied (validated) */
export function quantizeConfig(partial: unknown = {}): QuantizeConfig {
  return quantizeConfigValidator.parse(quantizeConfigValidator.withDefaults(partial), 'quantization config');
}

/** reads a YAML or JSON quantization config; problems are reported with file, line and column */
export async function loadQuantizeConfig(file: string): Promise<QuantizeConfig> {
  return (await loadConfigFile(file, quantizeConfigValidator, 'quantization config')).value;
}
