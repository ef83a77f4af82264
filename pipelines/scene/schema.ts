import Type from 'typebox';
import type { RULE_TYPES } from '../../contract/payloads.ts';

/**
 * A scene: what one camera looks for — which classes, how to track them and which rules turn
 * tracks into events. A new scene is a new YAML file, not code. Coordinates are fractions of the
 * frame (x right, y down, 0..1), so a scene survives a change of stream resolution.
 */

const Coordinate = Type.Number({ minimum: 0, maximum: 1 });
const PointSchema = Type.Tuple([Coordinate, Coordinate], { description: '[x, y] as fractions of the frame' });
const Polygon = Type.Array(PointSchema, {
  minItems: 3,
  description:
    '[[x, y], …]: at least 3 vertices in order around the area, as fractions of the frame (0..1); must not cross itself',
});
const RuleId = Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' });
const Seconds = Type.Number({ exclusiveMinimum: 0 });

const common = {
  id: RuleId,
  /** object classes the rule applies to (default: every class the scene tracks) */
  classes: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
  /** detections below this score do not trigger the rule (default: the scene's minScore) */
  minScore: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
};

export const ZoneRuleSchema = Type.Object(
  { ...common, type: Type.Literal('zone'), polygon: Polygon },
  {
    additionalProperties: false,
    description: 'an object entering (new) and leaving (end) a zone; occupancy count',
  },
);

export const LineRuleSchema = Type.Object(
  {
    ...common,
    type: Type.Literal('line'),
    /** directed segment A→B. Standing at A looking at B, moving from left to right is "in" */
    line: Type.Tuple([PointSchema, PointSchema], {
      description: '[[x, y], [x, y]]: from A to B, as fractions of the frame (0..1)',
    }),
    /** which crossing directions raise events (both are always counted) */
    directions: Type.Array(Type.Union([Type.Literal('in'), Type.Literal('out')]), {
      minItems: 1,
      default: ['in', 'out'],
    }),
    /**
     * dead band either side of the line, as a fraction of the frame: an object counts as having
     * crossed only once it is this far on the other side, so jitter on the line counts nothing
     */
    hysteresis: Type.Number({ minimum: 0, maximum: 0.2, default: 0.01 }),
  },
  { additionalProperties: false, description: 'an object crossing a line, with direction; in/out counts' },
);

export const LoiteringRuleSchema = Type.Object(
  { ...common, type: Type.Literal('loitering'), polygon: Polygon, seconds: Seconds },
  { additionalProperties: false, description: 'an object staying in a zone longer than `seconds`' },
);

export const CrowdingRuleSchema = Type.Object(
  {
    ...common,
    type: Type.Literal('crowding'),
    polygon: Polygon,
    /** more than this many objects … */
    count: Type.Integer({ minimum: 1 }),
    /** … for longer than this */
    seconds: Seconds,
    /** the crowd is over once the count stays at or below `count` for this long */
    clearSeconds: Type.Number({ minimum: 0, default: 2 }),
  },
  {
    additionalProperties: false,
    description: 'more than `count` objects in a zone for longer than `seconds`',
  },
);

export const WrongWayRuleSchema = Type.Object(
  {
    ...common,
    type: Type.Literal('wrong-way'),
    /** where the rule applies (default: the whole frame) */
    polygon: Type.Optional(Polygon),
    /** the allowed direction of travel as a vector [dx, dy] in frame coordinates */
    direction: Type.Tuple([Type.Number(), Type.Number()]),
    /** movement more than 90° + this many degrees away from `direction` is wrong-way */
    toleranceDeg: Type.Number({ minimum: 0, maximum: 89, default: 30 }),
    /** ignore jitter: the object must move at least this far (fraction of the frame) within `windowSeconds` */
    minDisplacement: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.03 }),
    windowSeconds: Type.Number({ exclusiveMinimum: 0, default: 1 }),
  },
  { additionalProperties: false, description: 'an object moving against the allowed direction' },
);

export const StationaryRuleSchema = Type.Object(
  {
    ...common,
    type: Type.Literal('stationary'),
    /** where the rule applies (default: the whole frame) */
    polygon: Type.Optional(Polygon),
    /** not moving for longer than this raises the event */
    seconds: Seconds,
    /** "not moving": the box centre stays within this fraction of the box height */
    maxMovement: Type.Number({ exclusiveMinimum: 0, maximum: 2, default: 0.25 }),
  },
  {
    additionalProperties: false,
    description: 'an object not moving for longer than `seconds` (parked too long)',
  },
);

