import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, describeError } from '../api.ts';
import { runCommand } from '../commands.ts';
import { Badge, ErrorNote, Loading, Section } from '../components/bits.tsx';
import { Chart, type Series } from '../components/chart.tsx';
import { DataTable, MoreButton, usePaged } from '../components/data-table.tsx';
import { Snapshot } from '../components/snapshot.tsx';
import { ago, clock, fixed, time } from '../format.ts';
import { hub } from '../live-stream.ts';
import { href } from '../router.ts';
import { useCan } from '../session.ts';
import type {
  CommandHistoryAnswer,
  DeviceRolloutsAnswer,
  DeviceView,
  EventsAnswer,
  StatusChangeView,
  StoredEventView,
  TelemetryAnswer,
} from '../types.ts';

type Point = TelemetryAnswer['telemetry'][number];
const RANGES = [
  { label: '15 min', ms: 15 * 60_000 },
  { label: '1 h', ms: 3_600_000 },
  { label: '6 h', ms: 6 * 3_600_000 },
  { label: '24 h', ms: 24 * 3_600_000 },
];
/** pages of telemetry read for a chart at most (1,000 points each) */
const MAX_PAGES = 5;

function TelemetryCharts({ id }: { id: string }) {
  const [range, setRange] = useState(RANGES[1]!.ms);
  const [points, setPoints] = useState<Point[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let stop = false;
    const load = async () => {
      const all: Point[] = [];
      let cursor: string | null = null;
      const from = new Date(Date.now() - range).toISOString();
      try {
        for (let i = 0; i < MAX_PAGES; i++) {
          const page: TelemetryAnswer = await api<TelemetryAnswer>(
            `/api/v1/devices/${encodeURIComponent(id)}/telemetry`,
            {
              query: { from, limit: 1000, cursor },
            },
          );
          all.push(...page.telemetry);
          cursor = page.nextCursor;
          if (!cursor) break;
        }
        if (!stop) setPoints(all);
      } catch (err) {
        if (!stop) setError(describeError(err));
      }
    };
    void load();
    const timer = setInterval(load, 10_000);
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, [id, range]);

  const charts = useMemo(() => {
    if (!points) return null;
    const times = points.map((p) => Date.parse(p.at) / 1000);
    const cameras = [...new Set(points.flatMap((p) => p.telemetry.cameras.map((c) => c.id)))].sort();
    const perCamera = (field: 'fpsIn' | 'fpsDetect' | 'detectLatencyMs', suffix: string): Series[] =>
      cameras.map((cam) => ({
        label: `${cam}${suffix}`,
        values: points.map((p) => p.telemetry.cameras.find((c) => c.id === cam)?.[field] ?? null),
      }));
    return {
      times,
      fps: [...perCamera('fpsIn', ' in'), ...perCamera('fpsDetect', ' detect')],
      latency: perCamera('detectLatencyMs', ''),
      cpu: [{ label: 'CPU', values: points.map((p) => p.telemetry.cpuPercent) }],
      temperature: [{ label: 'temperature', values: points.map((p) => p.telemetry.temperatureC) }],
      spool: [{ label: 'pending', values: points.map((p) => p.telemetry.spool.pending) }],
    };
  }, [points]);

  return (
    <Section
      title="Telemetry"
      actions={
        <label class="inline">
          Range{' '}
          <select value={range} onChange={(e) => setRange(Number(e.currentTarget.value))}>
            {RANGES.map((r) => (
              <option key={r.ms} value={r.ms}>
                {r.label}
              </option>
            ))}
          </select>
        </label>
      }
    >
      <ErrorNote error={error} />
      {!charts ? (
        <Loading what="telemetry" />
      ) : charts.times.length === 0 ? (
        <p class="muted">no telemetry in this range</p>
      ) : (
        <div class="charts">
          <Chart title="Frames per second" unit="fps" times={charts.times} series={charts.fps} />
          <Chart title="Detection latency (p50)" unit="ms" times={charts.times} series={charts.latency} />
          <Chart title="CPU" unit="%" times={charts.times} series={charts.cpu} />
          <Chart title="Temperature" unit="°C" times={charts.times} series={charts.temperature} />
          <Chart title="Spool depth" unit="events" times={charts.times} series={charts.spool} />
        </div>
      )}
    </Section>
  );
}

