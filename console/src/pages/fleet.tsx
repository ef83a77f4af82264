import type { ComponentChildren } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api } from '../api.ts';
import { Badge, ErrorNote, Loading } from '../components/bits.tsx';
import { type Column, DataTable, MoreButton, usePaged } from '../components/data-table.tsx';
import { ago, fixed } from '../format.ts';
import { hub } from '../live-stream.ts';
import { href, navigate } from '../router.ts';
import type { DevicesAnswer, DeviceView } from '../types.ts';

/** rows read at a time, unless the URL's `limit` (1-500, as the API takes it) says otherwise */
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
type Filters = Partial<Record<(typeof FILTERS)[number], string>>;

function pageSize(query: URLSearchParams): number {
  const n = Number(query.get('limit'));
  return Number.isInteger(n) && n >= 1 && n <= 500 ? n : PAGE_SIZE;
}

function filtersOf(query: URLSearchParams): Filters {
  const f: Filters = {};
  for (const k of FILTERS) {
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

/** its last telemetry, unless it is too old to be shown as current */
const current = (d: DeviceView) => (d.telemetryStale ? null : d.telemetry);

/** the five telemetry columns: one line in their place when the figures are stale or missing */
function telemetry(
  title: string,
  cell: (t: NonNullable<DeviceView['telemetry']>) => ComponentChildren,
  cls?: string,
): Column<DeviceView> {
  return {
    title,
    class: (d) => (current(d) ? cls : 'stale'),
    span: (d) => (current(d) ? 1 : TELEMETRY_COLUMNS),
    cell: (d) => {
      const t = current(d);
      if (t) return cell(t);
      return d.telemetry
        ? `stale (last ${new Date(d.telemetryReceivedAt ?? d.telemetryAt ?? d.lastSeen).toLocaleTimeString()})`
        : 'no telemetry yet';
    },
  };
}
const TELEMETRY_COLUMNS = 5;

function columns(now: number): Column<DeviceView>[] {
  return [
    { title: 'Device', rowHeader: true, cell: (d) => <a href={href(['devices', d.id])}>{d.id}</a> },
    { title: 'Status', cell: (d) => <Badge state={d.status} /> },
    {
      title: 'Health',
      cell: (d) => (
        <>
          <Badge state={d.health.status} />
          {d.health.reasons.length ? <div class="small muted">{d.health.reasons.join('; ')}</div> : null}
        </>
      ),
    },
    {
      title: 'Last seen',
      cell: (d) => (
        <time dateTime={d.lastSeen} title={new Date(d.lastSeen).toLocaleString()}>
          {ago(d.lastSeen, now)}
        </time>
      ),
    },
    { title: 'Software', cell: (d) => d.identity?.software.version ?? '–' },
    { title: 'Model', cell: (d) => versions(d, 'model') },
    { title: 'Scene', cell: (d) => versions(d, 'scene') },
    telemetry(
      'Cameras (fps in / detect)',
      (t) =>
        t.cameras.length
          ? t.cameras.map((c) => (
              <div key={c.id}>
                {c.id}: {fixed(c.fpsIn)} / {fixed(c.fpsDetect)}
              </div>
            ))
          : '–',
      'cams',
    ),
    telemetry('CPU', (t) => fixed(t.cpuPercent, 0, ' %'), 'num'),
    telemetry('Memory', (t) => fixed(t.memoryUsedPercent, 0, ' %'), 'num'),
    telemetry('Temp.', (t) => fixed(t.temperatureC, 0, ' °C'), 'num'),
    telemetry('Spool', (t) => t.spool.pending, 'num'),
  ];
}

export function FleetPage({ query }: { query: URLSearchParams }) {
  const filters = filtersOf(query);
  const limit = pageSize(query);
  const key = `${JSON.stringify(filters)}#${limit}`;
  const [now, setNow] = useState(Date.now());
  const devices = usePaged(
    (cursor) =>
      api<DevicesAnswer>('/api/v1/devices', { query: { ...filters, limit, cursor } }).then((a) => {
        setNow(Date.now());
        return { items: a.devices, nextCursor: a.nextCursor };
      }),
    key,
  );
  const reload = useRef(devices.reload);
  reload.current = devices.reload;

  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const refresh = (inMs: number) => {
      clearTimeout(timer);
      timer = setTimeout(() => void reload.current().finally(() => refresh(REFRESH_MS)), inMs);
    };
    refresh(REFRESH_MS);
    // a device going offline or online shows at once, not at the next refresh
    const off = hub.on('status', (s) => {
      if (s.kind === 'device') refresh(200);
    });
    return () => {
      clearTimeout(timer);
      off();
    };
  }, [key]);

  const cols = useMemo(() => columns(now), [now]);
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
          navigate(['fleet'], limit === PAGE_SIZE ? next : { ...next, limit: String(limit) }, true);
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
          <button type="button" onClick={() => navigate(['fleet'], {}, true)}>
            Clear
          </button>
        </div>
      </form>
      <ErrorNote error={devices.error} />
      {devices.items === null ? (
        <Loading what="devices" />
      ) : (
        <>
          <DataTable<DeviceView>
            id="devices"
            caption="devices, by id"
            captionHidden
            columns={cols}
            rows={devices.items}
            rowKey={(d) => d.id}
            rowProps={(d) => ({ 'data-device': d.id })}
            empty={
              Object.keys(filters).length ? 'no device matches these filters' : 'no device has connected yet'
            }
          />
          <nav class="pager" aria-label="device pages">
            <span class="muted" role="status">
              {devices.items.length} devices shown
            </span>
            <MoreButton more={devices.more} label={`Next ${limit} devices`} />
          </nav>
        </>
      )}
    </>
  );
}