export const RULE_SCHEMAS = {
  zone: ZoneRuleSchema,
  line: LineRuleSchema,
  loitering: LoiteringRuleSchema,
  crowding: CrowdingRuleSchema,
  'wrong-way': WrongWayRuleSchema,
  stationary: StationaryRuleSchema,
} as const satisfies Record<(typeof RULE_TYPES)[number], unknown>;

export const TrackerSettingsSchema = Type.Object(
  {
    /** detections at or above this start and confirm tracks */
    highScore: Type.Number({ minimum: 0, maximum: 1, default: 0.5 }),
    /** detections between lowScore and highScore only extend existing tracks (ByteTrack's second pass) */
    lowScore: Type.Number({ minimum: 0, maximum: 1, default: 0.25 }),
    /** minimum IoU between a predicted track box and a detection to match them */
    matchIou: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.25 }),
    /** a track unmatched for this long is ended */
    maxAgeSeconds: Type.Number({ exclusiveMinimum: 0, default: 1.5 }),
    /** matches needed before a track is reported */
    minHits: Type.Integer({ minimum: 1, default: 2 }),
  },
  { additionalProperties: false },
);

export const MotionSettingsSchema = Type.Object(
  {
    enabled: Type.Boolean({ default: true }),
    /** grey-level difference (0–255) from the background that counts a cell as changed */
    pixelThreshold: Type.Integer({ minimum: 1, maximum: 255, default: 20 }),
    /** share of the frame that must change to count as motion */
    minAreaShare: Type.Number({ minimum: 0, maximum: 1, default: 0.0015 }),
    /**
     * look again at every tracked object at least this often, moving or not, so that stationary
     * objects stay tracked: at the regions of the tracked objects that are not moving (with
     * `regions`; postponed to a frame where they fit in `maxRegionShare`), else at the whole frame
     */
    refreshSeconds: Type.Number({ exclusiveMinimum: 0, default: 1 }),
    /** with `regions`: detect the whole frame at least this often, for objects that appeared without moving */
    wholeFrameSeconds: Type.Number({ exclusiveMinimum: 0, default: 5 }),
    /**
     * detect only the moving regions of a frame and the regions of tracked objects (live cameras
     * pack the regions of several cameras into one model input); otherwise the whole frame
     * whenever anything moves
     */
    regions: Type.Boolean({ default: true }),
    /** regions covering more of the frame than this are detected as the whole frame */
    maxRegionShare: Type.Number({ minimum: 0, maximum: 1, default: 0.5 }),
  },
  { additionalProperties: false },
);

export const SceneSchema = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    description: Type.Optional(Type.String()),
    /** object classes the scene tracks (default: every class the model knows) */
    classes: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
    /** detections below this score are ignored */
    minScore: Type.Number({ minimum: 0, maximum: 1, default: 0.4 }),
    /** the point of an object that zones and lines test: its feet or its centre */
    anchor: Type.Union([Type.Literal('bottom-center'), Type.Literal('center')], { default: 'bottom-center' }),
    tracker: Type.Object(TrackerSettingsSchema.properties, { additionalProperties: false, default: {} }),
    motion: Type.Object(MotionSettingsSchema.properties, { additionalProperties: false, default: {} }),
    snapshots: Type.Object(
      {
        enabled: Type.Boolean({ default: true }),
        quality: Type.Integer({ minimum: 10, maximum: 100, default: 80 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** while an event lasts, an update is sent at most this often */
    updateSeconds: Type.Number({ exclusiveMinimum: 0, default: 10 }),
    rules: Type.Array(Type.Object({ type: Type.String() }), { minItems: 1 }),
  },
  { additionalProperties: false },
);

export type ZoneRule = Type.Static<typeof ZoneRuleSchema>;
export type LineRule = Type.Static<typeof LineRuleSchema>;
export type LoiteringRule = Type.Static<typeof LoiteringRuleSchema>;
export type CrowdingRule = Type.Static<typeof CrowdingRuleSchema>;
export type WrongWayRule = Type.Static<typeof WrongWayRuleSchema>;
export type StationaryRule = Type.Static<typeof StationaryRuleSchema>;
export type Rule = ZoneRule | LineRule | LoiteringRule | CrowdingRule | WrongWayRule | StationaryRule;
export type TrackerSettings = Type.Static<typeof TrackerSettingsSchema>;
export type MotionSettings = Type.Static<typeof MotionSettingsSchema>;

/** a validated scene; rules are typed by their `type` */
export type Scene = Omit<Type.Static<typeof SceneSchema>, 'rules'> & { rules: Rule[] };
