import websocket from '@fastify/websocket';
import type { FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { LIVE_FORMATS, MAX_LIVE_FRAME_BYTES } from '../../../contract/index.ts';
import { livePageHtml, playerBundle } from '../../live/page.ts';
import type { LiveRelay } from '../../live/relay.ts';
import type { App } from '../context.ts';
import { DeviceId, ErrorBody } from '../schemas.ts';

const CameraId = Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' });
const StreamId = Type.String({ pattern: '^[A-Za-z0-9_-]{8,64}$' });

/**
 * A browser sends its session cookie with a WebSocket to any site that embeds it: refuse a viewer
 * socket opened by a page of another origin (cross-site WebSocket hijacking; the cookie is
 * SameSite=Strict too).
 */
async function sameOrigin(req: FastifyRequest, reply: FastifyReply) {
  const origin = req.headers.origin;
  if (origin === undefined) return;
  let host: string | undefined;
  try {
    host = new URL(origin).host;
  } catch {
    host = undefined;
  }
  if (host !== req.headers.host)
    return reply.code(403).send({
      error: `a live view opened from ${origin.slice(0, 100)} is refused`,
      hint: 'open the console of this control plane',
    });
}

/**
 * The live view: the box's outbound stream socket (device credential, only for a stream the
 * relay asked that device for), the viewers' socket (viewer role or above, same origin), and a
 * page with the player for a camera (the console embeds the same player module).
 */
export async function liveRoutes(app: App, relay: LiveRelay): Promise<void> {
  // built now, so that the first viewer does not wait for it; a failure is answered to that viewer
  playerBundle().catch(() => undefined);
  await app.register(websocket, {
    options: { maxPayload: MAX_LIVE_FRAME_BYTES + 1, perMessageDeflate: false },
  });

  app.get(
    '/api/v1/devices/:device/live/:stream',
    {
      websocket: true,
      config: { access: 'device' },
      schema: {
        tags: ['live'],
        summary: 'the live stream of a camera, sent by the box (WebSocket, with its token)',
        description:
          'Opened by the device after a live-start command for the stream it names; refused (close 4403) for any other. Frames: contract/live.ts.',
        params: Type.Object({ device: DeviceId, stream: StreamId }),
        response: { 401: ErrorBody },
      },
    },
    (socket, req) => {
      req.raw.socket.setTimeout(0);
      relay.addDevice(req.params.device, req.params.stream, socket);
    },
  );

  app.get(
    '/api/v1/devices/:device/cameras/:camera/live',
    {
      websocket: true,
      config: { access: 'viewer' },
      preValidation: sameOrigin,
      schema: {
        tags: ['live'],
        summary: "a camera's live picture (WebSocket)",
        description: `format=fmp4 (default): JSON text frames {type: status|init}, then the fMP4 init segment and fragments as binary frames, for Media Source Extensions. format=mpeg1: MPEG-TS with MPEG-1 video for JSMpeg. Many viewers share one stream from the box; at most ${relay.settings.viewersPerCamera} per camera; a viewer more than ${relay.settings.bufferedBytesPerViewer} bytes behind is cut (close 4008).`,
        params: Type.Object({ device: DeviceId, camera: CameraId }),
        querystring: Type.Object({ format: Type.Optional(Type.Enum(LIVE_FORMATS)) }),
        response: { 401: ErrorBody, 403: ErrorBody },
      },
    },
    (socket, req) => {
      req.raw.socket.setTimeout(0);
      relay.addViewer(req.params.device, req.params.camera, req.query.format ?? 'fmp4', socket);
    },
  );

  app.get(
    '/api/v1/live',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['live'],
        summary: 'the live streams relayed now',
        response: {
          200: Type.Array(
            Type.Object({
              device: Type.String(),
              camera: Type.String(),
              format: Type.String(),
              state: Type.String(),
              viewers: Type.Integer(),
              boxConnected: Type.Boolean(),
            }),
          ),
        },
      },
    },
    async () => relay.list(),
  );

  app.get(
    '/live/:device/:camera',
    {
      config: { access: 'public' },
      schema: {
        tags: ['live'],
        summary: 'a page playing the live view of a camera (the stream itself needs a login)',
        params: Type.Object({ device: DeviceId, camera: CameraId }),
        querystring: Type.Object({ format: Type.Optional(Type.Enum(['auto', ...LIVE_FORMATS])) }),
      },
    },
    async (req, reply) =>
      reply
        .header('content-type', 'text/html; charset=utf-8')
        .header('cache-control', 'no-cache')
        .send(livePageHtml(req.params.device, req.params.camera, req.query.format ?? 'auto')),
  );

  app.get(
    '/live/player.js',
    { config: { access: 'public' }, schema: { tags: ['live'], summary: 'the live player (JavaScript)' } },
    async (_req, reply) =>
      reply
        .header('content-type', 'text/javascript; charset=utf-8')
        .header('cache-control', 'public, max-age=3600')
        .send(await playerBundle()),
  );
}
