import Type from 'typebox';
import { compileSchema } from '../../common/schema.ts';
import {
  ARTIFACT_KINDS,
  DEVICE_ID_PATTERN,
  HealthThresholdsSchema,
  type ShadowThresholds,
  ShadowThresholdsSchema,
} from '../../contract/index.ts';

/**
 * What an operator asks for when starting a rollout (the body of POST /api/v1/rollouts, the
 * `--spec` file of `argus rollouts create`). One schema is the validation, the type and the docs.
 */

export const LABEL_NAME_PATTERN = '^[a-z][a-z0-9_.-]{0,62}$';
export const LABEL_VALUE_PATTERN = '^[A-Za-z0-9_.:+/-]{1,128}$';
/** the label that gives a device's local time zone: an IANA zone (`Europe/Paris`) or an offset (`+05:30`) */
export const TIME_ZONE_LABEL = 'tz';
/** labels per device at most */
export const MAX_LABELS = 32;
/** devices one rollout targets at most */
export const MAX_ROLLOUT_DEVICES = 20_000;
/** waves of one rollout at most */
export const MAX_WAVES = 50;

const Share = (description: string, dflt?: number) =>
  Type.Number({ minimum: 0, maximum: 1, description, ...(dflt === undefined ? {} : { default: dflt }) });

export const LabelsSchema = Type.Record(
  Type.String({ pattern: LABEL_NAME_PATTERN }),
  Type.String({ pattern: LABEL_VALUE_PATTERN }),
  {
    maxProperties: MAX_LABELS,
    description: 'label name → value, e.g. {"site": "north", "tz": "Europe/Paris"}',
  },
);

const HourMinute = Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$', description: 'HH:MM' });

