import { useEffect, useState } from 'preact/hooks';
import { api, describeError } from '../api.ts';
import { Badge, ErrorNote, Loading } from '../components/bits.tsx';
import { ago, fixed } from '../format.ts';
import { hub } from '../live-stream.ts';
import { href, navigate } from '../router.ts';
import type { DevicesAnswer, DeviceView } from '../types.ts';

const PAGE_SIZE = 100;
const REFRESH_MS = 5000;
/** the filters, as the URL's query and GET /api/v1/devices take them */
const FILTERS = [
  'idPrefix',
  'status',
  'hardwareClass',
  'softwareVersion',
  'modelVersion',
  'sceneVersion',
] as const;
type Filters = Partial<Record<(typeof FILTERS)[number] | 'cursor', string>>;

function filtersOf(query: URLSearchParams): Filters {
  const f: Filters = {};
  for (const k of [...FILTERS, 'cursor'] as const) {
    const v = query.get(k);
    if (v) f[k] = v;
  }
  return f;
}

/** the distinct `name vN` of the cameras' model or scene */
function versions(d: DeviceView, kind: 'model' | 'scene'): string {
  const seen = new Set<string>();
  for (const c of d.telemetry?.cameras ?? []) {
    const v = c[kind];
    if (v) seen.add(`${v.name} v${v.version}`);
  }
  if (kind === 'model' && seen.size === 0)
    for (const m of d.identity?.models ?? []) seen.add(`${m.name} v${m.version}`);
  return seen.size ? [...seen].join(', ') : '–';
}

function DeviceRow({ d, now }: { d: DeviceView; now: number }) {
  const t = d.telemetryStale ? null : d.telemetry;
  return (
    <tr data-device={d.id}>
      <th scope="row">
        <a href={href(['devices', d.id])}>{d.id}</a>
      </th>
      <td>
        <Badge state={d.status} />
      </td>
      <td>
        <Badge state={d.health.status} />
        {d.health.reasons.length ? <div class="small muted">{d.health.reasons.join('; ')}</div> : null}
      </td>
      <td title={new Date(d.lastSeen).toLocaleString()}>{ago(d.lastSeen, now)}</td>
      <td>{d.identity?.software.version ?? '–'}</td>
      <td>{versions(d, 'model')}</td>
      <td>{versions(d, 'scene')}</td>
      {t ? (
        <>
          <td class="cams">
            {t.cameras.length
              ? t.cameras.map((c) => (
                  <div key={c.id}>
                    {c.id}: {fixed(c.fpsIn)} / {fixed(c.fpsDetect)}
                  </div>
                ))
              : '–'}
          </td>
          <td class="num">{fixed(t.cpuPercent, 0, ' %')}</td>
          <td class="num">{fixed(t.memoryUsedPercent, 0, ' %')}</td>
          <td class="num">{fixed(t.temperatureC, 0, ' °C')}</td>
          <td class="num">{t.spool.pending}</td>
        </>
      ) : (
        <td colSpan={5} class="stale">
          {d.telemetry
            ? `stale (last ${new Date(d.telemetryReceivedAt ?? d.telemetryAt ?? d.lastSeen).toLocaleTimeString()})`
            : 'no telemetry yet'}
        </td>
      )}
    </tr>
  );
}

