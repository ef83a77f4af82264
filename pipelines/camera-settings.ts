import Type from 'typebox';

/** One camera of a box, as written in the device config. The scene file says what to look for. */
export const CameraSettingsSchema = Type.Object(
  {
    id: Type.String({
      pattern: '^[a-z0-9][a-z0-9_-]{0,62}$',
      description: 'unique on the box; used in topics and events',
    }),
    /** rtsp://…, file:///… or a path, v4l2:///dev/videoN, test://pattern */
    url: Type.String({ minLength: 1 }),
    /** scene file (YAML), relative to the config file */
    scene: Type.String({ minLength: 1 }),
    /** frames per second run through the detector */
    detectFps: Type.Number({ exclusiveMinimum: 0, maximum: 60, default: 5 }),
    /** file sources: start again at the end (demo and soak tests) */
    loop: Type.Boolean({ default: false }),
    /** no frame for this long counts as a stall and the camera is reconnected */
    stallTimeoutS: Type.Number({ exclusiveMinimum: 0, default: 5 }),
    rtspTransport: Type.Union([Type.Literal('tcp'), Type.Literal('udp')], { default: 'tcp' }),
    /** `auto` prefers a hardware decoder when the box has one */
    decoder: Type.Union([Type.Literal('auto'), Type.Literal('software')], { default: 'auto' }),
    enabled: Type.Boolean({ default: true }),
  },
  { additionalProperties: false },
);

export type CameraSettings = Type.Static<typeof CameraSettingsSchema>;
