import {
  type ArtifactKind,
  type ArtifactRef,
  FINAL_UPDATE_STATES,
  UPDATE_STATES,
  type UpdateStatus,
} from '../../contract/index.ts';
import type { RolloutRequest } from '../rollouts/spec.ts';
import type { SqlAccess, SqlStatement, SqlValue } from './sql-access.ts';

/**
 * The rollouts' state (tables of migration 8): each rollout, its waves, one assignment per device
 * and purpose (`install`; `rollback` when an abort gives a committed device its previous version
 * back) with its latest state, and the history: every update status a device sent (table
 * `update_statuses`, unique by (device, id)) and every change the control plane made
 * (`rollout_history`). A device has at most one active assignment per artifact kind: the partial
 * unique index `rollout_assignments_active` holds it, whatever replica writes.
 */

export const ROLLOUT_STATES = ['running', 'paused', 'completed', 'aborted', 'canceled'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];
/** a rollout in these states changes nothing more on its own (its stragglers still time out) */
export const FINAL_ROLLOUT_STATES: readonly RolloutState[] = ['completed', 'aborted', 'canceled'];

export const WAVE_STATES = ['pending', 'running', 'health', 'succeeded', 'failed', 'canceled'] as const;
export type WaveState = (typeof WAVE_STATES)[number];

/** `pending`: not sent yet (its wave did not start, or its maintenance window is closed); `sent`: no status yet */
export const ASSIGNMENT_STATES = ['pending', 'sent', ...UPDATE_STATES] as const;
export type AssignmentState = (typeof ASSIGNMENT_STATES)[number];
export type AssignmentPurpose = 'install' | 'rollback';

/** device answers that count against a wave's error condition */
export const FAILED_STATES: readonly AssignmentState[] = ['failed', 'rolled-back', 'timed-out'];
const FINAL = new Set<string>(FINAL_UPDATE_STATES);
export const isFinal = (state: AssignmentState): boolean => FINAL.has(state);

export interface RolloutRow {
  id: string;
  name: string;
  artifact: { kind: ArtifactKind; name: string; version: number };
  state: RolloutState;
  reason: string | null;
  spec: RolloutRequest;
  currentWave: number;
  createdBy: string;
  createdAt: number;
  updatedAt: number;
}

export interface WaveRow {
  rollout: string;
  index: number;
  state: WaveState;
  size: number;
  startedAt: number | null;
  /** when its success condition was first met (the control plane's health window starts) */
  conditionAt: number | null;
  endedAt: number | null;
  reason: string | null;
}

export interface AssignmentRow {
  id: string;
  rollout: string;
  wave: number;
  purpose: AssignmentPurpose;
  device: string;
  artifact: ArtifactRef;
  /** the version the device ran before (what an abort returns it to), when known */
  previousVersion: number | null;
  state: AssignmentState;
  seq: number;
  reason: string | null;
  /** the latest shadow / health / progress figures the device reported */
  figures: Record<string, unknown> | null;
  active: boolean;
  cancelSentAt: number | null;
  sentAt: number | null;
  deadline: number | null;
  updatedAt: number;
}

export interface HistoryRow {
  id: number;
  rollout: string;
  wave: number | null;
  assignment: string | null;
  device: string | null;
  state: string;
  reason: string | null;
  at: number;
}

export interface UpdateStatusRecord {
  device: string;
  message: UpdateStatus;
  payload: string;
  receivedAt: number;
}

/** what ingest made of a batch of update statuses */
export interface StatusOutcome {
  /** stored before under the same (device, id) */
  duplicates: number;
  /** statuses for no assignment of their device (or of another rollout or artifact): not stored */
  unknown: UpdateStatusRecord[];
  /** assignments whose state changed */
  changed: number;
}

type Raw = Record<string, unknown>;

/**
 * Parameters bound in the order their placeholders appear in the text (SQLite's `?` are
 * positional): `v(value)` adds one and answers its placeholder
 */
function binder(p: (i: number) => string) {
  const params: SqlValue[] = [];
  const v = (value: SqlValue): string => {
    params.push(value);
    return p(params.length);
  };
  const list = (values: readonly SqlValue[]): string => values.map(v).join(', ');
  return { v, list, params };
}
const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const IDS_PER_QUERY = 500;