export function FleetPage({ query }: { query: URLSearchParams }) {
  const filters = filtersOf(query);
  const key = JSON.stringify(filters);
  const [page, setPage] = useState<DevicesAnswer | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [previous, setPrevious] = useState<string[]>([]);
  const [now, setNow] = useState(Date.now());

  useEffect(() => {
    let stop = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      try {
        const answer = await api<DevicesAnswer>('/api/v1/devices', {
          query: { ...filters, limit: PAGE_SIZE },
        });
        if (stop) return;
        setPage(answer);
        setNow(Date.now());
        setError(null);
      } catch (err) {
        if (!stop) setError(describeError(err));
      }
      if (!stop) timer = setTimeout(load, REFRESH_MS);
    };
    void load();
    // a device going offline or online shows at once, not at the next refresh
    const off = hub.on('status', (s) => {
      if (s.kind === 'device') {
        clearTimeout(timer);
        timer = setTimeout(load, 200);
      }
    });
    return () => {
      stop = true;
      clearTimeout(timer);
      off();
    };
  }, [key]);

  const apply = (next: Filters, keepPages = false) => {
    if (!keepPages) setPrevious([]);
    navigate(['fleet'], next, true);
  };

  return (
    <>
      <h1>Fleet</h1>
      <form
        key={key}
        class="filters"
        aria-label="filter devices"
        onSubmit={(e) => {
          e.preventDefault();
          const form = new FormData(e.currentTarget);
          const next: Filters = {};
          for (const k of FILTERS) {
            const v = String(form.get(k) ?? '').trim();
            if (v) next[k] = v;
          }
          apply(next);
        }}
      >
        <label>
          Site (id prefix)
          <input
            name="idPrefix"
            defaultValue={filters.idPrefix ?? ''}
            pattern="[a-z0-9_\-]{1,63}"
            placeholder="gate-"
          />
        </label>
        <label>
          Status
          <select name="status" defaultValue={filters.status ?? ''}>
            <option value="">any</option>
            <option value="online">online</option>
            <option value="offline">offline</option>
            <option value="unknown">unknown</option>
          </select>
        </label>
        <label>
          Hardware class
          <input name="hardwareClass" defaultValue={filters.hardwareClass ?? ''} placeholder="rk3588-npu" />
        </label>
        <label>
          Software version
          <input name="softwareVersion" defaultValue={filters.softwareVersion ?? ''} />
        </label>
        <label>
          Model version
          <input name="modelVersion" type="number" min={0} defaultValue={filters.modelVersion ?? ''} />
        </label>
        <label>
          Scene version
          <input name="sceneVersion" type="number" min={0} defaultValue={filters.sceneVersion ?? ''} />
        </label>
        <div class="row">
          <button type="submit" class="primary">
            Filter
          </button>
          <button type="button" onClick={() => apply({})}>
            Clear
          </button>
        </div>
      </form>
      <ErrorNote error={error} />
      {page === null ? (
        <Loading what="devices" />
      ) : (
        <>
          <div class="table-wrap">
            <table id="devices" class="data">
              <caption class="sr-only">devices, by id</caption>
              <thead>
                <tr>
                  <th scope="col">Device</th>
                  <th scope="col">Status</th>
                  <th scope="col">Health</th>
                  <th scope="col">Last seen</th>
                  <th scope="col">Software</th>
                  <th scope="col">Model</th>
                  <th scope="col">Scene</th>
                  <th scope="col">Cameras (fps in / detect)</th>
                  <th scope="col">CPU</th>
                  <th scope="col">Memory</th>
                  <th scope="col">Temp.</th>
                  <th scope="col">Spool</th>
                </tr>
              </thead>
              <tbody>
                {page.devices.length === 0 ? (
                  <tr>
                    <td colSpan={12} class="muted">
                      {Object.keys(filters).length
                        ? 'no device matches these filters'
                        : 'no device has connected yet'}
                    </td>
                  </tr>
                ) : (
                  page.devices.map((d) => <DeviceRow key={d.id} d={d} now={now} />)
                )}
              </tbody>
            </table>
          </div>
          <nav class="pager" aria-label="device pages">
            <button
              type="button"
              disabled={!filters.cursor}
              onClick={() => {
                const rest = previous.slice(0, -1);
                setPrevious(rest);
                apply({ ...filters, cursor: previous.at(-1) }, true);
              }}
            >
              Previous page
            </button>
            <span class="muted">
              {page.devices.length} devices{page.devices[0] ? ` from ${page.devices[0].id}` : ''}
            </span>
            <button
              type="button"
              disabled={!page.nextCursor}
              onClick={() => {
                setPrevious([...previous, filters.cursor ?? '']);
                apply({ ...filters, cursor: page.nextCursor ?? undefined }, true);
              }}
            >
              Next page
            </button>
          </nav>
        </>
      )}
    </>
  );
}
