import Type from 'typebox';
import { httpPaths } from '../../../contract/index.ts';
import type { CommandRecord } from '../../storage/repository.ts';
import { type ApiContext, type App, isoOrNull } from '../context.ts';
import {
  CommandHistoryPage,
  CommandHistoryQuery,
  CommandName,
  CommandRequest,
  CommandView,
  DeviceId,
  ErrorBody,
} from '../schemas.ts';

function view(c: CommandRecord) {
  return {
    id: c.id,
    device: c.device,
    name: c.name,
    args: c.args,
    issuedAt: isoOrNull(c.issuedAt),
    result: c.result,
    resultAt: isoOrNull(c.resultAt),
    resultUrl: httpPaths.commandResult(c.id),
  };
}

export function commandRoutes(app: App, ctx: ApiContext): void {
  app.post(
    '/api/v1/devices/:id/commands/:name',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['commands'],
        summary: 'send a command to a device (QoS 1 on its cmd topic); answers the command id',
        description:
          'Body `{"args": {...}}` (e.g. `{"args": {"camera": "cam-1"}}` for snapshot and restart-camera). The result appears at resultUrl once the device answers.',
        params: Type.Object({ id: DeviceId, name: CommandName }),
        body: CommandRequest,
        response: { 202: CommandView, 400: ErrorBody, 404: ErrorBody, 413: ErrorBody, 502: ErrorBody },
      },
    },
    async (req, reply) => {
      const { id, name } = req.params;
      if (!(await ctx.repo.getDevice(id)))
        return reply
          .code(404)
          .send({ error: `no device "${id}" has connected`, hint: 'GET /api/v1/devices lists them' });
      const command = await ctx.commands.send(id, name, req.body.args);
      return reply.code(202).send(view(command));
    },
  );

  app.get(
    '/api/v1/devices/:id/commands',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['commands'],
        summary: 'the commands sent to a device, with their results, newest first',
        description: `Kept for retention.commands; pass the previous page's \`nextCursor\` as \`cursor\`.`,
        params: Type.Object({ id: DeviceId }),
        querystring: CommandHistoryQuery,
        response: { 200: CommandHistoryPage },
      },
    },
    async (req) => {
      const { limit, cursor } = req.query;
      const commands = await ctx.history.commands({ device: req.params.id, before: cursor, limit });
      const last = commands.at(-1);
      return {
        commands: commands.map(view),
        nextCursor: commands.length === limit && last ? last.id : null,
      };
    },
  );

  app.get(
    '/api/v1/commands/:id',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['commands'],
        summary: 'a command and, once the device answered, its result',
        params: Type.Object({ id: Type.String({ minLength: 8, maxLength: 64 }) }),
        response: { 200: CommandView, 404: ErrorBody },
      },
    },
    async (req, reply) => {
      const command = await ctx.repo.getCommand(req.params.id);
      if (!command) return reply.code(404).send({ error: `no command ${req.params.id}` });
      return view(command);
    },
  );
}