interface CameraShot {
  snapshot: { id: string; width: number; height: number };
  at: string;
  source: 'command' | 'event';
}

function CameraCard({ device, camera, state }: { device: DeviceView; camera: string; state: string }) {
  const canAct = useCan('operator');
  const [shot, setShot] = useState<CameraShot | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const take = async () => {
    setBusy(true);
    setNote('asking the camera for a snapshot…');
    try {
      const c = await runCommand(device.id, 'snapshot', { camera });
      const data = c.result?.data as { snapshot?: CameraShot['snapshot'] } | undefined;
      if (c.result?.ok && data?.snapshot) {
        setShot({ snapshot: data.snapshot, at: c.result.at, source: 'command' });
        setNote(null);
      } else setNote(c.result ? c.result.message : 'the device has not answered yet');
    } catch (err) {
      setNote(describeError(err));
    }
    setBusy(false);
  };
  useEffect(() => {
    let stop = false;
    // a viewer sees the camera's latest event snapshot; an operator asks for a fresh one
    if (canAct && device.status === 'online') void take();
    else
      void api<EventsAnswer>('/api/v1/events', { query: { device: device.id, camera, limit: 50 } })
        .then((page) => {
          const e = page.events.find((m) => m.event.snapshot)?.event;
          if (!stop && e?.snapshot) setShot({ snapshot: e.snapshot, at: e.at, source: 'event' });
        })
        .catch(() => undefined);
    return () => {
      stop = true;
    };
  }, [device.id, camera]);
  return (
    <article class="camera card" aria-label={`camera ${camera}`}>
      <header class="card-head">
        <h3>{camera}</h3>
        <Badge state={state} />
      </header>
      {shot ? (
        <>
          <Snapshot device={device.id} snapshot={shot.snapshot} label={`camera ${camera}`} />
          <p class="small muted">
            {shot.source === 'command' ? 'taken' : 'latest event'} {time(shot.at)}
          </p>
        </>
      ) : (
        <div class="snapshot-missing">no snapshot</div>
      )}
      {note ? (
        <p class="small" role="status">
          {note}
        </p>
      ) : null}
      <div class="row">
        <a href={`/live/${encodeURIComponent(device.id)}/${encodeURIComponent(camera)}`}>Live view</a>
        {canAct ? (
          <button type="button" disabled={busy} onClick={() => void take()}>
            New snapshot
          </button>
        ) : null}
      </div>
    </article>
  );
}

function Commands({ device }: { device: DeviceView }) {
  const canAct = useCan('operator');
  const [error, setError] = useState<string | null>(null);
  const base = `/api/v1/devices/${encodeURIComponent(device.id)}`;
  const history = usePaged(
    (cursor) =>
      api<CommandHistoryAnswer>(`${base}/commands`, { query: { limit: 20, cursor } }).then((a) => ({
        items: a.commands,
        nextCursor: a.nextCursor,
      })),
    device.id,
  );
  useEffect(() => {
    const timer = setInterval(() => void history.reload(), 10_000);
    return () => clearInterval(timer);
  }, [device.id]);
  const cameras = device.cameras.map((c) => c.camera);
  const send = async (name: string, args: Record<string, unknown>) => {
    setError(null);
    try {
      const sent = runCommand(device.id, name, args);
      // the command is listed at once, its result once the device answered
      setTimeout(() => void history.reload(), 300);
      await sent;
    } catch (err) {
      setError(describeError(err));
    }
    await history.reload();
  };
  return (
    <Section title="Commands">
      {canAct ? (
        <form
          class="row"
          aria-label="send a command"
          onSubmit={(e) => {
            e.preventDefault();
            const form = new FormData(e.currentTarget);
            const name = String(form.get('name'));
            const camera = String(form.get('camera') ?? '');
            void send(name, name === 'restart-camera' || name === 'snapshot' ? { camera } : {});
          }}
        >
          <label class="inline">
            Command{' '}
            <select name="name">
              <option value="reload-config">reload-config</option>
              <option value="restart-camera">restart-camera</option>
              <option value="snapshot">snapshot</option>
            </select>
          </label>
          <label class="inline">
            Camera{' '}
            <select name="camera">
              {cameras.map((c) => (
                <option key={c} value={c}>
                  {c}
                </option>
              ))}
            </select>
          </label>
          <button type="submit" class="primary">
            Send
          </button>
        </form>
      ) : null}
      <ErrorNote error={error ?? history.error} />
      {!history.items ? (
        <Loading what="commands" />
      ) : (
        <DataTable
          id="commands"
          caption="commands sent to this device, newest first"
          wrap={false}
          rows={history.items}
          rowKey={(c) => c.id}
          empty="no command sent yet"
          columns={[
            {
              title: 'Command',
              cell: (c) => (
                <>
                  {c.name} {Object.keys(c.args).length ? <code>{JSON.stringify(c.args)}</code> : null}
                </>
              ),
            },
            { title: 'Issued', cell: (c) => time(c.issuedAt) },
            {
              title: 'Result',
              cell: (c) =>
                c.result ? (
                  <>
                    <Badge state={c.result.ok ? 'ok' : 'failed'}>{c.result.ok ? 'ok' : 'failed'}</Badge>{' '}
                    {c.result.message}
                  </>
                ) : (
                  <span class="muted">no answer yet</span>
                ),
            },
            { title: 'Answered', cell: (c) => time(c.resultAt) },
          ]}
        />
      )}
      <MoreButton more={history.more} label="Older commands" />
    </Section>
  );
}

