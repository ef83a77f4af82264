import Type from 'typebox';
import { compileSchema } from '../common/schema.ts';

/**
 * The live view contract. Nothing listens on the box: the control plane asks it over MQTT
 * (`live-start` on its command topic) to open an outbound WebSocket to `httpPaths.liveUpload`
 * with its own credential (`Authorization: Bearer`) and the box's TLS settings, and streams one
 * camera over it until the control plane closes it (no viewer left) or sends `live-stop`.
 *
 * Formats:
 * - `fmp4`: the camera's own H.264, not transcoded, remuxed into fragmented MP4 for the browser's
 *   Media Source Extensions;
 * - `mpeg1`: MPEG-1 video in MPEG-TS (transcoded on the box by ffmpeg) for JSMpeg, for browsers
 *   without MSE.
 *
 * On the box's socket, text frames are LiveDeviceMessage JSON; binary frames are media, their
 * first byte a LIVE_CHUNK kind and the rest the bytes: the fMP4 init segment (ftyp + moov), a
 * fragment (moof + mdat) that starts with a key frame or one that does not, or a piece of MPEG-TS.
 * The control plane relays them to viewers (text status frames, then binary media without the
 * kind byte, the init segment first).
 */

export const LIVE_FORMATS = ['fmp4', 'mpeg1'] as const;
export type LiveFormat = (typeof LIVE_FORMATS)[number];

/** the first byte of a binary frame from the box */
export const LIVE_CHUNK = { init: 1, keyFragment: 2, fragment: 3, mpegts: 4 } as const;

/** a WebSocket frame from the box is at most this large (one fragment of a few frames) */
export const MAX_LIVE_FRAME_BYTES = 4 * 1024 * 1024;

const StreamId = Type.String({
  pattern: '^[A-Za-z0-9_-]{8,64}$',
  description: 'chosen by the control plane; names the WebSocket the box opens for it',
});
const CameraId = Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' });

/** the args of the `live-start` command */
export const LiveStartSchema = Type.Object(
  {
    stream: StreamId,
    camera: CameraId,
    format: Type.Enum(LIVE_FORMATS),
  },
  { additionalProperties: false },
);

/** the args of the `live-stop` command */
export const LiveStopSchema = Type.Object({ stream: StreamId }, { additionalProperties: false });

/** text frames box → control plane */
export const LiveDeviceMessageSchema = Type.Union([
  /** precedes the fMP4 init segment: the MIME type with codecs, for MediaSource.addSourceBuffer */
  Type.Object(
    {
      type: Type.Literal('init'),
      mime: Type.String({ pattern: '^video/mp4; codecs="avc1\\.[0-9a-f]{6}"$', maxLength: 64 }),
    },
    { additionalProperties: false },
  ),
  /** the camera's stream is (again) flowing, or cannot be read (the box retries) */
  Type.Object(
    {
      type: Type.Literal('status'),
      state: Type.Enum(['live', 'offline']),
      reason: Type.Optional(Type.String({ maxLength: 500 })),
    },
    { additionalProperties: false },
  ),
]);

export type LiveStart = Type.Static<typeof LiveStartSchema>;
export type LiveStop = Type.Static<typeof LiveStopSchema>;
export type LiveDeviceMessage = Type.Static<typeof LiveDeviceMessageSchema>;

/**
 * text frames control plane → viewer: `init` (then the init segment as a binary frame), and the
 * state of the stream (`starting` until the box sends, `offline` with why: the camera, the box)
 */
export type LiveViewerMessage =
  | { type: 'init'; mime: string }
  | { type: 'status'; state: 'starting' | 'live' | 'offline' | 'ended'; reason?: string };

export const liveValidators = {
  start: compileSchema<LiveStart>(LiveStartSchema),
  stop: compileSchema<LiveStop>(LiveStopSchema),
  deviceMessage: compileSchema<LiveDeviceMessage>(LiveDeviceMessageSchema),
};
