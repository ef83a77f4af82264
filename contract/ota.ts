import Type from 'typebox';
import { compileSchema } from '../common/schema.ts';
import { CONTRACT_BOUNDS } from './bounds.ts';
import { CONTRACT_VERSION, DEVICE_ID_PATTERN } from './topics.ts';

/**
 * The over-the-air update contract. The control plane assigns an artifact (a signed model or
 * scene bundle from its registry) to a device with the `update` command on the device's command
 * topic (QoS 1); `update-cancel` withdraws an assignment the device has not committed. The device
 * reports every step of an assignment on its `update` topic (QoS 1, written to the spool before it
 * is published, like events), one UpdateStatus per state change, in `seq` order:
 *
 *   queued → downloading → verifying → shadow → installing → health → committed
 *                                    ↘ failed (reason)          ↘ rolled-back (reason)
 *
 * `shadow` is the candidate model run beside the current one on live frames (scenes skip it);
 * `health` is the window after the swap in which the box compares its figures with those from
 * before. A device reports `committed` only after the health window passed. `timed-out` is never
 * sent by a device: the control plane gives it to an assignment whose device did not reach a
 * final state before its deadline. `canceled` answers `update-cancel` (or the assignment was
 * replaced) before anything was installed.
 */

const B = CONTRACT_BOUNDS;
const V = Type.Literal(CONTRACT_VERSION);
const Timestamp = Type.String({ format: 'date-time', maxLength: 40, description: 'RFC 3339 with a zone' });
const Id = (description: string) => Type.String({ pattern: '^[A-Za-z0-9_-]{8,64}$', description });
const Ratio = (description: string) => Type.Number({ minimum: 0, maximum: 1000, description });
const Share = (description: string) => Type.Number({ minimum: 0, maximum: 1, description });

export const ARTIFACT_KINDS = ['model', 'scene'] as const;
export type ArtifactKind = (typeof ARTIFACT_KINDS)[number];

export const UPDATE_STATES = [
  'queued',
  'downloading',
  'verifying',
  'shadow',
  'installing',
  'health',
  'committed',
  'failed',
  'rolled-back',
  'canceled',
  'timed-out',
] as const;
export type UpdateState = (typeof UPDATE_STATES)[number];
/** states after which nothing more happens to an assignment */
export const FINAL_UPDATE_STATES: readonly UpdateState[] = [
  'committed',
  'failed',
  'rolled-back',
  'canceled',
  'timed-out',
];

/** what the candidate model must show in shadow validation before the box swaps to it */
export const ShadowThresholdsSchema = Type.Object(
  {
    frames: Type.Integer({
      minimum: 1,
      maximum: 10_000,
      description: 'live frames, sampled from the cameras, that both models run on',
    }),
    minAgreement: Share("mAP@0.5 of the candidate's detections against the current model's"),
    maxLatencyRatio: Ratio("candidate p50 latency over the current model's"),
    timeoutS: Type.Integer({
      minimum: 1,
      maximum: 86_400,
      description: 'the shadow step fails if the frames are not gathered and run in this time',
    }),
  },
  { additionalProperties: false },
);

/** what the box must keep after the swap, through the health window, or it rolls back */
export const HealthThresholdsSchema = Type.Object(
  {
    windowS: Type.Integer({ minimum: 1, maximum: 86_400, description: 'seconds watched after the swap' }),
    minDetectFpsRatio: Ratio('detect fps after over before, summed over the cameras'),
    maxDetectLatencyRatio: Ratio('detect latency p50 after over before'),
    maxDetectorRestarts: Type.Integer({
      minimum: 0,
      maximum: B.int32,
      description: 'detector thread restarts tolerated in the window',
    }),
    minEventRateRatio: Type.Optional(
      Ratio('events per minute after over before; only judged when there were events before'),
    ),
  },
  { additionalProperties: false },
);

export const ArtifactRefSchema = Type.Object(
  {
    id: Type.String({ pattern: '^[0-9a-f]{64}$', description: "the bundle file's sha256 (content address)" }),
    kind: Type.Enum(ARTIFACT_KINDS),
    name: Type.String({ pattern: '^[a-z0-9][a-z0-9._-]*$', maxLength: B.name }),
    version: Type.Integer({ minimum: 1, maximum: B.int32 }),
    bytes: Type.Integer({ minimum: 1, maximum: B.counter }),
  },
  { additionalProperties: false },
);

