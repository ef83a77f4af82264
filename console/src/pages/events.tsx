import { memo } from 'preact/compat';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, describeError, type Query } from '../api.ts';
import { Badge, ErrorNote, Loading } from '../components/bits.tsx';
import { Snapshot } from '../components/snapshot.tsx';
import { clock, csvField, duration, fromLocalInput, localInput, time } from '../format.ts';
import { describe, groupIncidents, type Incident, startedAt } from '../incidents.ts';
import { hub } from '../live-stream.ts';
import { href, navigate } from '../router.ts';
import type { EventsAnswer, StoredEventView } from '../types.ts';

const FILTERS = ['device', 'camera', 'rule', 'class', 'from', 'to'] as const;
type Filters = Partial<Record<(typeof FILTERS)[number], string>>;
const PAGE = 200;
/** incidents kept on the page; older ones drop off the end (the API keeps them) */
const MAX_INCIDENTS = 500;
const EXPORT_PAGE = 500;
const EXPORT_PAGES = 40;

function filtersOf(query: URLSearchParams): Filters {
  const f: Filters = {};
  for (const k of FILTERS) {
    const v = query.get(k);
    if (v) f[k] = v;
  }
  return f;
}

/** the live stream's own selection (GET /api/v1/events/stream), applied to the tab's one stream */
function matches(f: Filters, m: StoredEventView): boolean {
  const e = m.event;
  const at = Date.parse(e.at);
  return (
    (!f.device || e.device === f.device) &&
    (!f.camera || e.camera === f.camera) &&
    (!f.rule || e.rule === f.rule) &&
    (!f.class || e.label === f.class) &&
    (!f.from || at >= Date.parse(f.from)) &&
    (!f.to || at < Date.parse(f.to))
  );
}

const CSV_COLUMNS = [
  'device',
  'camera',
  'event',
  'rule',
  'ruleType',
  'label',
  'trackId',
  'zone',
  'line',
  'direction',
  'startedAt',
  'endedAt',
  'lastPhase',
  'messages',
  'maxScore',
  'snapshot',
];

export function incidentsCsv(incidents: Incident[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const i of incidents) {
    const e = i.latest;
    const snap = i.withSnapshot?.snapshot;
    lines.push(
      [
        e.device,
        e.camera,
        e.id,
        e.rule,
        e.ruleType,
        e.label,
        e.trackId,
        e.zone,
        e.line,
        e.direction,
        startedAt(i),
        e.endedAt,
        e.phase,
        i.messages.length,
        Math.max(...i.messages.map((m) => m.event.score)).toFixed(3),
        snap ? `/api/v1/devices/${e.device}/snapshots/${snap.id}` : '',
      ]
        .map(csvField)
        .join(','),
    );
  }
  return `${lines.join('\r\n')}\r\n`;
}