export const RolloutRequestSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100, pattern: '^[^\\u0000-\\u001f]*$' }),
    artifact: Type.Object(
      {
        kind: Type.Enum(ARTIFACT_KINDS),
        name: Type.String({ pattern: '^[a-z0-9][a-z0-9._-]*$', maxLength: 64 }),
        version: Type.Integer({ minimum: 1, maximum: 2 ** 31 - 1 }),
      },
      { additionalProperties: false, description: "the registry's artifact; each device gets its variant" },
    ),
    target: Type.Object(
      {
        devices: Type.Optional(
          Type.Array(Type.String({ pattern: DEVICE_ID_PATTERN }), {
            minItems: 1,
            maxItems: MAX_ROLLOUT_DEVICES,
          }),
        ),
        labels: Type.Optional(LabelsSchema),
        hardwareClass: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
      },
      {
        additionalProperties: false,
        description:
          'devices that match every filter given (ids, every label, hardware class of their identity); at least one filter',
      },
    ),
    waves: Type.Object(
      {
        canary: Type.Optional(
          Type.Object(
            {
              devices: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_ROLLOUT_DEVICES })),
              percent: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 100 })),
            },
            { additionalProperties: false, description: 'the first wave: N devices, or X % of the target' },
          ),
        ),
        rate: Type.Union(
          [
            Type.Object(
              { kind: Type.Literal('constant'), share: Type.Number({ exclusiveMinimum: 0, maximum: 1 }) },
              { additionalProperties: false },
            ),
            Type.Object(
              {
                kind: Type.Literal('exponential'),
                first: Type.Number({ exclusiveMinimum: 0, maximum: 1 }),
                factor: Type.Number({ minimum: 1, maximum: 100 }),
              },
              { additionalProperties: false },
            ),
          ],
          {
            default: { kind: 'constant', share: 1 },
            description:
              'after the canary, each wave takes `share` of the target (constant), or `first` × factor^i of it (exponential); the last takes the rest',
          },
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    success: Type.Object(
      {
        share: Share('the wave succeeds when this share of it committed (and stayed healthy for healthS)', 1),
        healthS: Type.Integer({
          minimum: 0,
          maximum: 86_400,
          default: 0,
          description: 'after the share committed, the control plane watches the committed devices this long',
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    error: Type.Object(
      {
        share: Type.Optional(Share('the wave fails when this share of it failed, rolled back or timed out')),
        count: Type.Optional(
          Type.Integer({ minimum: 1, maximum: MAX_ROLLOUT_DEVICES, description: '… or this many devices' }),
        ),
      },
      { additionalProperties: false, default: { share: 0.2 } },
    ),
    onSuccess: Type.Union([Type.Literal('next'), Type.Literal('pause')], { default: 'next' }),
    onError: Type.Union([Type.Literal('pause'), Type.Literal('abort')], {
      default: 'pause',
      description:
        'abort cancels what is not installed and assigns the previous version to committed devices',
    }),
    deviceTimeoutS: Type.Integer({
      minimum: 10,
      maximum: 30 * 86_400,
      default: 3600,
      description: 'a device not final this long after its assignment was sent ends timed-out',
    }),
    shadow: Type.Optional(
      Type.Union([ShadowThresholdsSchema, Type.Literal(false)], {
        description:
          'model artifacts: the shadow step on live frames (DEFAULT_SHADOW when absent); false: none, for boxes without cameras (their host cannot run a candidate on live frames), the health window still judges',
      }),
    ),
    health: Type.Object(HealthThresholdsSchema.properties, {
      additionalProperties: false,
      default: { windowS: 60, minDetectFpsRatio: 0.8, maxDetectLatencyRatio: 1.5, maxDetectorRestarts: 0 },
    }),
    maintenance: Type.Optional(
      Type.Object(
        { start: HourMinute, end: HourMinute },
        {
          additionalProperties: false,
          description: `assignments are sent only between start and end in the device's local time (its "${TIME_ZONE_LABEL}" label, UTC without one); end before start crosses midnight`,
        },
      ),
    ),
    installAt: Type.Optional(
      Type.String({
        format: 'date-time',
        maxLength: 40,
        description: 'download now, install not before this',
      }),
    ),
    cameras: Type.Optional(
      Type.Array(Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' }), {
        minItems: 1,
        maxItems: 64,
        description: 'scene artifacts: the cameras that take it (every enabled camera when absent)',
      }),
    ),
  },
  { additionalProperties: false },
);

export type RolloutRequest = Type.Static<typeof RolloutRequestSchema>;
export const rolloutRequest = compileSchema<RolloutRequest>(RolloutRequestSchema);

export const DEFAULT_SHADOW: ShadowThresholds = {
  frames: 50,
  minAgreement: 0.8,
  maxLatencyRatio: 1.5,
  timeoutS: 600,
};

/**
 * The sizes of the waves for `total` devices: the canary (N devices or X %, at least one), then
 * waves of the rate's share of the total (constant) or growing by its factor (exponential), the
 * last taking what is left; never more than MAX_WAVES (the last then takes the rest). Every size
 * is ≥ 1 and they sum to `total`.
 */
export function planWaves(total: number, waves: RolloutRequest['waves']): number[] {
  if (total <= 0) return [];
  const sizes: number[] = [];
  let left = total;
  const canary = waves.canary;
  if (canary?.devices !== undefined || canary?.percent !== undefined) {
    const n = canary.devices !== undefined ? canary.devices : Math.ceil((canary.percent! / 100) * total);
    const size = Math.min(left, Math.max(1, n));
    sizes.push(size);
    left -= size;
  }
  const rate = waves.rate;
  for (let i = 0; left > 0; i++) {
    if (sizes.length === MAX_WAVES - 1) {
      sizes.push(left);
      break;
    }
    const share = rate.kind === 'constant' ? rate.share : rate.first * rate.factor ** i;
    const size = Math.min(left, Math.max(1, Math.ceil(share * total)));
    sizes.push(size);
    left -= size;
  }
  return sizes;
}

const OFFSET = /^(?:UTC)?([+-])([01][0-9]|2[0-3]):?([0-5][0-9])$/;

/** whether `zone` is a time zone the maintenance window understands (an IANA name or ±HH:MM) */
export function validTimeZone(zone: string): boolean {
  if (OFFSET.test(zone)) return true;
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** minutes since local midnight at `now` in `zone` (UTC when undefined) */
export function localMinutes(now: number, zone: string | undefined): number {
  const m = zone === undefined ? undefined : OFFSET.exec(zone);
  if (zone === undefined || m) {
    const offset = m ? (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) : 0;
    const minutes = Math.floor(now / 60_000) + offset;
    return ((minutes % 1440) + 1440) % 1440;
  }
  const parts = new Intl.DateTimeFormat('en-GB', {
    timeZone: zone,
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(new Date(now));
  const get = (t: string) => Number(parts.find((p) => p.type === t)?.value ?? 0);
  return get('hour') * 60 + get('minute');
}

const toMinutes = (hm: string): number => Number(hm.slice(0, 2)) * 60 + Number(hm.slice(3, 5));

/**
 * whether `now` is in the maintenance window in the device's local time; a window whose end is
 * before its start crosses midnight, one whose start equals its end is open all day
 */
export function inMaintenanceWindow(
  now: number,
  window: RolloutRequest['maintenance'],
  zone: string | undefined,
): boolean {
  if (!window) return true;
  const start = toMinutes(window.start);
  const end = toMinutes(window.end);
  if (start === end) return true;
  const t = localMinutes(now, zone !== undefined && validTimeZone(zone) ? zone : undefined);
  return start < end ? t >= start && t < end : t >= start || t < end;
}
