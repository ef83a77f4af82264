import Type from 'typebox';
import { ARTIFACT_KINDS } from '../../../contract/index.ts';
import type { RolloutDetail } from '../../rollouts/service.ts';
import { LabelsSchema, RolloutRequestSchema } from '../../rollouts/spec.ts';
import {
  ASSIGNMENT_STATES,
  type AssignmentRow,
  ROLLOUT_STATES,
  type RolloutRow,
  WAVE_STATES,
} from '../../storage/rollouts.ts';
import { type ApiContext, type App, iso, isoOrNull } from '../context.ts';
import { refusals } from '../refusals.ts';
import { DeviceId, ErrorBody } from '../schemas.ts';

const RolloutId = Type.String({ pattern: '^[A-Za-z0-9_-]{8,64}$' });
const Timestamp = Type.String({ format: 'date-time' });
const Nullable = <T extends Type.TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Counts = Type.Record(Type.String(), Type.Integer(), {
  description:
    'assignments per state (pending, sent, queued … committed, failed, rolled-back, canceled, timed-out)',
});

export const RolloutView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  artifact: Type.Object({ kind: Type.Enum(ARTIFACT_KINDS), name: Type.String(), version: Type.Integer() }),
  state: Type.Enum(ROLLOUT_STATES),
  reason: Nullable(Type.String()),
  currentWave: Type.Integer(),
  createdBy: Type.String(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
  spec: Type.Unknown({ description: 'the request, with its defaults filled in' }),
  counts: Counts,
});

const WaveView = Type.Object({
  index: Type.Integer(),
  state: Type.Enum(WAVE_STATES),
  size: Type.Integer(),
  startedAt: Nullable(Timestamp),
  conditionAt: Nullable(Timestamp),
  endedAt: Nullable(Timestamp),
  reason: Nullable(Type.String()),
  counts: Counts,
});

export const AssignmentView = Type.Object({
  id: Type.String(),
  device: Type.String(),
  wave: Type.Integer(),
  purpose: Type.Union([Type.Literal('install'), Type.Literal('rollback')]),
  state: Type.Enum(ASSIGNMENT_STATES),
  version: Type.Integer(),
  artifactId: Type.String(),
  seq: Type.Integer(),
  reason: Nullable(Type.String()),
  figures: Nullable(Type.Record(Type.String(), Type.Unknown())),
  sentAt: Nullable(Timestamp),
  deadline: Nullable(Timestamp),
  updatedAt: Timestamp,
});

export const RolloutDetailView = Type.Object({
  ...RolloutView.properties,
  waves: Type.Array(WaveView),
  rollbacks: Counts,
  failures: Type.Array(AssignmentView, {
    description: 'devices that failed, rolled back or timed out, with why',
  }),
  versions: Type.Array(
    Type.Object({
      version: Type.Integer(),
      devices: Type.Integer(),
      cameras: Type.Integer(),
      meanDetectFps: Type.Number(),
      meanDetectLatencyMs: Type.Number(),
    }),
    {
      description:
        "per version of the artifact: the target devices running it now, with their cameras' means",
    },
  ),
  history: Type.Array(
    Type.Object({
      at: Timestamp,
      state: Type.String(),
      wave: Nullable(Type.Integer()),
      device: Nullable(Type.String()),
      reason: Nullable(Type.String()),
    }),
    { description: "the control plane's changes, newest first" },
  ),
});

export const DeviceRolloutsPage = Type.Object({
  rollouts: Type.Array(
    Type.Object({
      id: Type.String(),
      name: Type.String(),
      artifact: RolloutView.properties.artifact,
      state: Type.Enum(ROLLOUT_STATES),
      reason: Nullable(Type.String()),
      createdBy: Type.String(),
      createdAt: Timestamp,
      assignments: Type.Array(AssignmentView, {
        description: "this device's: its install, and its rollback after an abort",
      }),
    }),
    { description: 'the rollouts that touched the device, newest first' },
  ),
  nextCursor: Nullable(Type.String()),
});

function rolloutView(r: RolloutRow, counts: Record<string, number>) {
  return {
    id: r.id,
    name: r.name,
    artifact: r.artifact,
    state: r.state,
    reason: r.reason,
    currentWave: r.currentWave,
    createdBy: r.createdBy,
    createdAt: iso(r.createdAt),
    updatedAt: iso(r.updatedAt),
    spec: r.spec,
    counts,
  };
}

