import type { SqlAccess } from './sql-access.ts';

/** who acted: an operator's account, an API token (by its name), a device, or nobody known */
export type ActorKind = 'user' | 'token' | 'device' | 'anonymous';

export interface AuditEntry {
  /** ms since the epoch */
  at: number;
  actor: string;
  actorKind: ActorKind;
  /** `login`, `logout`, or the method and route, e.g. `POST /api/v1/devices/:id/commands/:name` */
  action: string;
  /** the route's path parameters (never a body, a password or a token) */
  params: Record<string, string>;
  /** the client's address */
  address: string;
  /** the HTTP status answered */
  status: number;
  /** `ok` (2xx/3xx), `denied` (401/403), `throttled` (429), `failed` (any other error) */
  outcome: AuditOutcome;
}

export const AUDIT_OUTCOMES = ['ok', 'denied', 'throttled', 'failed'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

export interface StoredAuditEntry extends AuditEntry {
  id: number;
}

export interface AuditFilter {
  actor?: string | undefined;
  action?: string | undefined;
  outcome?: AuditOutcome | undefined;
  from?: number | undefined;
  to?: number | undefined;
  /** entries before this id (the previous page's cursor) */
  before?: number | undefined;
  limit: number;
}

export function outcomeOf(status: number): AuditOutcome {
  if (status === 401 || status === 403) return 'denied';
  if (status === 429) return 'throttled';
  return status < 400 ? 'ok' : 'failed';
}

interface AuditRow {
  id: number | string;
  at: number | string;
  actor: string;
  actor_kind: ActorKind;
  action: string;
  params: string;
  address: string;
  status: number | string;
  outcome: AuditOutcome;
}

/** the audit log, newest first; `at` is indexed for the retention job */
export class AuditLog {
  constructor(private readonly sql: SqlAccess) {}

  async append(e: AuditEntry): Promise<void> {
    const { p } = this.sql;
    await this.sql.write([
      {
        sql: `INSERT INTO audit (at, actor, actor_kind, action, params, address, status, outcome) VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)}, ${p(7)}, ${p(8)})`,
        params: [
          e.at,
          e.actor,
          e.actorKind,
          e.action,
          JSON.stringify(e.params),
          e.address,
          e.status,
          e.outcome,
        ],
      },
    ]);
  }

  async query(f: AuditFilter): Promise<StoredAuditEntry[]> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    const add = (clause: (ph: string) => string, value: string | number | undefined) => {
      if (value === undefined) return;
      params.push(value);
      where.push(clause(this.sql.p(params.length)));
    };
    add((ph) => `actor = ${ph}`, f.actor);
    add((ph) => `action = ${ph}`, f.action);
    add((ph) => `outcome = ${ph}`, f.outcome);
    add((ph) => `at >= ${ph}`, f.from);
    add((ph) => `at < ${ph}`, f.to);
    add((ph) => `id < ${ph}`, f.before);
    params.push(f.limit);
    const rows = await this.sql.read<AuditRow>(
      `SELECT id, at, actor, actor_kind, action, params, address, status, outcome FROM audit
       ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ${this.sql.p(params.length)}`,
      params,
    );
    return rows.map((r) => ({
      id: Number(r.id),
      at: Number(r.at),
      actor: r.actor,
      actorKind: r.actor_kind,
      action: r.action,
      params: JSON.parse(r.params) as Record<string, string>,
      address: r.address,
      status: Number(r.status),
      outcome: r.outcome,
    }));
  }
}
