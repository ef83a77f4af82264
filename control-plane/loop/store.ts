import { timeOrderedId } from '../../common/ids.ts';
import { Refused } from '../refused.ts';
import type { SqlAccess } from '../storage/sql-access.ts';

/**
 * Loop runs (table `loop_runs`, migration 12): the data–model loop of one site (issue 18) as a
 * job of the control plane. A run is `queued` when created, `running` while a worker executes it
 * (its `step`, `progress` and `message` updated as the loop reports them), then `succeeded` (the
 * gate passed and the signed candidate is in the artifact registry: `artifact`), `failed` (an
 * error, or the gate refused the candidate: `reason`, `passed` false) or `cancelled`. At most one
 * run per site is queued or running (a unique index on the active ones). A running run whose
 * worker went away is taken on again by the next worker holding the loop's lease: it resumes from
 * the run's work directory.
 */

export const LOOP_RUN_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type LoopRunState = (typeof LOOP_RUN_STATES)[number];

export interface LoopRun {
  id: string;
  site: string;
  state: LoopRunState;
  step: string | null;
  /** of the current step, 0..1 */
  progress: number;
  message: string | null;
  reason: string | null;
  cancelRequested: boolean;
  /** the worker running it (or that last ran it) */
  holder: string | null;
  passed: boolean | null;
  /** the registered candidate's artifact id */
  artifact: string | null;
  report: unknown;
  createdBy: string;
  createdAt: number;
  startedAt: number | null;
  endedAt: number | null;
  updatedAt: number;
}

export interface LoopRunPage {
  runs: LoopRun[];
  next: string | null;
}

interface Row {
  id: string;
  site: string;
  state: LoopRunState;
  step: string | null;
  progress_permille: number | string;
  message: string | null;
  reason: string | null;
  cancel_requested: number | string;
  holder: string | null;
  passed: number | string | null;
  artifact: string | null;
  report: string | null;
  created_by: string;
  created_at: number | string;
  started_at: number | string | null;
  ended_at: number | string | null;
  updated_at: number | string;
}

const COLUMNS =
  'id, site, state, step, progress_permille, message, reason, cancel_requested, holder, passed, artifact, report, created_by, created_at, started_at, ended_at, updated_at';
/** characters of a run's message and reason kept at most */
const MAX_TEXT = 2000;
/** characters of a run's report (JSON) kept at most; a larger one is replaced by a note */
export const MAX_REPORT_CHARS = 256 * 1024;
export const LOOP_RUN_CURSOR = /^(\d{1,16})\.([0-9a-f-]{36})$/;

const num = (v: number | string | null) => (v === null ? null : Number(v));

function runOf(r: Row): LoopRun {
  return {
    id: r.id,
    site: r.site,
    state: r.state,
    step: r.step,
    progress: Number(r.progress_permille) / 1000,
    message: r.message,
    reason: r.reason,
    cancelRequested: Number(r.cancel_requested) === 1,
    holder: r.holder,
    passed: r.passed === null ? null : Number(r.passed) === 1,
    artifact: r.artifact,
    report: r.report === null ? null : JSON.parse(r.report),
    createdBy: r.created_by,
    createdAt: Number(r.created_at),
    startedAt: num(r.started_at),
    endedAt: num(r.ended_at),
    updatedAt: Number(r.updated_at),
  };
}

const text = (s: string | undefined | null) => (s ? s.replaceAll('\u0000', '').slice(0, MAX_TEXT) : null);

function reportText(report: unknown): string | null {
  if (report === undefined) return null;
  const json = JSON.stringify(report);
  return json.length <= MAX_REPORT_CHARS
    ? json
    : JSON.stringify({
        truncated: true,
        chars: json.length,
        note: 'the whole report is in the run’s work directory',
      });
}

export class LoopRunStore {
  constructor(private readonly sql: SqlAccess) {}

  async get(id: string): Promise<LoopRun | undefined> {
    const { p } = this.sql;
    const rows = await this.sql.read<Row>(`SELECT ${COLUMNS} FROM loop_runs WHERE id = ${p(1)}`, [id]);
    return rows[0] && runOf(rows[0]);
  }

