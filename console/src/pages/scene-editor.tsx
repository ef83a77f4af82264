import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, describeError, snapshotUrl } from '../api.ts';
import { runCommand } from '../commands.ts';
import { ErrorNote, Loading, Section } from '../components/bits.tsx';
import { DataTable } from '../components/data-table.tsx';
import { GeometryEditor, type Point, PointsTable, type Shape } from '../components/geometry-editor.tsx';
import { type Data, initialValue, type JsonSchema, SchemaFields } from '../components/schema-form.tsx';
import { href, navigate } from '../router.ts';
import type {
  ArtifactListAnswer,
  DevicesAnswer,
  DeviceView,
  PreviewAnswer,
  PublishedSceneAnswer,
  SceneEditorAnswer,
} from '../types.ts';

type Rule = Data & { id: string; type: string; line?: Point[]; polygon?: Point[] };
type Scene = Data & { name: string; rules: Rule[] };
type Snap = { id: string; width: number; height: number; url: string };
type PreviewEvent = PreviewAnswer['events'][number];

/** how a rule type is drawn, read from its schema: a line (two points) or a polygon, maybe optional */
function geometryOf(schema: JsonSchema | undefined): { kind: 'line' | 'polygon'; required: boolean } | null {
  const props = schema?.properties ?? {};
  const required = new Set(schema?.required ?? []);
  if (props.line) return { kind: 'line', required: true };
  if (props.polygon) return { kind: 'polygon', required: required.has('polygon') };
  return null;
}

/** waits until the device's upload of a snapshot arrived (its command answers before) */
async function uploaded(device: string, id: string): Promise<void> {
  for (let i = 0; i < 20; i++) {
    const res = await fetch(snapshotUrl(device, id), { method: 'HEAD', credentials: 'same-origin' });
    if (res.ok) return;
    await new Promise((r) => setTimeout(r, 300 + i * 100));
  }
  throw new Error('the snapshot was taken but has not been uploaded: try again');
}

/** the scene the camera runs, when the registry holds it; else a new scene of that name */
async function baseScene(device: DeviceView, camera: string): Promise<{ scene: Scene; from: string }> {
  const ref = device.telemetry?.cameras.find((c) => c.id === camera)?.scene;
  const name = ref?.name ?? `${camera}-scene`;
  if (ref && ref.version > 0) {
    const list = await api<ArtifactListAnswer>('/api/v1/artifacts', {
      query: { kind: 'scene', name, limit: 100 },
    });
    const a = list.artifacts.find((x) => x.version === ref.version);
    if (a) {
      const { scene } = await api<{ scene: Data }>(`/api/v1/scenes/artifacts/${a.id}`);
      return { scene: scene as Scene, from: `scene ${name} v${ref.version}, which the camera runs` };
    }
  }
  return {
    scene: { name, rules: [] },
    from: ref
      ? `a new scene named after the camera's ${name} v${ref.version} (the registry does not hold it)`
      : 'a new scene',
  };
}

const seconds = (at: string) => (Date.parse(at) / 1000).toFixed(1);

function PreviewEvents({ result }: { result: PreviewAnswer }) {
  return (
    <>
      <p role="status">
        {result.eventCount} event messages from {result.frames} frames ({result.recordedSeconds.toFixed(0)} s
        of the recording) in {result.seconds.toFixed(1)} s
        {result.stopped === 'time-limit' ? ' — stopped at the time limit' : ''}
      </p>
      <DataTable<PreviewEvent>
        id="preview-events"
        caption="events the scene raised on the recording"
        rows={result.events}
        rowKey={(e) => `${e.id}-${e.seq}`}
        empty="the scene raised no event on this recording"
        columns={[
          { title: 'At (s)', class: 'num', cell: (e) => seconds(e.at) },
          { title: 'Phase', cell: (e) => e.phase },
          { title: 'Rule', cell: (e) => `${e.ruleType} ${e.rule}` },
          {
            title: 'Object',
            cell: (e) => (e.trackId >= 0 ? `${e.label} #${e.trackId}` : `${e.label} group`),
          },
          { title: 'Direction', cell: (e) => e.direction ?? '' },
        ]}
      />
    </>
  );
}

