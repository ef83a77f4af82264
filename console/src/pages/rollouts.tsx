import { useEffect, useState } from 'preact/hooks';
import { api, describeError } from '../api.ts';
import { Badge, Bar, ErrorNote, Loading, Section } from '../components/bits.tsx';
import { time } from '../format.ts';
import { href, navigate } from '../router.ts';
import { useCan } from '../session.ts';
import type { ArtifactListAnswer, RolloutAnswer, RolloutDetailAnswer, RolloutRequest } from '../types.ts';

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

function Wizard() {
  const [artifacts, setArtifacts] = useState<ArtifactListAnswer['artifacts']>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    void api<ArtifactListAnswer>('/api/v1/artifacts', { query: { limit: 200 } })
      .then((a) => setArtifacts(a.artifacts))
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
          const devices = text('devices')
            .split(/[\s,]+/)
            .filter(Boolean);
          const body: RolloutRequest = {
            name: text('name'),
            artifact: { kind: kind as 'model' | 'scene', name: name!, version: Number(version) },
            target: {
              ...(devices.length ? { devices } : {}),
              ...(text('hardwareClass') ? { hardwareClass: text('hardwareClass') } : {}),
            },
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
            <input name="name" required maxLength={100} />
          </label>
          <label>
            Artifact
            <select name="artifact" required>
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
            <input name="devices" />
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
        <table class="data" id="waves">
          <thead>
            <tr>
              <th scope="col">Wave</th>
              <th scope="col">State</th>
              <th scope="col">Progress</th>
              <th scope="col">Devices per state</th>
              <th scope="col">Reason</th>
            </tr>
          </thead>
          <tbody>
            {r.waves.map((w) => {
              const done = w.counts.committed ?? 0;
              return (
                <tr key={w.index}>
                  <th scope="row">{w.index === 0 ? 'canary' : w.index}</th>
                  <td>
                    <Badge state={w.state} />
                  </td>
                  <td>
                    <Bar
                      value={done}
                      max={w.size}
                      label={`wave ${w.index}: ${done} of ${w.size} committed`}
                    />
                    <span class="small">
                      {done} / {w.size}
                    </span>
                  </td>
                  <td class="row">{counted(w.counts)}</td>
                  <td>{w.reason ?? ''}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </Section>
      {r.failures.length ? (
        <Section title="Failures">
          <table class="data">
            <thead>
              <tr>
                <th scope="col">Device</th>
                <th scope="col">Wave</th>
                <th scope="col">State</th>
                <th scope="col">Reason</th>
              </tr>
            </thead>
            <tbody>
              {r.failures.map((a) => (
                <tr key={a.id}>
                  <th scope="row">
                    <a href={href(['devices', a.device])}>{a.device}</a>
                  </th>
                  <td>{a.wave}</td>
                  <td>
                    <Badge state={a.state} />
                  </td>
                  <td>{a.reason ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Section>
      ) : null}
      <Section title="Versions in the target">
        <table class="data">
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Devices</th>
              <th scope="col">Cameras</th>
              <th scope="col">Mean detect fps</th>
              <th scope="col">Mean latency</th>
            </tr>
          </thead>
          <tbody>
            {r.versions.map((v) => (
              <tr key={v.version}>
                <td>v{v.version}</td>
                <td class="num">{v.devices}</td>
                <td class="num">{v.cameras}</td>
                <td class="num">{v.meanDetectFps.toFixed(1)}</td>
                <td class="num">{v.meanDetectLatencyMs.toFixed(1)} ms</td>
              </tr>
            ))}
          </tbody>
        </table>
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

export function RolloutsPage({ id }: { id?: string | undefined }) {
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
  if (id === 'new' && canAct) return <Wizard />;
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
        <div class="table-wrap">
          <table class="data" id="rollouts">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Artifact</th>
                <th scope="col">State</th>
                <th scope="col">Wave</th>
                <th scope="col">Devices per state</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {list.length === 0 ? (
                <tr>
                  <td colSpan={6} class="muted">
                    no rollout yet
                  </td>
                </tr>
              ) : (
                list.map((r) => (
                  <tr key={r.id}>
                    <th scope="row">
                      <a href={href(['rollouts', r.id])}>{r.name}</a>
                    </th>
                    <td>
                      {r.artifact.kind} {r.artifact.name} v{r.artifact.version}
                    </td>
                    <td>
                      <Badge state={r.state} />
                    </td>
                    <td class="num">{r.currentWave}</td>
                    <td class="row">{counted(r.counts)}</td>
                    <td>{time(r.createdAt)}</td>
                  </tr>
                ))
              )}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
