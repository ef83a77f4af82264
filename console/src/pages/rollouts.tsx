import { useEffect, useState } from 'preact/hooks';
import { api, describeError } from '../api.ts';
import { Badge, Bar, ErrorNote, Loading, Section } from '../components/bits.tsx';
import { DataTable } from '../components/data-table.tsx';
import { time } from '../format.ts';
import { href, navigate } from '../router.ts';
import { useCan } from '../session.ts';
import type { ArtifactListAnswer, RolloutAnswer, RolloutDetailAnswer, RolloutRequest } from '../types.ts';

type Wave = RolloutDetailAnswer['waves'][number];
type Failure = RolloutDetailAnswer['failures'][number];
type Version = RolloutDetailAnswer['versions'][number];

const REFRESH_MS = 2000;
const ACTIVE = new Set(['pending', 'running', 'paused']);

const counted = (counts: Record<string, number>) =>
  Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([state, n]) => (
      <span key={state} class="count">
        <Badge state={state} /> {n}
      </span>
    ));

/** the wizard, its fields filled from the URL (`artifact=kind/name/version`, `devices`, `cameras`, `name`) */
function Wizard({ query }: { query: URLSearchParams }) {
  const [artifacts, setArtifacts] = useState<ArtifactListAnswer['artifacts']>([]);
  const [artifact, setArtifact] = useState(query.get('artifact') ?? '');
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    void api<ArtifactListAnswer>('/api/v1/artifacts', { query: { limit: 200 } })
      .then((a) => {
        setArtifacts(a.artifacts);
        const first = a.artifacts[0];
        if (!artifact && first) setArtifact(`${first.kind}/${first.name}/${first.version}`);
      })
      .catch((err) => setError(describeError(err)));
  }, []);
  const choices = [...new Map(artifacts.map((a) => [`${a.kind}/${a.name}/${a.version}`, a])).values()];
  return (
    <Section title="New rollout">
      <form
        class="filters wizard"
        aria-label="new rollout"
        onSubmit={(e) => {
          e.preventDefault();
          const f = new FormData(e.currentTarget);
          const text = (k: string) => String(f.get(k) ?? '').trim();
          const num = (k: string) => Number(text(k));
          const [kind, name, version] = text('artifact').split('/');
          const list = (k: string) =>
            text(k)
              .split(/[\s,]+/)
              .filter(Boolean);
          const devices = list('devices');
          const cameras = list('cameras');
          const body: RolloutRequest = {
            name: text('name'),
            artifact: { kind: kind as 'model' | 'scene', name: name!, version: Number(version) },
            target: {
              ...(devices.length ? { devices } : {}),
              ...(text('hardwareClass') ? { hardwareClass: text('hardwareClass') } : {}),
            },
            ...(kind === 'scene' && cameras.length ? { cameras } : {}),
            waves: {
              ...(text('canary') ? { canary: { devices: num('canary') } } : {}),
              rate: { kind: 'constant', share: num('share') / 100 },
            },
            success: { share: num('successShare') / 100, healthS: num('healthS') },
            error: { share: num('errorShare') / 100 },
            onSuccess: 'next',
            onError: text('onError') as 'pause' | 'abort',
            deviceTimeoutS: num('deviceTimeoutS'),
            health: {
              windowS: num('windowS'),
              minDetectFpsRatio: num('minFps'),
              maxDetectLatencyRatio: num('maxLatency'),
              maxDetectorRestarts: 0,
            },
            ...(text('start') && text('end')
              ? { maintenance: { start: text('start'), end: text('end') } }
              : {}),
          } as RolloutRequest;
          setError(null);
          void api<RolloutAnswer>('/api/v1/rollouts', { method: 'POST', body })
            .then((r) => navigate(['rollouts', r.id]))
            .catch((err) => setError(describeError(err)));
        }}
      >
        <fieldset>
          <legend>1. Artifact</legend>
          <label>
            Name of the rollout
            <input name="name" required maxLength={100} defaultValue={query.get('name') ?? ''} />
          </label>
          <label>
            Artifact
            <select
              name="artifact"
              required
              value={artifact}
              onChange={(e) => setArtifact(e.currentTarget.value)}
            >
              {choices.map((a) => (
                <option key={a.id} value={`${a.kind}/${a.name}/${a.version}`}>
                  {a.kind} {a.name} v{a.version}
                </option>
              ))}
            </select>
          </label>
        </fieldset>
        <fieldset>
          <legend>2. Target</legend>
          <label>
            Devices (ids, comma-separated)
            <input name="devices" defaultValue={query.get('devices') ?? ''} />
          </label>
          <label>
            Cameras of a scene (ids, comma-separated; default every camera)
            <input name="cameras" defaultValue={query.get('cameras') ?? ''} />
          </label>
          <label>
            Hardware class
            <input name="hardwareClass" />
          </label>
        </fieldset>
        <fieldset>
          <legend>3. Waves</legend>
          <label>
            Canary devices
            <input name="canary" type="number" min={1} defaultValue="1" />
          </label>
          <label>
            Each later wave, % of the target
            <input name="share" type="number" min={1} max={100} defaultValue="50" required />
          </label>
        </fieldset>
        <fieldset>
          <legend>4. Thresholds</legend>
          <label>
            Wave succeeds at % committed
            <input name="successShare" type="number" min={1} max={100} defaultValue="100" required />
          </label>
          <label>
            Healthy for (s)
            <input name="healthS" type="number" min={0} defaultValue="0" required />
          </label>
          <label>
            Wave fails at % failed
            <input name="errorShare" type="number" min={1} max={100} defaultValue="20" required />
          </label>
          <label>
            On failure
            <select name="onError">
              <option value="pause">pause</option>
              <option value="abort">abort and roll back</option>
            </select>
          </label>
          <label>
            Health window (s)
            <input name="windowS" type="number" min={1} defaultValue="60" required />
          </label>
          <label>
            Min. detect fps ratio
            <input name="minFps" type="number" step="0.05" min={0} max={1} defaultValue="0.8" required />
          </label>
          <label>
            Max. latency ratio
            <input name="maxLatency" type="number" step="0.1" min={1} defaultValue="1.5" required />
          </label>
          <label>
            Device timeout (s)
            <input name="deviceTimeoutS" type="number" min={10} defaultValue="3600" required />
          </label>
        </fieldset>
        <fieldset>
          <legend>5. Window (device local time, optional)</legend>
          <label>
            From
            <input name="start" type="time" />
          </label>
          <label>
            To
            <input name="end" type="time" />
          </label>
        </fieldset>
        <div class="row">
          <button type="submit" class="primary">
            Start rollout
          </button>
        </div>
      </form>
      <ErrorNote error={error} />
    </Section>
  );
}