function assignmentView(a: AssignmentRow) {
  return {
    id: a.id,
    device: a.device,
    wave: a.wave,
    purpose: a.purpose,
    state: a.state,
    version: a.artifact.version,
    artifactId: a.artifact.id,
    seq: a.seq,
    reason: a.reason,
    figures: a.figures,
    sentAt: isoOrNull(a.sentAt),
    deadline: isoOrNull(a.deadline),
    updatedAt: iso(a.updatedAt),
  };
}

function detailView(d: RolloutDetail) {
  const total: Record<string, number> = {};
  for (const w of d.waves) for (const [s, n] of Object.entries(w.counts)) total[s] = (total[s] ?? 0) + n;
  return {
    ...rolloutView(d.rollout, total),
    waves: d.waves.map((w) => ({
      index: w.index,
      state: w.state,
      size: w.size,
      startedAt: isoOrNull(w.startedAt),
      conditionAt: isoOrNull(w.conditionAt),
      endedAt: isoOrNull(w.endedAt),
      reason: w.reason,
      counts: w.counts,
    })),
    rollbacks: d.rollbacks,
    failures: d.failures.map(assignmentView),
    versions: d.versions,
    history: d.history.map((h) => ({
      at: iso(h.at),
      state: h.state,
      wave: h.wave,
      device: h.device,
      reason: h.reason,
    })),
  };
}

const actorOf = (req: { principal?: { name: string } }) => req.principal?.name ?? 'unknown';