  /** the site's queued or running run, if any */
  async activeFor(site: string): Promise<LoopRun | undefined> {
    const { p } = this.sql;
    const rows = await this.sql.read<Row>(
      `SELECT ${COLUMNS} FROM loop_runs WHERE site = ${p(1)} AND active = 1`,
      [site],
    );
    return rows[0] && runOf(rows[0]);
  }

  /** a new queued run of `site`; a Refused (409) while the site has one queued or running */
  async create(site: string, by: string, now = Date.now()): Promise<LoopRun> {
    const { p } = this.sql;
    const id = timeOrderedId(now);
    const [outcome] = await this.sql.write([
      {
        sql: `INSERT INTO loop_runs (id, site, state, active, progress_permille, cancel_requested, created_by, created_at, updated_at)
          VALUES (${p(1)}, ${p(2)}, 'queued', 1, 0, 0, ${p(3)}, ${p(4)}, ${p(5)})
          ON CONFLICT (site) WHERE active = 1 DO NOTHING`,
        params: [id, site, by, now, now],
      },
    ]);
    if (outcome!.changes === 0) {
      const active = await this.activeFor(site);
      throw new Refused(
        `site ${site} has a loop run ${active?.state ?? 'queued'} already: ${active?.id ?? '(just ended)'}`,
        409,
        'wait for it (GET /api/v1/loop/runs/:id) or cancel it (POST /api/v1/loop/runs/:id/cancel)',
      );
    }
    return (await this.get(id))!;
  }

  /** newest first; `before` is the previous page's `next` */
  async list(limit: number, before?: string): Promise<LoopRunPage> {
    const { p } = this.sql;
    const m = before ? LOOP_RUN_CURSOR.exec(before) : null;
    if (before && !m)
      throw new Refused(
        `"${before}" is not a loop run cursor`,
        400,
        'pass the nextCursor of the previous page',
      );
    const rows = await this.sql.read<Row>(
      `SELECT ${COLUMNS} FROM loop_runs ${m ? `WHERE (created_at, id) < (${p(1)}, ${p(2)})` : ''}
        ORDER BY created_at DESC, id DESC LIMIT ${p(m ? 3 : 1)}`,
      m ? [Number(m[1]), m[2]!, limit + 1] : [limit + 1],
    );
    const runs = rows.slice(0, limit).map(runOf);
    const last = runs.at(-1);
    return { runs, next: rows.length > limit && last ? `${last.createdAt}.${last.id}` : null };
  }

  /** the oldest queued or running run (`site` only, when given): the lease holder's next work */
  async nextRunnable(site?: string): Promise<LoopRun | undefined> {
    const { p } = this.sql;
    const rows = await this.sql.read<Row>(
      `SELECT ${COLUMNS} FROM loop_runs WHERE active = 1 ${site !== undefined ? `AND site = ${p(1)}` : ''}
        ORDER BY created_at, id LIMIT 1`,
      site !== undefined ? [site] : [],
    );
    return rows[0] && runOf(rows[0]);
  }

  /** `holder` starts (or takes on) the run; false when it ended or was cancelled meanwhile */
  async start(id: string, holder: string, now = Date.now()): Promise<boolean> {
    const { p } = this.sql;
    const [outcome] = await this.sql.write([
      {
        sql: `UPDATE loop_runs SET state = 'running', holder = ${p(1)}, started_at = COALESCE(started_at, ${p(2)}),
          updated_at = ${p(3)} WHERE id = ${p(4)} AND active = 1 AND cancel_requested = 0`,
        params: [holder, now, now, id],
      },
    ]);
    return outcome!.changes === 1;
  }

