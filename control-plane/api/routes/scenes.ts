import Type from 'typebox';
import { EventMessageSchema } from '../../../contract/index.ts';
import { RULE_SCHEMAS, SceneSchema } from '../../../pipelines/scene/schema.ts';
import { MAX_PREVIEW_EVENTS } from '../../scenes/preview.ts';
import { MAX_EDITOR_RULES } from '../../scenes/publish.ts';
import type { ApiContext, App } from '../context.ts';
import { refusals } from '../refusals.ts';
import { ErrorBody } from '../schemas.ts';
import { ArtifactSummary, summaryOf } from './artifacts.ts';

const SceneData = Type.Record(Type.String(), Type.Unknown(), {
  maxProperties: 32,
  description:
    'a scene as in a scene file (pipelines/scene/schema.ts), as JSON; validated as a box validates it',
});

export const SceneEditorInfo = Type.Object({
  scene: Type.Unknown({ description: "the JSON Schema of a scene's own fields (rules excepted)" }),
  rules: Type.Record(Type.String(), Type.Unknown(), { description: 'the JSON Schema of each rule type' }),
  maxRules: Type.Integer(),
  recordings: Type.Array(Type.String(), { description: 'what a preview may replay (scenes.recordings)' }),
  previewSeconds: Type.Number(),
  previewTimeoutS: Type.Number(),
  canPublish: Type.Boolean({ description: 'a signing key is configured (scenes.signingKey)' }),
});

export const PreviewRequestSchema = Type.Object(
  {
    scene: SceneData,
    recording: Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' }),
    seconds: Type.Number({ minimum: 1, maximum: 3600, default: 30 }),
    detectFps: Type.Number({ minimum: 1, maximum: 30, default: 5 }),
  },
  { additionalProperties: false },
);

const PreviewEvent = Type.Omit(EventMessageSchema, ['v', 'device', 'cameraSeq', 'snapshot']);

export const PreviewAnswer = Type.Object({
  events: Type.Array(PreviewEvent, {
    description: `the event messages the scene raised, in order (the first ${MAX_PREVIEW_EVENTS}); times are the recording's, from 1970-01-01T00:00:00Z`,
  }),
  eventCount: Type.Integer(),
  frames: Type.Integer(),
  recordedSeconds: Type.Number({ description: 'seconds of the recording replayed' }),
  seconds: Type.Number({ description: 'how long the preview took' }),
  stopped: Type.Union([Type.Literal('time-limit'), Type.Literal('canceled'), Type.Null()]),
});

export const PublishedScene = Type.Object({ artifact: ArtifactSummary });

/**
 * The console's scene editor: the scene schema its form is generated from, a preview of a scene
 * replayed over a recording through the real pipeline, publication as a signed scene artifact
 * (whose rollout then goes through /api/v1/rollouts), and the scene inside a published one.
 */
export function sceneRoutes(app: App, ctx: ApiContext): void {
  const { previews, bundles } = ctx.scenes;
  const { rules: _rules, ...sceneFields } = SceneSchema.properties;
  const info = {
    scene: JSON.parse(JSON.stringify(Type.Object(sceneFields))),
    rules: JSON.parse(JSON.stringify(RULE_SCHEMAS)),
    maxRules: MAX_EDITOR_RULES,
  };

  app.get(
    '/api/v1/scenes/editor',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['scenes'],
        summary:
          'what the scene editor needs: the scene schema, the recordings to preview on, whether it may publish',
        response: { 200: SceneEditorInfo },
      },
    },
    async () => ({
      ...info,
      recordings: previews.recordings,
      previewSeconds: ctx.sceneSettings.previewSeconds,
      previewTimeoutS: ctx.sceneSettings.previewTimeoutS,
      canPublish: ctx.sceneSettings.signingKey !== undefined,
    }),
  );

  app.post(
    '/api/v1/scenes/preview',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['scenes'],
        summary: 'replay a recording through the pipeline with a scene and list the events it raises',
        description:
          'One preview per operator at a time (409), scenes.previewsAtOnce in all (503); at most ' +
          'scenes.previewSeconds of the recording, stopped after scenes.previewTimeoutS with the events so far.',
        body: PreviewRequestSchema,
        response: { 200: PreviewAnswer, 400: ErrorBody, 409: ErrorBody, 503: ErrorBody },
      },
    },
    async (req, reply) =>
      refusals(reply, async () => {
        const { scene } = await bundles.validate(req.body.scene);
        const gone = new AbortController();
        const socket = req.raw.socket;
        // nothing flows while the pipeline runs: the socket's idle limit waits for the time limit
        socket.setTimeout((ctx.sceneSettings.previewTimeoutS + 60) * 1000);
        const onClose = () => {
          if (!reply.raw.writableFinished) gone.abort();
        };
        reply.raw.once('close', onClose);
        try {
          return await previews.run(
            req.principal!.name,
            {
              scene,
              recording: req.body.recording,
              seconds: req.body.seconds,
              detectFps: req.body.detectFps,
            },
            gone.signal,
          );
        } finally {
          reply.raw.off('close', onClose);
          socket.setTimeout(ctx.limits.idleTimeoutMs);
        }
      }),
  );

  app.post(
    '/api/v1/scenes',
    {
      config: { access: 'operator' },
      schema: {
        tags: ['scenes'],
        summary:
          'publish a scene as the next version of its name: a scene bundle signed with scenes.signingKey',
        description:
          'Validated as a box validates it, then published into the artifact registry as any bundle is ' +
          '(verified against artifacts.keyring); start its rollout with POST /api/v1/rollouts.',
        body: Type.Object({ scene: SceneData }, { additionalProperties: false }),
        response: {
          201: Type.Object({ artifact: ArtifactSummary }),
          400: ErrorBody,
          409: ErrorBody,
          422: ErrorBody,
        },
      },
    },
    async (req, reply) =>
      refusals(reply, async () => {
        const published = await bundles.publish(req.body.scene, req.principal!.name);
        return reply.code(201).send({ artifact: summaryOf(published.artifact) });
      }),
  );

  app.get(
    '/api/v1/scenes/artifacts/:id',
    {
      config: { access: 'viewer' },
      schema: {
        tags: ['scenes'],
        summary: 'the scene inside a published scene artifact, with its defaults filled in, to edit it',
        params: Type.Object({ id: Type.String({ pattern: '^[0-9a-f]{64}$' }) }),
        response: { 200: Type.Object({ scene: SceneData }), 404: ErrorBody },
      },
    },
    async (req, reply) => refusals(reply, async () => ({ scene: await bundles.read(req.params.id) })),
  );
}