type DeviceRollout = DeviceRolloutsAnswer['rollouts'][number];

function RolloutHistory({ id }: { id: string }) {
  const history = usePaged(
    (cursor) =>
      api<DeviceRolloutsAnswer>(`/api/v1/devices/${encodeURIComponent(id)}/rollouts`, {
        query: { limit: 10, cursor },
      }).then((a) => ({ items: a.rollouts, nextCursor: a.nextCursor })),
    id,
  );
  useEffect(() => {
    const timer = setInterval(() => void history.reload(), 10_000);
    return () => clearInterval(timer);
  }, [id]);
  return (
    <Section title="Rollout history">
      <ErrorNote error={history.error} />
      {!history.items ? (
        <Loading what="rollout history" />
      ) : (
        <DataTable<DeviceRollout>
          id="device-rollouts"
          caption="rollouts that touched this device, newest first"
          wrap={false}
          rows={history.items}
          rowKey={(r) => r.id}
          empty="no rollout has touched this device"
          columns={[
            {
              title: 'Rollout',
              rowHeader: true,
              cell: (r) => <a href={href(['rollouts', r.id])}>{r.name}</a>,
            },
            {
              title: 'Artifact',
              cell: (r) => `${r.artifact.kind} ${r.artifact.name} v${r.artifact.version}`,
            },
            { title: 'Rollout state', cell: (r) => <Badge state={r.state} /> },
            {
              title: 'This device',
              cell: (r) =>
                r.assignments.map((a) => (
                  <span key={a.id} class="count">
                    {a.purpose === 'rollback' ? 'rollback ' : ''}
                    <Badge state={a.state} />
                  </span>
                )),
            },
            {
              title: 'Reason',
              cell: (r) =>
                r.assignments
                  .map((a) => a.reason)
                  .filter(Boolean)
                  .join('; '),
            },
            { title: 'Started', cell: (r) => time(r.createdAt) },
          ]}
        />
      )}
      <MoreButton more={history.more} label="Older rollouts" />
    </Section>
  );
}