function Editor({
  info,
  device,
  camera,
  snap,
  initial,
  from,
}: {
  info: SceneEditorAnswer;
  device: string;
  camera: string;
  snap: Snap;
  initial: Scene;
  from: string;
}) {
  const rules = info.rules as Record<string, JsonSchema>;
  const sceneSchema = info.scene as JsonSchema;
  const [scene, setScene] = useState<Scene>(() => ({ ...(initialValue(sceneSchema) as Data), ...initial }));
  const [selected, setSelected] = useState<string | null>(initial.rules[0]?.id ?? null);
  const [newType, setNewType] = useState('line');
  const [drawing, setDrawing] = useState<{ kind: 'line' | 'polygon'; points: Point[]; type: string } | null>(
    null,
  );
  const [recording, setRecording] = useState(info.recordings[0] ?? '');
  const [previewSeconds, setPreviewSeconds] = useState(Math.min(30, info.previewSeconds));
  const [preview, setPreview] = useState<PreviewAnswer | null>(null);
  const [busy, setBusy] = useState<'preview' | 'publish' | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [published, setPublished] = useState<PublishedSceneAnswer['artifact'] | null>(null);

  const setRules = (f: (r: Rule[]) => Rule[]) => setScene((s) => ({ ...s, rules: f(s.rules) }));
  const rule = scene.rules.find((r) => r.id === selected) ?? null;
  const shapes: Shape[] = scene.rules.flatMap((r): Shape[] =>
    r.line
      ? [{ key: r.id, label: r.id, kind: 'line' as const, points: r.line }]
      : r.polygon
        ? [{ key: r.id, label: r.id, kind: 'polygon' as const, points: r.polygon }]
        : [],
  );
  const move = (key: string, index: number, p: Point) =>
    setRules((list) =>
      list.map((r) => {
        if (r.id !== key) return r;
        const field = r.line ? 'line' : 'polygon';
        const points = [...(r[field] as Point[])];
        points[index] = p;
        return { ...r, [field]: points };
      }),
    );
  const finish = (d: { kind: 'line' | 'polygon'; points: Point[]; type: string }) => {
    let n = 1;
    while (scene.rules.some((r) => r.id === `${d.type}-${n}`)) n++;
    const id = `${d.type}-${n}`;
    const base = initialValue(rules[d.type]!) as Rule;
    const geometry =
      d.points.length === 0 ? {} : d.kind === 'line' ? { line: d.points } : { polygon: d.points };
    const r: Rule = { ...base, id, type: d.type, ...geometry };
    setRules((list) => [...list, r]);
    setSelected(id);
    setDrawing(null);
  };
  const add = (p: Point) => {
    if (!drawing) return;
    const next = { ...drawing, points: [...drawing.points, p] };
    if (next.kind === 'line' && next.points.length === 2) finish(next);
    else setDrawing(next);
  };
  const start = () => {
    const g = geometryOf(rules[newType]);
    setError(null);
    if (g) setDrawing({ kind: g.kind, points: [], type: newType });
    else finish({ kind: 'polygon', points: [], type: newType });
  };
  const runPreview = async () => {
    setBusy('preview');
    setError(null);
    setPreview(null);
    try {
      setPreview(
        await api<PreviewAnswer>('/api/v1/scenes/preview', {
          method: 'POST',
          body: { scene, recording, seconds: previewSeconds },
        }),
      );
    } catch (err) {
      setError(describeError(err));
    }
    setBusy(null);
  };
  const publish = async () => {
    setBusy('publish');
    setError(null);
    try {
      const answer = await api<PublishedSceneAnswer>('/api/v1/scenes', { method: 'POST', body: { scene } });
      setPublished(answer.artifact);
    } catch (err) {
      setError(describeError(err));
    }
    setBusy(null);
  };
  const geometry = rule ? geometryOf(rules[rule.type]) : null;
  const ruleShape = shapes.find((s) => s.key === rule?.id);
  return (
    <>
      <p class="muted">
        {device} · {camera} · starting from {from}
      </p>
      <div class="editor">
        <Section
          title="Zones and lines"
          actions={
            drawing ? (
              <div class="row">
                {drawing.kind === 'polygon' ? (
                  <button
                    type="button"
                    class="primary"
                    disabled={drawing.points.length < 3}
                    onClick={() => finish(drawing)}
                  >
                    Finish zone ({drawing.points.length} points)
                  </button>
                ) : null}
                {drawing.kind === 'polygon' && !geometryOf(rules[drawing.type])?.required ? (
                  <button type="button" onClick={() => finish({ ...drawing, points: [] })}>
                    Whole frame
                  </button>
                ) : null}
                <button type="button" onClick={() => setDrawing(null)}>
                  Cancel drawing
                </button>
              </div>
            ) : (
              <div class="row">
                <label class="inline">
                  New rule{' '}
                  <select value={newType} onChange={(e) => setNewType(e.currentTarget.value)}>
                    {Object.keys(rules).map((t) => (
                      <option key={t} value={t}>
                        {t}
                      </option>
                    ))}
                  </select>
                </label>
                <button
                  type="button"
                  class="primary"
                  disabled={scene.rules.length >= info.maxRules}
                  onClick={start}
                >
                  {geometryOf(rules[newType])?.kind === 'line' ? 'Draw a line' : 'Draw a zone'}
                </button>
              </div>
            )
          }
        >
          <GeometryEditor
            image={snap.url}
            width={snap.width}
            height={snap.height}
            shapes={shapes}
            selected={selected}
            drawing={drawing}
            onSelect={setSelected}
            onMove={move}
            onAdd={add}
          />
          <p class="small muted" aria-live="polite">
            {drawing
              ? drawing.kind === 'line'
                ? `Put point ${drawing.points.length ? 'B' : 'A'} of the line: an object crossing from the left of someone at A looking at B to their right is "in".`
                : `Put the zone's points in order around it (${drawing.points.length} so far), then Finish zone.`
              : 'Tab to a point and move it with the arrow keys (Shift: further), or drag it.'}
          </p>
        </Section>
        <Section title="Rules">
          {scene.rules.length === 0 ? <p class="muted">no rule yet: draw a line or a zone</p> : null}
          <fieldset class="row plain">
            <legend class="sr-only">rules</legend>
            {scene.rules.map((r) => (
              <button
                type="button"
                key={r.id}
                aria-pressed={r.id === selected}
                onClick={() => setSelected(r.id)}
              >
                {r.type} {r.id}
              </button>
            ))}
          </fieldset>
          {rule ? (
            <form class="rule-form" aria-label={`rule ${rule.id}`} onSubmit={(e) => e.preventDefault()}>
              <SchemaFields
                idPrefix={`rule-${rule.id}`}
                schema={rules[rule.type]!}
                skip={['line', 'polygon']}
                value={rule}
                onChange={(v) => {
                  const next = v as Rule;
                  setRules((list) => list.map((r) => (r.id === rule.id ? next : r)));
                  if (next.id !== rule.id) setSelected(next.id);
                }}
              />
              {ruleShape ? (
                <PointsTable
                  shape={ruleShape}
                  minPoints={geometry?.kind === 'line' ? 2 : 3}
                  onMove={(i, p) => move(rule.id, i, p)}
                  {...(geometry?.kind === 'polygon'
                    ? {
                        onRemove: (i: number) =>
                          setRules((list) =>
                            list.map((r) =>
                              r.id === rule.id ? { ...r, polygon: r.polygon!.filter((_, k) => k !== i) } : r,
                            ),
                          ),
                      }
                    : {})}
                />
              ) : null}
              <div class="row">
                {geometry?.kind === 'line' ? (
                  <button
                    type="button"
                    onClick={() =>
                      setRules((list) =>
                        list.map((r) => (r.id === rule.id ? { ...r, line: [...r.line!].reverse() } : r)),
                      )
                    }
                  >
                    Reverse direction
                  </button>
                ) : null}
                <button
                  type="button"
                  class="danger"
                  onClick={() => {
                    setRules((list) => list.filter((r) => r.id !== rule.id));
                    setSelected(null);
                  }}
                >
                  Remove rule
                </button>
              </div>
            </form>
          ) : null}
        </Section>
      </div>
      <details class="card">
        <summary>Scene settings: name, classes, tracker, motion, snapshots</summary>
        <form aria-label="scene settings" onSubmit={(e) => e.preventDefault()}>
          <SchemaFields
            idPrefix="scene"
            schema={sceneSchema}
            value={scene}
            onChange={(v) => setScene({ ...(v as Scene), rules: scene.rules })}
          />
        </form>
      </details>
      <ErrorNote error={error} />
      <Section title="Preview">
        {info.recordings.length === 0 ? (
          <p class="muted">
            No recording to preview on: list video files under scenes.recordings in the control plane config.
          </p>
        ) : (
          <form
            class="row"
            aria-label="preview"
            onSubmit={(e) => {
              e.preventDefault();
              void runPreview();
            }}
          >
            <label class="inline">
              Recording{' '}
              <select value={recording} onChange={(e) => setRecording(e.currentTarget.value)}>
                {info.recordings.map((r) => (
                  <option key={r} value={r}>
                    {r}
                  </option>
                ))}
              </select>
            </label>
            <label class="inline">
              Seconds of it{' '}
              <input
                type="number"
                min={1}
                max={info.previewSeconds}
                value={previewSeconds}
                onInput={(e) => setPreviewSeconds(Number(e.currentTarget.value))}
              />
            </label>
            <button type="submit" class="primary" disabled={busy !== null || scene.rules.length === 0}>
              Preview
            </button>
          </form>
        )}
        {busy === 'preview' ? (
          <p role="status">
            replaying the recording through the pipeline (at most {info.previewTimeoutS} s)…
          </p>
        ) : null}
        {preview ? <PreviewEvents result={preview} /> : null}
      </Section>
      <Section title="Publish">
        {info.canPublish ? (
          <p class="muted">
            Publishes the scene as the next version of “{scene.name}”, a scene bundle signed with the control
            plane's key, into the artifact registry.
          </p>
        ) : (
          <p class="muted">
            This control plane has no key to sign scenes with (scenes.signingKey): it previews but does not
            publish.
          </p>
        )}
        <div class="row">
          <button
            type="button"
            class="primary"
            disabled={!info.canPublish || busy !== null || scene.rules.length === 0}
            onClick={() => void publish()}
          >
            Publish scene
          </button>
          {published ? (
            <>
              <span role="status" id="published">
                Published scene {published.name} v{published.version}
              </span>
              <a
                class="button primary"
                href={href(['rollouts', 'new'], {
                  artifact: `scene/${published.name}/${published.version}`,
                  devices: device,
                  cameras: camera,
                  name: `scene ${published.name} v${published.version} to ${device} ${camera}`,
                })}
              >
                Start its rollout
              </a>
            </>
          ) : null}
        </div>
      </Section>
    </>
  );
}