export function rolloutRoutes(app: App, ctx: ApiContext): void {
  app.post(
    '/api/v1/rollouts',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['rollouts'],
        summary: 'start a rollout of an artifact to the devices of a target, in waves',
        description:
          'Each device of the target gets the registry variant for its hardware class. Refused with 409, naming the other rollout, when a device is in another active rollout of the same artifact kind.',
        body: RolloutRequestSchema,
        response: { 201: RolloutDetailView, 400: ErrorBody, 409: ErrorBody, 503: ErrorBody },
      },
    },
    async (req, reply) => {
      const { kind, name, version } = req.body.artifact;
      req.auditSubject = { artifact: `${kind}:${name}:${version}` };
      return refusals(reply, async () => {
        const r = await ctx.rollouts.create(req.body, actorOf(req));
        req.auditSubject = { artifact: `${kind}:${name}:${version}`, rollout: r.id };
        return reply.code(201).send(detailView(await ctx.rollouts.detail(r.id)));
      });
    },
  );

  app.get(
    '/api/v1/rollouts',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['rollouts'],
        summary: 'rollouts, newest first, with their device counts per state',
        querystring: Type.Object(
          {
            state: Type.Optional(Type.Enum(ROLLOUT_STATES)),
            before: Type.Optional(RolloutId),
            limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ rollouts: Type.Array(RolloutView), nextCursor: Nullable(Type.String()) }),
        },
      },
    },
    async (req) => {
      const { state, before, limit } = req.query;
      const rows = await ctx.rollouts.list({
        ...(state ? { states: [state] } : {}),
        ...(before ? { before } : {}),
        limit,
      });
      return {
        rollouts: rows.map((r) => rolloutView(r.rollout, r.counts)),
        nextCursor: rows.length === limit ? rows[rows.length - 1]!.rollout.id : null,
      };
    },
  );

  app.get(
    '/api/v1/rollouts/:id',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['rollouts'],
        summary:
          'a rollout: its waves with device counts per state, the failures with their reasons, KPIs per version',
        params: Type.Object({ id: RolloutId }),
        response: { 200: RolloutDetailView, 404: ErrorBody },
      },
    },
    async (req, reply) => refusals(reply, async () => detailView(await ctx.rollouts.detail(req.params.id))),
  );

  app.get(
    '/api/v1/rollouts/:id/assignments',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['rollouts'],
        summary: "a rollout's per-device assignments, by wave and device",
        params: Type.Object({ id: RolloutId }),
        querystring: Type.Object(
          {
            wave: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
            state: Type.Optional(Type.Enum(ASSIGNMENT_STATES)),
            limit: Type.Integer({ minimum: 1, maximum: 1000, default: 200 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ assignments: Type.Array(AssignmentView) }), 404: ErrorBody },
      },
    },
    async (req, reply) =>
      refusals(reply, async () => {
        await ctx.rollouts.get(req.params.id);
        const { wave, state, limit } = req.query;
        const rows = await ctx.rollouts.store.assignments(req.params.id, {
          ...(wave !== undefined ? { wave } : {}),
          ...(state ? { states: [state] } : {}),
          limit,
        });
        return { assignments: rows.map(assignmentView) };
      }),
  );

  const action = (
    verb: 'pause' | 'resume' | 'cancel',
    summary: string,
    run: (id: string, actor: string, body: { rollback?: boolean } | undefined) => Promise<unknown>,
  ) =>
    app.post(
      `/api/v1/rollouts/:id/${verb}`,
      {
        config: { access: 'operator' },
        schema: {
          tags: ['rollouts'],
          summary,
          params: Type.Object({ id: RolloutId }),
          ...(verb === 'cancel'
            ? {
                body: Type.Object(
                  {
                    rollback: Type.Optional(
                      Type.Boolean({
                        description: 'abort instead: devices that committed get their previous version back',
                      }),
                    ),
                  },
                  { additionalProperties: false },
                ),
              }
            : {}),
          response: { 200: RolloutDetailView, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (req, reply) =>
        refusals(reply, async () => {
          await run(
            req.params.id,
            actorOf(req),
            (req.body ?? undefined) as { rollback?: boolean } | undefined,
          );
          return detailView(await ctx.rollouts.detail(req.params.id));
        }),
    );
  action(
    'pause',
    'pause a running rollout: nothing more is sent; what is in progress goes on and times out',
    (id, a) => ctx.rollouts.pause(id, a),
  );
  action('resume', 'resume a paused rollout (after a failed wave: go on with the next one)', (id, a) =>
    ctx.rollouts.resume(id, a),
  );
  action(
    'cancel',
    'end a rollout: what was not sent is canceled, devices in progress get update-cancel; {"rollback": true} aborts',
    (id, a, body) => ctx.rollouts.cancel(id, a, body?.rollback ?? false),
  );

  app.get(
    '/api/v1/devices/:id/rollouts',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['rollouts', 'devices'],
        summary:
          "the rollouts that touched a device, newest first, with the device's state and reason in each",
        description: "Pass the previous page's `nextCursor` as `cursor`.",
        params: Type.Object({ id: DeviceId }),
        querystring: Type.Object(
          {
            cursor: Type.Optional(RolloutId),
            limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: DeviceRolloutsPage },
      },
    },
    async (req) => {
      const { cursor, limit } = req.query;
      const rows = await ctx.rollouts.store.ofDevice(req.params.id, { before: cursor, limit });
      return {
        rollouts: rows.map(({ rollout: r, assignments }) => ({
          id: r.id,
          name: r.name,
          artifact: r.artifact,
          state: r.state,
          reason: r.reason,
          createdBy: r.createdBy,
          createdAt: iso(r.createdAt),
          assignments: assignments.map(assignmentView),
        })),
        nextCursor: rows.length === limit ? rows[rows.length - 1]!.rollout.id : null,
      };
    },
  );

  app.get(
    '/api/v1/devices/:id/labels',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['devices'],
        summary: "a device's labels (site, district, tz …), which rollout targets select by",
        params: Type.Object({ id: DeviceId }),
        response: { 200: Type.Object({ labels: LabelsSchema }) },
      },
    },
    async (req) => ({ labels: await ctx.rollouts.labels(req.params.id) }),
  );

  app.put(
    '/api/v1/devices/:id/labels',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['devices'],
        summary: "replace a device's labels",
        description:
          'Label `tz` is the device\'s local time zone for maintenance windows: an IANA zone ("Europe/Paris") or an offset ("+05:30").',
        params: Type.Object({ id: DeviceId }),
        body: Type.Object({ labels: LabelsSchema }, { additionalProperties: false }),
        response: { 200: Type.Object({ labels: LabelsSchema }), 400: ErrorBody, 404: ErrorBody },
      },
    },
    async (req, reply) =>
      refusals(reply, async () => {
        await ctx.rollouts.setLabels(req.params.id, req.body.labels);
        return { labels: await ctx.rollouts.labels(req.params.id) };
      }),
  );
}