function StatusHistory({ id }: { id: string }) {
  const [changes, setChanges] = useState<StatusChangeView[] | null>(null);
  useEffect(() => {
    const load = () =>
      api<{ changes: StatusChangeView[] }>(`/api/v1/devices/${encodeURIComponent(id)}/status-history`, {
        query: { limit: 20 },
      })
        .then((a) => setChanges(a.changes))
        .catch(() => setChanges([]));
    void load();
    return hub.on('status', (s) => {
      if (s.device === id) void load();
    });
  }, [id]);
  return (
    <Section title="Status history">
      {!changes ? (
        <Loading what="status history" />
      ) : changes.length === 0 ? (
        <p class="muted">no status changes kept</p>
      ) : (
        <table class="data">
          <thead>
            <tr>
              <th scope="col">Received</th>
              <th scope="col">What</th>
              <th scope="col">State</th>
              <th scope="col">Reason</th>
            </tr>
          </thead>
          <tbody>
            {changes.map((c) => (
              <tr key={`${c.receivedAt}-${c.kind}-${c.camera}-${c.state}`}>
                <td>{time(c.receivedAt)}</td>
                <td>{c.kind === 'device' ? 'device' : `camera ${c.camera}`}</td>
                <td>
                  <Badge state={c.state} />
                </td>
                <td>
                  {c.reason ?? ''}{' '}
                  {c.source === 'control-plane' ? <span class="muted">(control plane)</span> : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}

function RecentEvents({ id }: { id: string }) {
  const [events, setEvents] = useState<StoredEventView[]>([]);
  useEffect(() => {
    void api<EventsAnswer>('/api/v1/events', { query: { device: id, limit: 10 } })
      .then((a) => setEvents(a.events))
      .catch(() => undefined);
    return hub.on('event', (m) => {
      if (m.event.device === id) setEvents((list) => [m, ...list].slice(0, 10));
    });
  }, [id]);
  return (
    <Section title="Latest events">
      {events.length === 0 ? (
        <p class="muted">none yet</p>
      ) : (
        <ul class="plain">
          {events.map((m) => (
            <li key={m.cursor}>
              {clock(m.event.at)} · {m.event.camera} · {m.event.ruleType} {m.event.rule}: {m.event.label} (
              {m.event.phase})
            </li>
          ))}
        </ul>
      )}
    </Section>
  );
}

export function DevicePage({ id }: { id: string }) {
  const [device, setDevice] = useState<DeviceView | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let stop = false;
    const load = () =>
      api<DeviceView>(`/api/v1/devices/${encodeURIComponent(id)}`)
        .then((d) => {
          if (stop) return;
          setDevice(d);
          setError(null);
        })
        .catch((err) => {
          if (!stop) setError(describeError(err));
        });
    void load();
    const timer = setInterval(load, 5000);
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, [id]);
  if (!device)
    return (
      <>
        <h1>{id}</h1>
        <ErrorNote error={error} />
        {error ? null : <Loading what="the device" />}
      </>
    );
  const t = device.telemetry;
  return (
    <>
      <h1>
        {device.id} <Badge state={device.status} /> <Badge state={device.health.status} />
      </h1>
      <ErrorNote error={error} />
      <dl class="facts">
        <dt>Last seen</dt>
        <dd>{ago(device.lastSeen)}</dd>
        <dt>Hardware</dt>
        <dd>{device.identity?.hardwareClass ?? '–'}</dd>
        <dt>Providers</dt>
        <dd>{device.identity?.executionProviders.join(', ') || '–'}</dd>
        <dt>Software</dt>
        <dd>{device.identity?.software.version ?? '–'}</dd>
        <dt>Models</dt>
        <dd>{device.identity?.models.map((m) => `${m.name} v${m.version}`).join(', ') || '–'}</dd>
        <dt>CPU / memory</dt>
        <dd>
          {t && !device.telemetryStale
            ? `${fixed(t.cpuPercent, 0, ' %')} / ${fixed(t.memoryUsedPercent, 0, ' %')}`
            : 'stale'}
        </dd>
        {device.health.reasons.length ? (
          <>
            <dt>Health</dt>
            <dd>{device.health.reasons.join('; ')}</dd>
          </>
        ) : null}
      </dl>
      <Section title="Cameras">
        <div class="cameras">
          {device.cameras.length === 0 ? <p class="muted">no camera has reported</p> : null}
          {device.cameras.map((c) => (
            <CameraCard key={c.camera} device={device} camera={c.camera} state={c.state} />
          ))}
        </div>
      </Section>
      <TelemetryCharts id={id} />
      <Commands device={device} />
      <RolloutHistory id={id} />
      <StatusHistory id={id} />
      <RecentEvents id={id} />
    </>
  );
}