export function SceneEditorPage({ query }: { query: URLSearchParams }) {
  const deviceId = query.get('device') ?? '';
  const camera = query.get('camera') ?? '';
  const [devices, setDevices] = useState<DeviceView[] | null>(null);
  const [info, setInfo] = useState<SceneEditorAnswer | null>(null);
  const [ready, setReady] = useState<{ snap: Snap; scene: Scene; from: string; key: string } | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    void Promise.all([
      api<DevicesAnswer>('/api/v1/devices', { query: { status: 'online', limit: 200 } }),
      api<SceneEditorAnswer>('/api/v1/scenes/editor'),
    ])
      .then(([d, i]) => {
        setDevices(d.devices);
        setInfo(i);
      })
      .catch((err) => setError(describeError(err)));
  }, []);
  const device = useMemo(() => devices?.find((d) => d.id === deviceId), [devices, deviceId]);
  const key = `${deviceId}/${camera}`;
  useEffect(() => {
    if (!device || !camera) return;
    let stop = false;
    setReady(null);
    setError(null);
    setNote(`asking ${camera} for a fresh snapshot…`);
    void (async () => {
      try {
        const c = await runCommand(device.id, 'snapshot', { camera });
        const shot = (c.result?.data as { snapshot?: Omit<Snap, 'url'> } | undefined)?.snapshot;
        if (!c.result?.ok || !shot)
          throw new Error(c.result?.message ?? 'the camera did not answer with a snapshot');
        await uploaded(device.id, shot.id);
        const base = await baseScene(device, camera);
        if (!stop) {
          setReady({ snap: { ...shot, url: snapshotUrl(device.id, shot.id) }, ...base, key });
          setNote(null);
        }
      } catch (err) {
        if (!stop) {
          setError(describeError(err));
          setNote(null);
        }
      }
    })();
    return () => {
      stop = true;
    };
  }, [device, camera]);
  const choose = (d: string, c: string) => navigate(['scenes'], { device: d, camera: c });
  return (
    <>
      <h1>Scene editor</h1>
      <ErrorNote error={error} />
      {!devices || !info ? (
        error ? null : (
          <Loading what="the devices" />
        )
      ) : (
        <form class="row" aria-label="choose a camera" onSubmit={(e) => e.preventDefault()}>
          <label class="inline">
            Device{' '}
            <select value={deviceId} onChange={(e) => choose(e.currentTarget.value, '')}>
              <option value="">choose…</option>
              {devices.map((d) => (
                <option key={d.id} value={d.id}>
                  {d.id}
                </option>
              ))}
            </select>
          </label>
          <label class="inline">
            Camera{' '}
            <select
              value={camera}
              disabled={!device}
              onChange={(e) => choose(deviceId, e.currentTarget.value)}
            >
              <option value="">choose…</option>
              {device?.cameras.map((c) => (
                <option key={c.camera} value={c.camera}>
                  {c.camera}
                </option>
              ))}
            </select>
          </label>
        </form>
      )}
      {note ? <p role="status">{note}</p> : null}
      {info && ready && ready.key === key ? (
        <Editor
          key={ready.key}
          info={info}
          device={deviceId}
          camera={camera}
          snap={ready.snap}
          initial={ready.scene}
          from={ready.from}
        />
      ) : null}
    </>
  );
}