function IncidentDetail({ incident, onClose }: { incident: Incident; onClose: () => void }) {
  const e = incident.latest;
  const shot = incident.withSnapshot;
  const close = useRef<HTMLButtonElement>(null);
  useEffect(() => close.current?.focus(), [incident.key]);
  return (
    <aside class="card detail" aria-label="incident" onKeyDown={(k) => k.key === 'Escape' && onClose()}>
      <header class="card-head">
        <h2>{describe(e)}</h2>
        <button type="button" ref={close} onClick={onClose}>
          Close
        </button>
      </header>
      <p>
        <a href={href(['devices', e.device])}>{e.device}</a> / {e.camera} · started{' '}
        {time(startedAt(incident))}
        {e.endedAt ? ` · ended ${time(e.endedAt)}` : ' · still open'}
      </p>
      {shot?.snapshot ? (
        <Snapshot device={shot.device} snapshot={shot.snapshot} box={shot.box} label={describe(shot)} large />
      ) : (
        <p class="muted">no snapshot</p>
      )}
      <table class="data">
        <caption>messages of this incident</caption>
        <thead>
          <tr>
            <th scope="col">seq</th>
            <th scope="col">phase</th>
            <th scope="col">at</th>
            <th scope="col">score</th>
            <th scope="col">received</th>
          </tr>
        </thead>
        <tbody>
          {incident.messages.map((m) => (
            <tr key={m.cursor}>
              <td>{m.event.seq}</td>
              <td>
                <Badge state={m.event.phase} />
              </td>
              <td>{time(m.event.at)}</td>
              <td>{m.event.score.toFixed(2)}</td>
              <td>{clock(m.receivedAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </aside>
  );
}

/**
 * One incident's row. Rendered again only when its incident changed (`version`) or its selection
 * did: the list is re-rendered for every batch of live messages, most rows are unchanged.
 */
const IncidentRow = memo(
  ({
    incident: i,
    selected,
    onSelect,
  }: {
    incident: Incident;
    version: string;
    selected: boolean;
    onSelect: (key: string) => void;
  }) => {
    const e = i.latest;
    const shot = i.withSnapshot;
    const end = e.endedAt ? Date.parse(e.endedAt) : Date.parse(e.at);
    return (
      <tr data-event={e.id} class={selected ? 'selected' : ''}>
        <td>
          {shot?.snapshot ? (
            <Snapshot device={shot.device} snapshot={shot.snapshot} box={shot.box} label={describe(shot)} />
          ) : (
            <span class="muted">–</span>
          )}
        </td>
        <td>
          <button type="button" class="link" onClick={() => onSelect(i.key)}>
            {describe(e)}
          </button>
        </td>
        <td>
          <a href={href(['devices', e.device])}>{e.device}</a> / {e.camera}
        </td>
        <td>
          <Badge state={e.phase} />
        </td>
        <td>{time(startedAt(i))}</td>
        <td>{duration(Math.max(0, end - Date.parse(startedAt(i))))}</td>
        <td class="num">{i.messages.length}</td>
      </tr>
    );
  },
);

export function EventsPage({ query }: { query: URLSearchParams }) {
  const filters = filtersOf(query);
  const key = JSON.stringify(filters);
  const groups = useRef(new Map<string, Incident>());
  const [list, setList] = useState<Incident[] | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [exporting, setExporting] = useState(false);

  const trim = (all: Incident[]) => {
    for (const dropped of all.slice(MAX_INCIDENTS)) groups.current.delete(dropped.key);
    return all.slice(0, MAX_INCIDENTS);
  };

  const load = async (from: string | null) => {
    try {
      const answer = await api<EventsAnswer>('/api/v1/events', {
        query: { ...filters, limit: PAGE, cursor: from } as Query,
      });
      setList(trim(groupIncidents(answer.events, groups.current)));
      setCursor(answer.nextCursor);
      setError(null);
    } catch (err) {
      setError(describeError(err));
    }
  };

  useEffect(() => {
    groups.current = new Map();
    setList(null);
    setSelected(null);
    void load(null);
    // live messages are taken together once a frame (once a second in a hidden tab): at hundreds
    // a second, a render per message painted fewer rows a second than arrived and fell behind
    let queued: StoredEventView[] = [];
    let due: number | undefined;
    const flush = () => {
      due = undefined;
      const batch = queued;
      queued = [];
      setList(trim(groupIncidents(batch, groups.current)));
    };
    const stop = hub.on('event', (m) => {
      if (!matches(filters, m)) return;
      queued.push(m);
      due ??= document.hidden ? window.setTimeout(flush, 1000) : requestAnimationFrame(flush);
    });
    return () => {
      stop();
      if (due !== undefined) {
        cancelAnimationFrame(due);
        clearTimeout(due);
      }
    };
  }, [key]);

  const exportCsv = async () => {
    setExporting(true);
    try {
      const all = new Map<string, Incident>();
      let next: string | null = null;
      for (let i = 0; i < EXPORT_PAGES; i++) {
        const answer: EventsAnswer = await api<EventsAnswer>('/api/v1/events', {
          query: { ...filters, limit: EXPORT_PAGE, cursor: next } as Query,
        });
        groupIncidents(answer.events, all);
        next = answer.nextCursor;
        if (!next) break;
      }
      const blob = new Blob([incidentsCsv(groupIncidents([], all))], { type: 'text/csv' });
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = `argus-events-${new Date().toISOString().replace(/[:.]/g, '-')}.csv`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    } catch (err) {
      setError(describeError(err));
    }
    setExporting(false);
  };

  const chosen = selected ? groups.current.get(selected) : undefined;
  return (
    <>
      <h1>Events</h1>
      <form
        key={key}
        class="filters"
        aria-label="filter events"
        onSubmit={(e) => {
          e.preventDefault();
          const form = new FormData(e.currentTarget);
          const next: Filters = {};
          for (const k of FILTERS) {
            const raw = String(form.get(k) ?? '').trim();
            const v = k === 'from' || k === 'to' ? fromLocalInput(raw) : raw;
            if (v) next[k] = v;
          }
          navigate(['events'], next, true);
        }}
      >
        <label>
          Device
          <input name="device" defaultValue={filters.device ?? ''} />
        </label>
        <label>
          Camera
          <input name="camera" defaultValue={filters.camera ?? ''} />
        </label>
        <label>
          Rule
          <input name="rule" defaultValue={filters.rule ?? ''} />
        </label>
        <label>
          Class
          <input name="class" defaultValue={filters.class ?? ''} placeholder="person" />
        </label>
        <label>
          From
          <input name="from" type="datetime-local" defaultValue={localInput(filters.from)} />
        </label>
        <label>
          To
          <input name="to" type="datetime-local" defaultValue={localInput(filters.to)} />
        </label>
        <div class="row">
          <button type="submit" class="primary">
            Filter
          </button>
          <button type="button" onClick={() => navigate(['events'], {}, true)}>
            Clear
          </button>
          <button type="button" onClick={() => void exportCsv()} disabled={exporting}>
            {exporting ? 'Exporting…' : 'Export CSV'}
          </button>
        </div>
      </form>
      <ErrorNote error={error} />
      <div class={chosen ? 'split' : ''}>
        {list === null ? (
          <Loading what="events" />
        ) : (
          <div class="table-wrap">
            <table id="events" class="data">
              <caption class="sr-only">incidents, newest first; live</caption>
              <thead>
                <tr>
                  <th scope="col">Snapshot</th>
                  <th scope="col">What</th>
                  <th scope="col">Where</th>
                  <th scope="col">Phase</th>
                  <th scope="col">Started</th>
                  <th scope="col">Duration</th>
                  <th scope="col">Messages</th>
                </tr>
              </thead>
              <tbody aria-live="polite" aria-relevant="additions">
                {list.length === 0 ? (
                  <tr>
                    <td colSpan={7} class="muted">
                      no events{Object.keys(filters).length ? ' match these filters' : ' yet'}; new ones
                      appear here live
                    </td>
                  </tr>
                ) : (
                  list.map((i) => (
                    <IncidentRow
                      key={i.key}
                      incident={i}
                      version={`${i.lastCursor}:${i.messages.length}`}
                      selected={selected === i.key}
                      onSelect={setSelected}
                    />
                  ))
                )}
              </tbody>
            </table>
            {cursor ? (
              <button type="button" onClick={() => void load(cursor)}>
                Load older events
              </button>
            ) : null}
          </div>
        )}
        {chosen ? <IncidentDetail incident={chosen} onClose={() => setSelected(null)} /> : null}
      </div>
    </>
  );
}