function rolloutOf(r: Raw): RolloutRow {
  return {
    id: String(r.id),
    name: String(r.name),
    artifact: {
      kind: r.artifact_kind as ArtifactKind,
      name: String(r.artifact_name),
      version: Number(r.artifact_version),
    },
    state: r.state as RolloutState,
    reason: (r.reason as string | null) ?? null,
    spec: JSON.parse(String(r.spec)) as RolloutRequest,
    currentWave: Number(r.current_wave),
    createdBy: String(r.created_by),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

function waveOf(r: Raw): WaveRow {
  return {
    rollout: String(r.rollout),
    index: Number(r.idx),
    state: r.state as WaveState,
    size: Number(r.size),
    startedAt: num(r.started_at),
    conditionAt: num(r.condition_at),
    endedAt: num(r.ended_at),
    reason: (r.reason as string | null) ?? null,
  };
}

function assignmentOf(r: Raw): AssignmentRow {
  return {
    id: String(r.id),
    rollout: String(r.rollout),
    wave: Number(r.wave),
    purpose: r.purpose as AssignmentPurpose,
    device: String(r.device),
    artifact: JSON.parse(String(r.artifact)) as ArtifactRef,
    previousVersion: num(r.previous_version),
    state: r.state as AssignmentState,
    seq: Number(r.seq),
    reason: (r.reason as string | null) ?? null,
    figures: r.figures ? (JSON.parse(String(r.figures)) as Record<string, unknown>) : null,
    active: Number(r.active) === 1,
    cancelSentAt: num(r.cancel_sent_at),
    sentAt: num(r.sent_at),
    deadline: num(r.deadline),
    updatedAt: Number(r.updated_at),
  };
}

const FINAL_LIST = FINAL_UPDATE_STATES.map((s) => `'${s}'`).join(', ');

export interface NewRollout {
  rollout: RolloutRow;
  waves: WaveRow[];
  assignments: AssignmentRow[];
}

export class RolloutStore {
  constructor(readonly sql: SqlAccess) {}

  private in(ids: readonly string[], from: number): string {
    return ids.map((_, i) => this.sql.p(from + i)).join(', ');
  }

  historySql(h: Omit<HistoryRow, 'id'>): SqlStatement {
    const { p } = this.sql;
    return {
      sql: `INSERT INTO rollout_history (rollout, wave, assignment, device, state, reason, at)
        VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)}, ${p(7)})`,
      params: [h.rollout, h.wave, h.assignment, h.device, h.state, h.reason, h.at],
    };
  }

  /** the active assignments of other rollouts on these devices for this kind: device → rollout */
  async activeElsewhere(devices: readonly string[], kind: ArtifactKind): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (let i = 0; i < devices.length; i += IDS_PER_QUERY) {
      const chunk = devices.slice(i, i + IDS_PER_QUERY);
      const rows = await this.sql.read<{ device: string; rollout: string }>(
        `SELECT device, rollout FROM rollout_assignments
          WHERE active = 1 AND artifact_kind = ${this.sql.p(1)} AND device IN (${this.in(chunk, 2)})`,
        [kind, ...chunk],
      );
      for (const r of rows) out.set(r.device, r.rollout);
    }
    return out;
  }

  /** stores a new rollout with its waves and assignments in one transaction */
  async create(n: NewRollout): Promise<void> {
    const { p } = this.sql;
    const r = n.rollout;
    const statements: SqlStatement[] = [
      {
        sql: `INSERT INTO rollouts (id, name, artifact_kind, artifact_name, artifact_version, state, reason, spec,
          current_wave, created_by, created_at, updated_at)
          VALUES (${[...Array(12).keys()].map((i) => p(i + 1)).join(', ')})`,
        params: [
          r.id,
          r.name,
          r.artifact.kind,
          r.artifact.name,
          r.artifact.version,
          r.state,
          r.reason,
          JSON.stringify(r.spec),
          r.currentWave,
          r.createdBy,
          r.createdAt,
          r.updatedAt,
        ],
      },
      ...n.waves.map((w) => ({
        sql: `INSERT INTO rollout_waves (rollout, idx, state, size) VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)})`,
        params: [w.rollout, w.index, w.state, w.size],
      })),
      ...n.assignments.map((a) => this.insertAssignmentSql(a)),
      this.historySql({
        rollout: r.id,
        wave: null,
        assignment: null,
        device: null,
        state: r.state,
        reason: r.reason ?? `created by ${r.createdBy}`,
        at: r.createdAt,
      }),
    ];
    await this.sql.write(statements);
  }

  insertAssignmentSql(a: AssignmentRow, onConflictNothing = false): SqlStatement {
    const { p } = this.sql;
    return {
      sql: `INSERT INTO rollout_assignments (id, rollout, wave, purpose, device, artifact_kind, artifact_id, artifact,
        previous_version, state, seq, reason, figures, active, cancel_sent_at, sent_at, deadline, updated_at)
        VALUES (${[...Array(18).keys()].map((i) => p(i + 1)).join(', ')})${onConflictNothing ? ' ON CONFLICT DO NOTHING' : ''}`,
      params: [
        a.id,
        a.rollout,
        a.wave,
        a.purpose,
        a.device,
        a.artifact.kind,
        a.artifact.id,
        JSON.stringify(a.artifact),
        a.previousVersion,
        a.state,
        a.seq,
        a.reason,
        a.figures ? JSON.stringify(a.figures) : null,
        a.active ? 1 : 0,
        a.cancelSentAt,
        a.sentAt,
        a.deadline,
        a.updatedAt,
      ],
    };
  }

  async get(id: string): Promise<RolloutRow | undefined> {
    const rows = await this.sql.read(`SELECT * FROM rollouts WHERE id = ${this.sql.p(1)}`, [id]);
    return rows[0] ? rolloutOf(rows[0]) : undefined;
  }

  /** newest first; `before`: only rollouts whose id sorts before it (ids are time-ordered) */
  async list(o: { states?: readonly RolloutState[]; before?: string; limit: number }): Promise<RolloutRow[]> {
    const { p } = this.sql;
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (o.states?.length) {
      where.push(`state IN (${o.states.map((_, i) => p(params.length + i + 1)).join(', ')})`);
      params.push(...o.states);
    }
    if (o.before) {
      params.push(o.before);
      where.push(`id < ${p(params.length)}`);
    }
    params.push(o.limit);
    const rows = await this.sql.read(
      `SELECT * FROM rollouts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ${p(params.length)}`,
      params,
    );
    return rows.map(rolloutOf);
  }

  async waves(rollout: string): Promise<WaveRow[]> {
    const rows = await this.sql.read(
      `SELECT * FROM rollout_waves WHERE rollout = ${this.sql.p(1)} ORDER BY idx`,
      [rollout],
    );
    return rows.map(waveOf);
  }

  async assignments(
    rollout: string,
    o: {
      wave?: number;
      states?: readonly AssignmentState[];
      purpose?: AssignmentPurpose;
      limit?: number;
    } = {},
  ): Promise<AssignmentRow[]> {
    const { p } = this.sql;
    const where = [`rollout = ${p(1)}`];
    const params: SqlValue[] = [rollout];
    if (o.wave !== undefined) {
      params.push(o.wave);
      where.push(`wave = ${p(params.length)}`);
    }
    if (o.purpose) {
      params.push(o.purpose);
      where.push(`purpose = ${p(params.length)}`);
    }
    if (o.states?.length) {
      where.push(`state IN (${o.states.map((_, i) => p(params.length + i + 1)).join(', ')})`);
      params.push(...o.states);
    }
    let limit = '';
    if (o.limit !== undefined) {
      params.push(o.limit);
      limit = ` LIMIT ${p(params.length)}`;
    }
    const rows = await this.sql.read(
      `SELECT * FROM rollout_assignments WHERE ${where.join(' AND ')} ORDER BY wave, device, purpose${limit}`,
      params,
    );
    return rows.map(assignmentOf);
  }

  /**
   * The rollouts that touched a device, newest first (ids are time-ordered), each with the
   * device's assignments in it (its install, and its rollback after an abort)
   */
  async ofDevice(
    device: string,
    o: { before?: string | undefined; limit: number },
  ): Promise<{ rollout: RolloutRow; assignments: AssignmentRow[] }[]> {
    const { p } = this.sql;
    const params: SqlValue[] = [device];
    let before = '';
    if (o.before !== undefined) {
      params.push(o.before);
      before = ` AND rollout < ${p(params.length)}`;
    }
    params.push(o.limit);
    const ids = await this.sql.read<{ rollout: string }>(
      `SELECT DISTINCT rollout FROM rollout_assignments WHERE device = ${p(1)}${before}
        ORDER BY rollout DESC LIMIT ${p(params.length)}`,
      params,
    );
    if (ids.length === 0) return [];
    const list = ids.map((r) => r.rollout);
    const [rollouts, assignments] = await Promise.all([
      this.sql.read(`SELECT * FROM rollouts WHERE id IN (${this.in(list, 1)})`, list),
      this.sql.read(
        `SELECT * FROM rollout_assignments WHERE device = ${p(1)} AND rollout IN (${this.in(list, 2)})
          ORDER BY purpose`,
        [device, ...list],
      ),
    ]);
    const byId = new Map(rollouts.map((r) => [String(r.id), rolloutOf(r)]));
    return list.flatMap((id) => {
      const rollout = byId.get(id);
      if (!rollout) return [];
      return [{ rollout, assignments: assignments.map(assignmentOf).filter((a) => a.rollout === id) }];
    });
  }

  async assignment(id: string): Promise<AssignmentRow | undefined> {
    const rows = await this.sql.read(`SELECT * FROM rollout_assignments WHERE id = ${this.sql.p(1)}`, [id]);
    return rows[0] ? assignmentOf(rows[0]) : undefined;
  }

  /** per wave and purpose, the number of assignments in each state */
  async counts(
    rollout: string,
  ): Promise<{ wave: number; purpose: AssignmentPurpose; state: AssignmentState; n: number }[]> {
    const rows = await this.sql.read<{ wave: number; purpose: string; state: string; n: number | string }>(
      `SELECT wave, purpose, state, count(*) AS n FROM rollout_assignments WHERE rollout = ${this.sql.p(1)}
        GROUP BY wave, purpose, state`,
      [rollout],
    );
    return rows.map((r) => ({
      wave: Number(r.wave),
      purpose: r.purpose as AssignmentPurpose,
      state: r.state as AssignmentState,
      n: Number(r.n),
    }));
  }

  async history(rollout: string, limit: number): Promise<HistoryRow[]> {
    const { p } = this.sql;
    const rows = await this.sql.read(
      `SELECT * FROM rollout_history WHERE rollout = ${p(1)} ORDER BY id DESC LIMIT ${p(2)}`,
      [rollout, limit],
    );
    return rows.map((r) => ({
      id: Number(r.id),
      rollout: String(r.rollout),
      wave: num(r.wave),
      assignment: (r.assignment as string | null) ?? null,
      device: (r.device as string | null) ?? null,
      state: String(r.state),
      reason: (r.reason as string | null) ?? null,
      at: Number(r.at),
    }));
  }

  /** the statuses a device sent for an assignment, in seq order */
  async statuses(assignment: string): Promise<UpdateStatus[]> {
    const rows = await this.sql.read<{ payload: string }>(
      `SELECT payload FROM update_statuses WHERE assignment = ${this.sql.p(1)} ORDER BY seq, received_at`,
      [assignment],
    );
    return rows.map((r) => JSON.parse(r.payload) as UpdateStatus);
  }

  /**
   * Moves the rollout from one of `from` to `to` (with its current wave set to `wave` when given),
   * recording why; false when it was in none of `from` (another replica or request got there first)
   */
  async setRolloutState(
    id: string,
    from: readonly RolloutState[],
    to: RolloutState,
    reason: string,
    now: number,
    extra: { wave?: number; statements?: SqlStatement[] } = {},
  ): Promise<boolean> {
    const { v, list, params } = binder(this.sql.p);
    const sql = `UPDATE rollouts SET state = ${v(to)}, reason = ${v(reason)}, updated_at = ${v(now)}${
      extra.wave !== undefined ? `, current_wave = ${v(extra.wave)}` : ''
    } WHERE id = ${v(id)} AND state IN (${list(from)})`;
    const outcomes = await this.sql.write([
      { sql, params },
      // the rest only counts when the rollout moved: the statements are guarded by its new state
      ...(extra.statements ?? []),
      this.historySql({
        rollout: id,
        wave: null,
        assignment: null,
        device: null,
        state: to,
        reason,
        at: now,
      }),
    ]);
    return outcomes[0]!.changes === 1;
  }

  setWaveSql(
    rollout: string,
    index: number,
    from: readonly WaveState[],
    to: WaveState,
    now: number,
    reason: string | null,
  ): SqlStatement[] {
    const { v, list, params } = binder(this.sql.p);
    const column = to === 'running' ? 'started_at' : to === 'health' ? 'condition_at' : 'ended_at';
    const sql = `UPDATE rollout_waves SET state = ${v(to)}, ${column} = ${v(now)}, reason = ${v(reason)}
      WHERE rollout = ${v(rollout)} AND idx = ${v(index)} AND state IN (${list(from)})`;
    return [
      { sql, params },
      this.historySql({
        rollout,
        wave: index,
        assignment: null,
        device: null,
        state: `wave-${to}`,
        reason,
        at: now,
      }),
    ];
  }

  async setWave(
    rollout: string,
    index: number,
    from: readonly WaveState[],
    to: WaveState,
    now: number,
    reason: string | null,
  ): Promise<boolean> {
    const [outcome] = await this.sql.write(this.setWaveSql(rollout, index, from, to, now, reason));
    return outcome!.changes === 1;
  }

  /** ends every pending assignment of the rollout as canceled (never sent), and its open waves */
  cancelPendingSql(rollout: string, now: number, reason: string): SqlStatement[] {
    const { p } = this.sql;
    return [
      {
        sql: `UPDATE rollout_assignments SET state = 'canceled', active = 0, reason = ${p(1)}, updated_at = ${p(2)}
          WHERE rollout = ${p(3)} AND state = 'pending'`,
        params: [reason, now, rollout],
      },
      {
        sql: `UPDATE rollout_waves SET state = 'canceled', ended_at = ${p(1)}, reason = ${p(2)}
          WHERE rollout = ${p(3)} AND state IN ('pending', 'running', 'health')`,
        params: [now, reason, rollout],
      },
    ];
  }

  /**
   * Marks pending assignments sent (deadline set), only while the rollout is in one of `states`;
   * answers those marked, which the caller then publishes
   */
  async markSent(
    ids: readonly string[],
    rolloutStates: readonly RolloutState[],
    now: number,
    deadlineOf: (id: string) => number,
  ): Promise<string[]> {
    if (ids.length === 0) return [];
    const outcomes = await this.sql.write(
      ids.map((id) => {
        const { v, list, params } = binder(this.sql.p);
        const sql = `UPDATE rollout_assignments SET state = 'sent', sent_at = ${v(now)}, deadline = ${v(deadlineOf(id))},
          updated_at = ${v(now)} WHERE id = ${v(id)} AND state = 'pending'
          AND (SELECT r.state FROM rollouts r WHERE r.id = rollout_assignments.rollout) IN (${list(rolloutStates)})
          RETURNING id`;
        return { sql, params };
      }),
    );
    return outcomes.flatMap((o) => o.rows.map((r) => String(r.id)));
  }

  /** records that the assignment was published again (it had no status yet) */
  async touchSent(ids: readonly string[], now: number): Promise<void> {
    if (ids.length === 0) return;
    const { p } = this.sql;
    await this.sql.write(
      ids.map((id) => ({
        sql: `UPDATE rollout_assignments SET updated_at = ${p(1)} WHERE id = ${p(2)} AND state = 'sent'`,
        params: [now, id],
      })),
    );
  }

  /** ends pending assignments as `failed` with their reason, without sending them (and records it) */
  async failPending(
    failed: readonly { assignment: AssignmentRow; reason: string }[],
    now: number,
  ): Promise<void> {
    const { p } = this.sql;
    await this.sql.write(
      failed.flatMap(({ assignment: a, reason }) => [
        {
          sql: `UPDATE rollout_assignments SET state = 'failed', active = 0, reason = ${p(1)}, updated_at = ${p(2)}
            WHERE id = ${p(3)} AND state = 'pending'`,
          params: [reason, now, a.id],
        },
        this.historySql({
          rollout: a.rollout,
          wave: a.wave,
          assignment: a.id,
          device: a.device,
          state: 'failed',
          reason,
          at: now,
        }),
      ]),
    );
  }

  /** an assignment whose publish failed goes back to pending, to be sent at a later tick */
  async unsend(id: string, now: number): Promise<void> {
    const { p } = this.sql;
    await this.sql.write([
      {
        sql: `UPDATE rollout_assignments SET state = 'pending', sent_at = NULL, deadline = NULL, updated_at = ${p(1)}
          WHERE id = ${p(2)} AND state = 'sent'`,
        params: [now, id],
      },
    ]);
  }

  /** assignments published but never answered, whose last publish is older than `before` */
  async unanswered(before: number, limit: number): Promise<AssignmentRow[]> {
    const { p } = this.sql;
    const rows = await this.sql.read(
      `SELECT * FROM rollout_assignments WHERE active = 1 AND state = 'sent' AND updated_at < ${p(1)}
        ORDER BY updated_at LIMIT ${p(2)}`,
      [before, limit],
    );
    return rows.map(assignmentOf);
  }

  /** active assignments of canceled/aborted rollouts that were sent and not told to stop yet */
  async cancelsDue(limit: number): Promise<AssignmentRow[]> {
    const { p } = this.sql;
    const rows = await this.sql.read(
      `SELECT a.* FROM rollout_assignments a JOIN rollouts r ON r.id = a.rollout
        WHERE a.active = 1 AND a.purpose = 'install' AND a.sent_at IS NOT NULL AND a.cancel_sent_at IS NULL
        AND r.state IN ('canceled', 'aborted') ORDER BY a.id LIMIT ${p(1)}`,
      [limit],
    );
    return rows.map(assignmentOf);
  }

  async markCancelSent(ids: readonly string[], now: number): Promise<void> {
    const { p } = this.sql;
    const rows = await this.sql.read<{ id: string; rollout: string; wave: number; device: string }>(
      `SELECT id, rollout, wave, device FROM rollout_assignments WHERE id IN (${this.in(ids, 1)})`,
      ids,
    );
    await this.sql.write([
      ...ids.map((id) => ({
        sql: `UPDATE rollout_assignments SET cancel_sent_at = ${p(1)}, updated_at = ${p(2)} WHERE id = ${p(3)}`,
        params: [now, now, id],
      })),
      ...rows.map((r) =>
        this.historySql({
          rollout: r.rollout,
          wave: Number(r.wave),
          assignment: r.id,
          device: r.device,
          state: 'cancel-sent',
          reason: 'update-cancel sent: the rollout ended',
          at: now,
        }),
      ),
    ]);
  }

  /**
   * Ends every active assignment sent and not final whose deadline passed as `timed-out`;
   * answers those it ended
   */
  async timeOut(now: number, limit: number): Promise<AssignmentRow[]> {
    const { p } = this.sql;
    const due = await this.sql.read(
      `SELECT * FROM rollout_assignments WHERE active = 1 AND deadline IS NOT NULL AND deadline <= ${p(1)}
        AND state NOT IN (${FINAL_LIST}) ORDER BY deadline LIMIT ${p(2)}`,
      [now, limit],
    );
    if (due.length === 0) return [];
    const rows = due.map(assignmentOf);
    const outcomes = await this.sql.write(
      rows.flatMap((a) => [
        {
          sql: `UPDATE rollout_assignments SET state = 'timed-out', active = 0, updated_at = ${p(1)}, reason = ${p(2)}
            WHERE id = ${p(3)} AND active = 1 AND state NOT IN (${FINAL_LIST}) AND deadline <= ${p(4)}`,
          params: [
            now,
            `no final state from the device before the deadline ${new Date(a.deadline!).toISOString()} (last: ${a.state})`,
            a.id,
            now,
          ],
        },
        this.historySql({
          rollout: a.rollout,
          wave: a.wave,
          assignment: a.id,
          device: a.device,
          state: 'timed-out',
          reason: `deadline passed in state ${a.state}`,
          at: now,
        }),
      ]),
    );
    return rows.filter((_, i) => outcomes[i * 2]!.changes === 1);
  }

  /**
   * Applies update statuses: each is kept once by (device, id), and moves its assignment only
   * when its seq is above the assignment's (a late, lower seq never moves the state back) and the
   * assignment is not final — except that a device's own final word replaces the control plane's
   * `timed-out` (the device tells the truth of what it runs). A status for no assignment of its
   * device, rollout and artifact is not stored (`unknown`).
   */
  async applyStatuses(records: readonly UpdateStatusRecord[]): Promise<StatusOutcome> {
    const outcome: StatusOutcome = { duplicates: 0, unknown: [], changed: 0 };
    if (records.length === 0) return outcome;
    const ids = [...new Set(records.map((r) => r.message.assignment))];
    const owners = new Map<string, { device: string; rollout: string; artifact: string }>();
    for (let i = 0; i < ids.length; i += IDS_PER_QUERY) {
      const chunk = ids.slice(i, i + IDS_PER_QUERY);
      const rows = await this.sql.read<{ id: string; device: string; rollout: string; artifact_id: string }>(
        `SELECT id, device, rollout, artifact_id FROM rollout_assignments WHERE id IN (${this.in(chunk, 1)})`,
        chunk,
      );
      for (const r of rows)
        owners.set(r.id, { device: r.device, rollout: r.rollout, artifact: r.artifact_id });
    }
    const known: UpdateStatusRecord[] = [];
    for (const r of records) {
      const owner = owners.get(r.message.assignment);
      if (
        owner?.device === r.device &&
        owner.rollout === r.message.rollout &&
        owner.artifact === r.message.artifact.id
      )
        known.push(r);
      else outcome.unknown.push(r);
    }
    if (known.length === 0) return outcome;
    const { p } = this.sql;
    const statements: SqlStatement[] = [];
    for (const r of known) {
      const b = binder(p);
      const m = r.message;
      const figures =
        m.shadow || m.health || m.progress
          ? JSON.stringify({
              ...(m.progress ? { progress: m.progress } : {}),
              ...(m.shadow ? { shadow: m.shadow } : {}),
              ...(m.health ? { health: m.health } : {}),
            })
          : null;
      const final = FINAL.has(m.state);
      statements.push(
        {
          sql: `INSERT INTO update_statuses (device, id, assignment, seq, state, at, received_at, payload)
            VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)}, ${p(7)}, ${p(8)}) ON CONFLICT (device, id) DO NOTHING`,
          params: [r.device, m.id, m.assignment, m.seq, m.state, Date.parse(m.at), r.receivedAt, r.payload],
        },
        {
          // figures a status does not carry keep the earlier ones (the health step keeps the shadow's);
          // a device's final word also replaces the control plane's timed-out
          sql: `UPDATE rollout_assignments SET state = ${b.v(m.state)}, seq = ${b.v(m.seq)}, reason = ${b.v(m.reason ?? null)},
            figures = ${figures === null ? 'figures' : b.v(figures)},
            active = ${final ? '0' : 'active'}, updated_at = ${b.v(r.receivedAt)}
            WHERE id = ${b.v(m.assignment)} AND device = ${b.v(r.device)} AND (
              (seq < ${b.v(m.seq)} AND state NOT IN (${FINAL_LIST}))${
                final && m.state !== 'timed-out' ? " OR state = 'timed-out'" : ''
              })`,
          params: b.params,
        },
      );
    }
    const outcomes = await this.sql.write(statements);
    for (let i = 0; i < known.length; i++) {
      if (outcomes[i * 2]!.changes === 0) outcome.duplicates++;
      if (outcomes[i * 2 + 1]!.changes === 1) outcome.changed++;
    }
    return outcome;
  }

  /** whether `device` has an assignment of `artifactId` that it may download now */
  async assignedTo(device: string, artifactId: string): Promise<boolean> {
    const { p } = this.sql;
    const rows = await this.sql.read(
      `SELECT 1 AS one FROM rollout_assignments WHERE device = ${p(1)} AND artifact_id = ${p(2)}
        AND active = 1 AND sent_at IS NOT NULL LIMIT 1`,
      [device, artifactId],
    );
    return rows.length > 0;
  }

  /**
   * the artifacts retention must keep: those of assignments not final, and those devices
   * committed (what they run, and what an abort elsewhere may return them to)
   */
  async referencedArtifacts(): Promise<string[]> {
    const rows = await this.sql.read<{ artifact_id: string }>(
      `SELECT DISTINCT artifact_id FROM rollout_assignments WHERE active = 1 OR state = 'committed'`,
    );
    return rows.map((r) => r.artifact_id);
  }

  /** those of `artifactIds` that referencedArtifacts holds */
  async referenced(artifactIds: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    for (let i = 0; i < artifactIds.length; i += IDS_PER_QUERY) {
      const chunk = artifactIds.slice(i, i + IDS_PER_QUERY);
      const rows = await this.sql.read<{ artifact_id: string }>(
        `SELECT DISTINCT artifact_id FROM rollout_assignments
          WHERE artifact_id IN (${this.in(chunk, 1)}) AND (active = 1 OR state = 'committed')`,
        chunk,
      );
      for (const r of rows) out.add(r.artifact_id);
    }
    return out;
  }

  /** rollouts the engine drives: running ones, and aborted ones with rollbacks to send */
  async driven(): Promise<RolloutRow[]> {
    const rows = await this.sql.read(
      `SELECT * FROM rollouts WHERE state = 'running' OR (state = 'aborted' AND EXISTS (
        SELECT 1 FROM rollout_assignments a WHERE a.rollout = rollouts.id AND a.purpose = 'install'
        AND a.state = 'committed' AND NOT EXISTS (SELECT 1 FROM rollout_assignments b
          WHERE b.rollout = a.rollout AND b.device = a.device AND b.purpose = 'rollback'))
        OR EXISTS (SELECT 1 FROM rollout_assignments c WHERE c.rollout = rollouts.id AND c.purpose = 'rollback'
          AND c.state = 'pending')) ORDER BY id`,
    );
    return rows.map(rolloutOf);
  }

  // ---- device labels ----

  /** replaces the labels of a device */
  async setLabels(device: string, labels: Record<string, string>): Promise<void> {
    const { p } = this.sql;
    await this.sql.write([
      { sql: `DELETE FROM device_labels WHERE device = ${p(1)}`, params: [device] },
      ...Object.entries(labels).map(([name, value]) => ({
        sql: `INSERT INTO device_labels (device, name, value) VALUES (${p(1)}, ${p(2)}, ${p(3)})`,
        params: [device, name, value],
      })),
    ]);
  }

  async labelsOf(devices: readonly string[]): Promise<Map<string, Record<string, string>>> {
    const out = new Map<string, Record<string, string>>();
    for (let i = 0; i < devices.length; i += IDS_PER_QUERY) {
      const chunk = devices.slice(i, i + IDS_PER_QUERY);
      const rows = await this.sql.read<{ device: string; name: string; value: string }>(
        `SELECT device, name, value FROM device_labels WHERE device IN (${this.in(chunk, 1)})`,
        chunk,
      );
      for (const r of rows) {
        const labels = out.get(r.device) ?? {};
        labels[r.name] = r.value;
        out.set(r.device, labels);
      }
    }
    return out;
  }

  /** devices that carry every one of `labels` */
  async devicesWithLabels(labels: Record<string, string>, limit: number): Promise<string[]> {
    const entries = Object.entries(labels);
    if (entries.length === 0) return [];
    const { p } = this.sql;
    const clauses = entries.map((_, i) => `(name = ${p(2 * i + 1)} AND value = ${p(2 * i + 2)})`);
    const rows = await this.sql.read<{ device: string }>(
      `SELECT device FROM device_labels WHERE ${clauses.join(' OR ')}
        GROUP BY device HAVING count(*) = ${p(2 * entries.length + 1)} ORDER BY device LIMIT ${p(2 * entries.length + 2)}`,
      [...entries.flat(), entries.length, limit],
    );
    return rows.map((r) => r.device);
  }
}