function Detail({ id }: { id: string }) {
  const canAct = useCan('operator');
  const [r, setR] = useState<RolloutDetailAnswer | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () =>
    api<RolloutDetailAnswer>(`/api/v1/rollouts/${encodeURIComponent(id)}`)
      .then((d) => {
        setR(d);
        setError(null);
      })
      .catch((err) => setError(describeError(err)));
  useEffect(() => {
    void load();
    const timer = setInterval(load, REFRESH_MS);
    return () => clearInterval(timer);
  }, [id]);
  const act = (verb: 'pause' | 'resume' | 'cancel', body?: unknown) =>
    api(`/api/v1/rollouts/${encodeURIComponent(id)}/${verb}`, { method: 'POST', ...(body ? { body } : {}) })
      .catch((err) => setError(describeError(err)))
      .then(load);
  if (!r) return error ? <ErrorNote error={error} /> : <Loading what="the rollout" />;
  return (
    <>
      <h1>
        {r.name} <Badge state={r.state} />
      </h1>
      <p>
        {r.artifact.kind} {r.artifact.name} v{r.artifact.version} · by {r.createdBy} · {time(r.createdAt)}
        {r.reason ? ` · ${r.reason}` : ''}
      </p>
      <ErrorNote error={error} />
      {canAct && ACTIVE.has(r.state) ? (
        <div class="row">
          {r.state === 'paused' ? (
            <button type="button" onClick={() => void act('resume')}>
              Resume
            </button>
          ) : (
            <button type="button" onClick={() => void act('pause')}>
              Pause
            </button>
          )}
          <button
            type="button"
            class="danger"
            onClick={() => confirm('cancel this rollout?') && void act('cancel', {})}
          >
            Cancel
          </button>
        </div>
      ) : null}
      <Section title="Waves">
        <DataTable<Wave>
          id="waves"
          wrap={false}
          rows={r.waves}
          rowKey={(w) => w.index}
          columns={[
            { title: 'Wave', rowHeader: true, cell: (w) => (w.index === 0 ? 'canary' : w.index) },
            { title: 'State', cell: (w) => <Badge state={w.state} /> },
            {
              title: 'Progress',
              cell: (w) => {
                const done = w.counts.committed ?? 0;
                return (
                  <>
                    <Bar
                      value={done}
                      max={w.size}
                      label={`wave ${w.index}: ${done} of ${w.size} committed`}
                    />
                    <span class="small">
                      {done} / {w.size}
                    </span>
                  </>
                );
              },
            },
            { title: 'Devices per state', class: 'row', cell: (w) => counted(w.counts) },
            { title: 'Reason', cell: (w) => w.reason ?? '' },
          ]}
        />
      </Section>
      {r.failures.length ? (
        <Section title="Failures">
          <DataTable<Failure>
            wrap={false}
            rows={r.failures}
            rowKey={(a) => a.id}
            columns={[
              {
                title: 'Device',
                rowHeader: true,
                cell: (a) => <a href={href(['devices', a.device])}>{a.device}</a>,
              },
              { title: 'Wave', cell: (a) => a.wave },
              { title: 'State', cell: (a) => <Badge state={a.state} /> },
              { title: 'Reason', cell: (a) => a.reason ?? '' },
            ]}
          />
        </Section>
      ) : null}
      <Section title="Versions in the target">
        <DataTable<Version>
          wrap={false}
          rows={r.versions}
          rowKey={(v) => v.version}
          columns={[
            { title: 'Version', cell: (v) => `v${v.version}` },
            { title: 'Devices', class: 'num', cell: (v) => v.devices },
            { title: 'Cameras', class: 'num', cell: (v) => v.cameras },
            { title: 'Mean detect fps', class: 'num', cell: (v) => v.meanDetectFps.toFixed(1) },
            { title: 'Mean latency', class: 'num', cell: (v) => `${v.meanDetectLatencyMs.toFixed(1)} ms` },
          ]}
        />
      </Section>
      <Section title="History">
        <ul class="plain">
          {r.history.map((h) => (
            <li key={`${h.at}-${h.state}-${h.device}-${h.wave}`}>
              {time(h.at)} · {h.state}
              {h.wave !== null ? ` · wave ${h.wave}` : ''}
              {h.device ? ` · ${h.device}` : ''}
              {h.reason ? ` · ${h.reason}` : ''}
            </li>
          ))}
        </ul>
      </Section>
    </>
  );
}