/** the args of the `update` command */
export const UpdateAssignmentSchema = Type.Object(
  {
    assignment: Id('unique per device and rollout; every status of this update names it'),
    rollout: Id('the rollout this assignment belongs to'),
    artifact: ArtifactRefSchema,
    /** a scene artifact: the cameras that take it (every enabled camera when absent) */
    cameras: Type.Optional(
      Type.Array(Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' }), { maxItems: B.items }),
    ),
    /** model artifacts only */
    shadow: Type.Optional(ShadowThresholdsSchema),
    health: HealthThresholdsSchema,
    /** download at once; install not before this time (absent: right after verification) */
    installAt: Type.Optional(Timestamp),
    /** the control plane ends the assignment as timed-out after this; the device gives up too */
    deadline: Timestamp,
  },
  { additionalProperties: false },
);

/** the args of the `update-cancel` command */
export const UpdateCancelSchema = Type.Object(
  { assignment: Id('the assignment to withdraw') },
  { additionalProperties: false },
);

export const ShadowFiguresSchema = Type.Object(
  {
    frames: Type.Integer({ minimum: 0, maximum: 10_000 }),
    agreement: Share('mAP@0.5 of the candidate against the current model'),
    candidateLatencyMs: Type.Number({ minimum: 0, maximum: B.magnitude }),
    currentLatencyMs: Type.Number({ minimum: 0, maximum: B.magnitude }),
    latencyRatio: Ratio('candidate over current'),
  },
  { additionalProperties: false },
);

export const HealthFiguresSchema = Type.Object(
  {
    elapsedS: Type.Number({ minimum: 0, maximum: B.magnitude }),
    detectFpsBefore: Type.Number({ minimum: 0, maximum: B.magnitude }),
    detectFpsAfter: Type.Number({ minimum: 0, maximum: B.magnitude }),
    detectLatencyMsBefore: Type.Number({ minimum: 0, maximum: B.magnitude }),
    detectLatencyMsAfter: Type.Number({ minimum: 0, maximum: B.magnitude }),
    detectorRestarts: Type.Integer({ minimum: 0, maximum: B.int32 }),
    eventsPerMinBefore: Type.Number({ minimum: 0, maximum: B.magnitude }),
    eventsPerMinAfter: Type.Number({ minimum: 0, maximum: B.magnitude }),
  },
  { additionalProperties: false },
);

/** one step of an assignment, device → control plane on `argus/v1/<device>/update` */
export const UpdateStatusSchema = Type.Object(
  {
    v: V,
    id: Id('unique id of this status message'),
    device: Type.String({ pattern: DEVICE_ID_PATTERN }),
    assignment: Id('the assignment'),
    rollout: Id('its rollout'),
    artifact: ArtifactRefSchema,
    seq: Type.Integer({ minimum: 0, maximum: B.int32, description: 'per assignment, +1 per status' }),
    state: Type.Enum(UPDATE_STATES),
    at: Timestamp,
    /** failed, rolled-back, canceled: why, in words an operator can act on */
    reason: Type.Optional(Type.String({ maxLength: B.text, pattern: '^[^\\u0000]*$' })),
    /** downloading */
    progress: Type.Optional(
      Type.Object(
        {
          bytes: Type.Integer({ minimum: 0, maximum: B.counter }),
          total: Type.Integer({ minimum: 0, maximum: B.counter }),
        },
        { additionalProperties: false },
      ),
    ),
    shadow: Type.Optional(ShadowFiguresSchema),
    health: Type.Optional(HealthFiguresSchema),
  },
  { additionalProperties: false },
);

export type ShadowThresholds = Type.Static<typeof ShadowThresholdsSchema>;
export type HealthThresholds = Type.Static<typeof HealthThresholdsSchema>;
export type ArtifactRef = Type.Static<typeof ArtifactRefSchema>;
export type UpdateAssignment = Type.Static<typeof UpdateAssignmentSchema>;
export type UpdateCancel = Type.Static<typeof UpdateCancelSchema>;
export type ShadowFigures = Type.Static<typeof ShadowFiguresSchema>;
export type HealthFigures = Type.Static<typeof HealthFiguresSchema>;
export type UpdateStatus = Type.Static<typeof UpdateStatusSchema>;

export const otaValidators = {
  assignment: compileSchema<UpdateAssignment>(UpdateAssignmentSchema),
  cancel: compileSchema<UpdateCancel>(UpdateCancelSchema),
  update: compileSchema<UpdateStatus>(UpdateStatusSchema),
};