  /**
   * records the running run's step and progress; answers whether it was asked to stop (cancelled),
   * or undefined when the run is no longer `holder`'s
   */
  async progress(
    id: string,
    holder: string,
    step: string,
    fraction: number,
    message: string,
    now = Date.now(),
  ): Promise<{ cancelRequested: boolean } | undefined> {
    const { p } = this.sql;
    const permille = Math.round(Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 0)) * 1000);
    const [outcome] = await this.sql.write([
      {
        sql: `UPDATE loop_runs SET step = ${p(1)}, progress_permille = ${p(2)}, message = ${p(3)}, updated_at = ${p(4)}
          WHERE id = ${p(5)} AND holder = ${p(6)} AND state = 'running' RETURNING cancel_requested`,
        params: [text(step), permille, text(message), now, id, holder],
      },
    ]);
    const row = outcome!.rows[0];
    return row ? { cancelRequested: Number(row.cancel_requested) === 1 } : undefined;
  }

  /** whether the run was asked to stop, or undefined when it is no longer `holder`'s running run */
  async cancelRequested(id: string, holder: string): Promise<boolean | undefined> {
    const run = await this.get(id);
    if (run?.state !== 'running' || run.holder !== holder) return undefined;
    return run.cancelRequested;
  }

  /** ends `holder`'s running run; false when it was not (any longer) */
  async finish(
    id: string,
    holder: string,
    end: {
      state: 'succeeded' | 'failed' | 'cancelled';
      reason?: string;
      passed?: boolean;
      artifact?: string;
      report?: unknown;
    },
    now = Date.now(),
  ): Promise<boolean> {
    const { p } = this.sql;
    const [outcome] = await this.sql.write([
      {
        sql: `UPDATE loop_runs SET state = ${p(1)}, active = 0, reason = ${p(2)}, passed = ${p(3)}, artifact = ${p(4)},
          report = COALESCE(${p(5)}, report), ended_at = ${p(6)}, updated_at = ${p(7)}
          WHERE id = ${p(8)} AND holder = ${p(9)} AND state = 'running'`,
        params: [
          end.state,
          text(end.reason),
          end.passed === undefined ? null : end.passed ? 1 : 0,
          end.artifact ?? null,
          reportText(end.report),
          now,
          now,
          id,
          holder,
        ],
      },
    ]);
    return outcome!.changes === 1;
  }

  /** `holder` gives its running run back (interrupted): queued again, to resume from its work directory */
  async requeue(id: string, holder: string, message: string, now = Date.now()): Promise<void> {
    const { p } = this.sql;
    await this.sql.write([
      {
        sql: `UPDATE loop_runs SET state = 'queued', holder = NULL, message = ${p(1)}, updated_at = ${p(2)}
          WHERE id = ${p(3)} AND holder = ${p(4)} AND state = 'running'`,
        params: [text(message), now, id, holder],
      },
    ]);
  }

  /**
   * Cancels a run: a queued one at once, a running one by asking its worker (which stops at its next
   * check, within seconds); a Refused (404, 409) for an unknown or ended run
   */
  async cancel(id: string, now = Date.now()): Promise<LoopRun> {
    const { p } = this.sql;
    const before = await this.get(id);
    if (!before) throw new Refused(`no loop run ${id}`, 404, 'GET /api/v1/loop/runs lists them');
    if (before.state !== 'queued' && before.state !== 'running')
      throw new Refused(`loop run ${id} has ended (${before.state})`, 409, 'start a new run');
    await this.sql.write([
      {
        sql: `UPDATE loop_runs SET state = 'cancelled', active = 0, reason = 'cancelled before it started',
          ended_at = ${p(1)}, updated_at = ${p(2)} WHERE id = ${p(3)} AND state = 'queued'`,
        params: [now, now, id],
      },
      {
        sql: `UPDATE loop_runs SET cancel_requested = 1, updated_at = ${p(1)} WHERE id = ${p(2)} AND state = 'running'`,
        params: [now, id],
      },
    ]);
    const run = (await this.get(id))!;
    if (run.state !== 'cancelled' && !run.cancelRequested)
      throw new Refused(`loop run ${id} has ended (${run.state})`, 409, 'start a new run');
    return run;
  }
}