export function RolloutsPage({ id, query }: { id?: string | undefined; query: URLSearchParams }) {
  const canAct = useCan('operator');
  const [list, setList] = useState<RolloutAnswer[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (id) return;
    const load = () =>
      api<{ rollouts: RolloutAnswer[] }>('/api/v1/rollouts', { query: { limit: 50 } })
        .then((a) => setList(a.rollouts))
        .catch((err) => setError(describeError(err)));
    void load();
    const timer = setInterval(load, REFRESH_MS * 2);
    return () => clearInterval(timer);
  }, [id]);
  if (id === 'new' && canAct) return <Wizard query={query} />;
  if (id) return <Detail id={id} />;
  return (
    <>
      <h1>Rollouts</h1>
      {canAct ? (
        <p>
          <a class="button primary" href={href(['rollouts', 'new'])}>
            New rollout
          </a>
        </p>
      ) : null}
      <ErrorNote error={error} />
      {!list ? (
        <Loading what="rollouts" />
      ) : (
        <DataTable<RolloutAnswer>
          id="rollouts"
          rows={list}
          rowKey={(x) => x.id}
          empty="no rollout yet"
          columns={[
            { title: 'Name', rowHeader: true, cell: (x) => <a href={href(['rollouts', x.id])}>{x.name}</a> },
            {
              title: 'Artifact',
              cell: (x) => `${x.artifact.kind} ${x.artifact.name} v${x.artifact.version}`,
            },
            { title: 'State', cell: (x) => <Badge state={x.state} /> },
            { title: 'Wave', class: 'num', cell: (x) => x.currentWave },
            { title: 'Devices per state', class: 'row', cell: (x) => counted(x.counts) },
            { title: 'Created', cell: (x) => time(x.createdAt) },
          ]}
        />
      )}
    </>
  );
}
