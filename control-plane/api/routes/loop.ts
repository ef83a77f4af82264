import Type from 'typebox';
import { LOOP_RUN_CURSOR, LOOP_RUN_STATES, type LoopRun } from '../../loop/store.ts';
import { LABEL_VALUE_PATTERN } from '../../rollouts/spec.ts';
import type { ApiContext, App } from '../context.ts';
import { iso, isoOrNull } from '../context.ts';
import { refusals } from '../refusals.ts';
import { ErrorBody } from '../schemas.ts';

const RunId = Type.String({ pattern: '^[0-9a-f-]{36}$' });

const RunView = Type.Object({
  id: Type.String(),
  site: Type.String(),
  state: Type.Enum(LOOP_RUN_STATES),
  step: Type.Union([Type.String(), Type.Null()], {
    description: 'the loop step running or last run: collect, teacher, adapt, quantize, gate, sign',
  }),
  progress: Type.Number({ minimum: 0, maximum: 1, description: "of the step's work" }),
  message: Type.Union([Type.String(), Type.Null()]),
  reason: Type.Union([Type.String(), Type.Null()], { description: 'why it failed or was cancelled' }),
  cancelRequested: Type.Boolean(),
  passed: Type.Union([Type.Boolean(), Type.Null()], { description: 'whether the candidate passed the gate' }),
  artifact: Type.Union([Type.String(), Type.Null()], {
    description:
      'the signed candidate in the artifact registry (GET /api/v1/artifacts/:id), to roll out to the site',
  }),
  report: Type.Unknown({ description: "the loop's report: every step's figures" }),
  createdBy: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  startedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  endedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  updatedAt: Type.String({ format: 'date-time' }),
});

const view = (r: LoopRun) => ({
  id: r.id,
  site: r.site,
  state: r.state,
  step: r.step,
  progress: r.progress,
  message: r.message,
  reason: r.reason,
  cancelRequested: r.cancelRequested,
  passed: r.passed,
  artifact: r.artifact,
  report: r.report,
  createdBy: r.createdBy,
  createdAt: iso(r.createdAt),
  startedAt: isoOrNull(r.startedAt),
  endedAt: isoOrNull(r.endedAt),
  updatedAt: iso(r.updatedAt),
});

const actorOf = (req: { principal?: { name: string } }) => req.principal?.name ?? 'unknown';

/**
 * The data–model loop as a job: an operator queues a run for a site; a loop worker
 * (`argus loop worker`, a process of its own) executes it and registers a passing candidate in
 * the artifact registry. Writes are audited like every operator's change.
 */
export function loopRoutes(app: App, ctx: ApiContext): void {
  app.post(
    '/api/v1/loop/runs',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['loop'],
        summary: "queue a run of the data–model loop on a site's harvested frames",
        description:
          'A loop worker (`argus loop worker`) executes it: collect → teacher → adapt → quantize → gate → sign. One run per site is queued or running at a time (409 otherwise).',
        body: Type.Object(
          { site: Type.String({ pattern: LABEL_VALUE_PATTERN, description: "the devices' `site` label" }) },
          { additionalProperties: false },
        ),
        response: { 201: RunView, 400: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      req.auditSubject = { site: req.body.site };
      return refusals(reply, async () => {
        const run = await ctx.loopRuns.create(req.body.site, actorOf(req));
        req.auditSubject = { site: run.site, run: run.id };
        return reply.code(201).send(view(run));
      });
    },
  );

  app.get(
    '/api/v1/loop/runs',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['loop'],
        summary: 'loop runs, newest first',
        description: "Pass the previous page's `nextCursor` as `cursor`.",
        querystring: Type.Object(
          {
            limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
            cursor: Type.Optional(Type.String({ pattern: LOOP_RUN_CURSOR.source })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            runs: Type.Array(RunView),
            nextCursor: Type.Union([Type.String(), Type.Null()]),
          }),
          400: ErrorBody,
        },
      },
    },
    async (req, reply) =>
      refusals(reply, async () => {
        const page = await ctx.loopRuns.list(req.query.limit, req.query.cursor);
        return { runs: page.runs.map(view), nextCursor: page.next };
      }),
  );

  app.get(
    '/api/v1/loop/runs/:id',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['loop'],
        summary: 'a loop run: its state, step, progress, report and candidate',
        params: Type.Object({ id: RunId }),
        response: { 200: RunView, 404: ErrorBody },
      },
    },
    async (req, reply) => {
      const run = await ctx.loopRuns.get(req.params.id);
      if (!run)
        return reply
          .code(404)
          .send({ error: `no loop run ${req.params.id}`, hint: 'GET /api/v1/loop/runs lists them' });
      return view(run);
    },
  );

  app.post(
    '/api/v1/loop/runs/:id/cancel',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['loop'],
        summary: 'cancel a loop run: a queued one at once, a running one at its worker’s next check',
        params: Type.Object({ id: RunId }),
        response: { 200: RunView, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => refusals(reply, async () => view(await ctx.loopRuns.cancel(req.params.id))),
  );
}
