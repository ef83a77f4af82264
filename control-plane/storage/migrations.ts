import type { Placeholder } from './sql.ts';

/** the column types that differ between the two backends */
export interface Dialect {
  /** for the steps that cannot be the same SQL (SQLite changes a key by rebuilding its table) */
  backend: 'sqlite' | 'postgres';
  /** an auto-incrementing 64-bit primary key */
  serial: string;
  bigint: string;
  bytes: string;
}

export const SQLITE: Dialect = {
  backend: 'sqlite',
  serial: 'INTEGER PRIMARY KEY AUTOINCREMENT',
  bigint: 'INTEGER',
  bytes: 'BLOB',
};
export const POSTGRES: Dialect = {
  backend: 'postgres',
  serial: 'BIGSERIAL PRIMARY KEY',
  bigint: 'BIGINT',
  bytes: 'BYTEA',
};

export interface Migration {
  version: number;
  name: string;
  statements: (d: Dialect) => string[];
}

/**
 * The schema, as numbered steps applied in order and recorded in `schema_migrations`. A released
 * step is never edited: a change is a new step. Times are ms since the epoch (integers) in both
 * backends so that every query is the same SQL.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'devices, events, camera statuses, commands, snapshots',
    statements: (d) => [
      `CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        status TEXT,
        status_at ${d.bigint},
        first_seen ${d.bigint} NOT NULL,
        last_seen ${d.bigint} NOT NULL,
        identity TEXT,
        telemetry TEXT,
        telemetry_at ${d.bigint}
      )`,
      `CREATE TABLE events (
        cursor ${d.serial},
        id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        phase TEXT NOT NULL,
        device TEXT NOT NULL,
        camera TEXT NOT NULL,
        camera_seq ${d.bigint} NOT NULL,
        rule TEXT NOT NULL,
        rule_type TEXT NOT NULL,
        label TEXT NOT NULL,
        at ${d.bigint} NOT NULL,
        received_at ${d.bigint} NOT NULL,
        payload TEXT NOT NULL,
        UNIQUE (id, seq)
      )`,
      'CREATE INDEX events_device ON events (device, camera, cursor)',
      'CREATE INDEX events_rule ON events (rule, cursor)',
      'CREATE INDEX events_label ON events (label, cursor)',
      'CREATE INDEX events_at ON events (at)',
      `CREATE TABLE camera_statuses (
        id TEXT PRIMARY KEY,
        device TEXT NOT NULL,
        camera TEXT NOT NULL,
        camera_seq ${d.bigint} NOT NULL,
        state TEXT NOT NULL,
        at TEXT NOT NULL,
        reason TEXT,
        received_at ${d.bigint} NOT NULL
      )`,
      'CREATE INDEX camera_statuses_latest ON camera_statuses (device, camera, camera_seq)',
      `CREATE TABLE commands (
        id TEXT PRIMARY KEY,
        device TEXT NOT NULL,
        name TEXT NOT NULL,
        args TEXT NOT NULL,
        issued_at ${d.bigint},
        result TEXT,
        result_at ${d.bigint}
      )`,
      `CREATE TABLE snapshots (
        id TEXT PRIMARY KEY,
        device TEXT NOT NULL,
        content_type TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        bytes ${d.bytes} NOT NULL,
        created_at ${d.bigint} NOT NULL
      )`,
    ],
  },
  {
    version: 2,
    name: 'ids scoped to their device (events, camera statuses, snapshots); quarantine',
    statements: (d) => [
      ...(d.backend === 'postgres'
        ? [
            `ALTER TABLE events DROP CONSTRAINT events_id_seq_key,
              ADD CONSTRAINT events_device_id_seq_key UNIQUE (device, id, seq)`,
            'ALTER TABLE camera_statuses DROP CONSTRAINT camera_statuses_pkey, ADD PRIMARY KEY (device, id)',
            'ALTER TABLE snapshots DROP CONSTRAINT snapshots_pkey, ADD PRIMARY KEY (device, id)',
          ]
        : [
            // SQLite changes a key by copying the table (the rows keep their cursors, and
            // AUTOINCREMENT continues after the largest)
            `CREATE TABLE events_v2 (
              cursor ${d.serial},
              id TEXT NOT NULL,
              seq INTEGER NOT NULL,
              phase TEXT NOT NULL,
              device TEXT NOT NULL,
              camera TEXT NOT NULL,
              camera_seq ${d.bigint} NOT NULL,
              rule TEXT NOT NULL,
              rule_type TEXT NOT NULL,
              label TEXT NOT NULL,
              at ${d.bigint} NOT NULL,
              received_at ${d.bigint} NOT NULL,
              payload TEXT NOT NULL,
              UNIQUE (device, id, seq)
            )`,
            'INSERT INTO events_v2 SELECT * FROM events',
            'DROP TABLE events',
            'ALTER TABLE events_v2 RENAME TO events',
            'CREATE INDEX events_device ON events (device, camera, cursor)',
            'CREATE INDEX events_rule ON events (rule, cursor)',
            'CREATE INDEX events_label ON events (label, cursor)',
            'CREATE INDEX events_at ON events (at)',
            `CREATE TABLE camera_statuses_v2 (
              id TEXT NOT NULL,
              device TEXT NOT NULL,
              camera TEXT NOT NULL,
              camera_seq ${d.bigint} NOT NULL,
              state TEXT NOT NULL,
              at TEXT NOT NULL,
              reason TEXT,
              received_at ${d.bigint} NOT NULL,
              PRIMARY KEY (device, id)
            )`,
            'INSERT INTO camera_statuses_v2 SELECT * FROM camera_statuses',
            'DROP TABLE camera_statuses',
            'ALTER TABLE camera_statuses_v2 RENAME TO camera_statuses',
            'CREATE INDEX camera_statuses_latest ON camera_statuses (device, camera, camera_seq)',
            `CREATE TABLE snapshots_v2 (
              id TEXT NOT NULL,
              device TEXT NOT NULL,
              content_type TEXT NOT NULL,
              sha256 TEXT NOT NULL,
              bytes ${d.bytes} NOT NULL,
              created_at ${d.bigint} NOT NULL,
              PRIMARY KEY (device, id)
            )`,
            'INSERT INTO snapshots_v2 SELECT * FROM snapshots',
            'DROP TABLE snapshots',
            'ALTER TABLE snapshots_v2 RENAME TO snapshots',
          ]),
      `CREATE TABLE quarantine (
        id ${d.serial},
        device TEXT NOT NULL,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        payload TEXT NOT NULL,
        received_at ${d.bigint} NOT NULL
      )`,
    ],
  },
  {
    version: 3,
    name: 'operators: users, sessions, API tokens, login failures, audit log',
    statements: (d) => [
      `CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at ${d.bigint} NOT NULL,
        updated_at ${d.bigint} NOT NULL
      )`,
      `CREATE TABLE sessions (
        id_sha256 TEXT PRIMARY KEY,
        user_name TEXT NOT NULL,
        csrf_token TEXT NOT NULL,
        created_at ${d.bigint} NOT NULL,
        expires_at ${d.bigint} NOT NULL
      )`,
      'CREATE INDEX sessions_user ON sessions (user_name)',
      'CREATE INDEX sessions_expiry ON sessions (expires_at)',
      `CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        token_sha256 TEXT NOT NULL UNIQUE,
        created_by TEXT NOT NULL,
        created_at ${d.bigint} NOT NULL,
        last_used_at ${d.bigint},
        revoked_at ${d.bigint}
      )`,
      `CREATE TABLE login_failures (
        account TEXT NOT NULL,
        at ${d.bigint} NOT NULL
      )`,
      'CREATE INDEX login_failures_account ON login_failures (account, at)',
      `CREATE TABLE audit (
        id ${d.serial},
        at ${d.bigint} NOT NULL,
        actor TEXT NOT NULL,
        actor_kind TEXT NOT NULL,
        action TEXT NOT NULL,
        params TEXT NOT NULL,
        address TEXT NOT NULL,
        status INTEGER NOT NULL,
        outcome TEXT NOT NULL
      )`,
      'CREATE INDEX audit_at ON audit (at)',
      'CREATE INDEX audit_actor ON audit (actor, id)',
    ],
  },
  {
    version: 4,
    name: 'device credentials and enrollment claims',
    statements: (d) => [
      `CREATE TABLE device_credentials (
        device TEXT PRIMARY KEY,
        secret_sha256 TEXT NOT NULL,
        previous_sha256 TEXT,
        source TEXT NOT NULL,
        issued_at ${d.bigint} NOT NULL,
        rotated_at ${d.bigint},
        rotation_requested_at ${d.bigint},
        rotation_sent_at ${d.bigint},
        revoked_at ${d.bigint}
      )`,
      `CREATE TABLE device_claims (
        token_sha256 TEXT PRIMARY KEY,
        device TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at ${d.bigint} NOT NULL,
        expires_at ${d.bigint} NOT NULL,
        used_at ${d.bigint},
        credential_sha256 TEXT
      )`,
      'CREATE INDEX device_claims_device ON device_claims (device)',
    ],
  },
  {
    version: 5,
    name: 'leases, telemetry history, device availability history, retention indexes',
    statements: (d) => [
      `CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at ${d.bigint} NOT NULL
      )`,
      `CREATE TABLE telemetry_history (
        id ${d.serial},
        device TEXT NOT NULL,
        at ${d.bigint} NOT NULL,
        received_at ${d.bigint} NOT NULL,
        payload TEXT NOT NULL,
        UNIQUE (device, at)
      )`,
      'CREATE INDEX telemetry_history_received ON telemetry_history (device, received_at)',
      'CREATE INDEX telemetry_history_age ON telemetry_history (received_at)',
      `CREATE TABLE device_availability (
        id TEXT PRIMARY KEY,
        device TEXT NOT NULL,
        state TEXT NOT NULL,
        at ${d.bigint} NOT NULL,
        received_at ${d.bigint} NOT NULL,
        source TEXT NOT NULL,
        reason TEXT
      )`,
      'CREATE INDEX device_availability_device ON device_availability (device, received_at)',
      'CREATE INDEX device_availability_age ON device_availability (received_at)',
      'CREATE INDEX camera_statuses_received ON camera_statuses (device, received_at)',
      'CREATE INDEX camera_statuses_age ON camera_statuses (received_at)',
      'CREATE INDEX events_received ON events (received_at)',
      'CREATE INDEX snapshots_created ON snapshots (created_at)',
    ],
  },
  {
    version: 6,
    name: 'retention of quarantined messages by age',
    statements: () => ['CREATE INDEX quarantine_received ON quarantine (received_at)'],
  },
  {
    version: 7,
    name: 'artifact registry: published bundles and the targets of their variants',
    statements: (d) => [
      `CREATE TABLE artifacts (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        variant TEXT NOT NULL,
        bytes ${d.bigint} NOT NULL,
        key_id TEXT NOT NULL,
        manifest TEXT NOT NULL,
        expires_at ${d.bigint} NOT NULL,
        published_at ${d.bigint} NOT NULL,
        published_by TEXT NOT NULL,
        UNIQUE (kind, name, version, variant)
      )`,
      'CREATE INDEX artifacts_published ON artifacts (published_at, id)',
      `CREATE TABLE artifact_targets (
        artifact TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        hardware_class TEXT NOT NULL,
        execution_provider TEXT NOT NULL,
        PRIMARY KEY (kind, name, version, hardware_class, execution_provider)
      )`,
      'CREATE INDEX artifact_targets_artifact ON artifact_targets (artifact)',
    ],
  },
  {
    version: 8,
    name: 'device labels, rollouts, their waves, assignments, update statuses and history',
    statements: (d) => [
      `CREATE TABLE device_labels (
        device TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (device, name)
      )`,
      'CREATE INDEX device_labels_value ON device_labels (name, value)',
      `CREATE TABLE rollouts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        artifact_kind TEXT NOT NULL,
        artifact_name TEXT NOT NULL,
        artifact_version INTEGER NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        spec TEXT NOT NULL,
        current_wave INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        created_at ${d.bigint} NOT NULL,
        updated_at ${d.bigint} NOT NULL
      )`,
      'CREATE INDEX rollouts_state ON rollouts (state, id)',
      `CREATE TABLE rollout_waves (
        rollout TEXT NOT NULL,
        idx INTEGER NOT NULL,
        state TEXT NOT NULL,
        size INTEGER NOT NULL,
        started_at ${d.bigint},
        condition_at ${d.bigint},
        ended_at ${d.bigint},
        reason TEXT,
        PRIMARY KEY (rollout, idx)
      )`,
      `CREATE TABLE rollout_assignments (
        id TEXT PRIMARY KEY,
        rollout TEXT NOT NULL,
        wave INTEGER NOT NULL,
        purpose TEXT NOT NULL,
        device TEXT NOT NULL,
        artifact_kind TEXT NOT NULL,
        artifact_id TEXT NOT NULL,
        artifact TEXT NOT NULL,
        previous_version INTEGER,
        state TEXT NOT NULL,
        seq INTEGER NOT NULL,
        reason TEXT,
        figures TEXT,
        active INTEGER NOT NULL,
        cancel_sent_at ${d.bigint},
        sent_at ${d.bigint},
        deadline ${d.bigint},
        updated_at ${d.bigint} NOT NULL,
        UNIQUE (rollout, device, purpose)
      )`,
      // one active rollout per device and artifact kind, held by the database itself
      'CREATE UNIQUE INDEX rollout_assignments_active ON rollout_assignments (device, artifact_kind) WHERE active = 1',
      'CREATE INDEX rollout_assignments_wave ON rollout_assignments (rollout, wave, state)',
      'CREATE INDEX rollout_assignments_artifact ON rollout_assignments (device, artifact_id)',
      'CREATE INDEX rollout_assignments_deadline ON rollout_assignments (active, deadline)',
      `CREATE TABLE update_statuses (
        device TEXT NOT NULL,
        id TEXT NOT NULL,
        assignment TEXT NOT NULL,
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        at ${d.bigint} NOT NULL,
        received_at ${d.bigint} NOT NULL,
        payload TEXT NOT NULL,
        PRIMARY KEY (device, id)
      )`,
      'CREATE INDEX update_statuses_assignment ON update_statuses (assignment, seq)',
      `CREATE TABLE rollout_history (
        id ${d.serial},
        rollout TEXT NOT NULL,
        wave INTEGER,
        assignment TEXT,
        device TEXT,
        state TEXT NOT NULL,
        reason TEXT,
        at ${d.bigint} NOT NULL
      )`,
      'CREATE INDEX rollout_history_rollout ON rollout_history (rollout, id)',
    ],
  },
  {
    version: 9,
    name: "a device's command and rollout history; retention of commands by age",
    statements: () => [
      // command ids are time-ordered: (device, id) reads a device's commands newest first
      'CREATE INDEX commands_device ON commands (device, id)',
      'CREATE INDEX commands_issued ON commands (issued_at)',
      'CREATE INDEX rollout_assignments_device ON rollout_assignments (device, rollout)',
    ],
  },
  {
    version: 10,
    name: "a claim's exchange key: the box that spent a claim token may retry the exchange",
    statements: () => ['ALTER TABLE device_claims ADD COLUMN exchange_sha256 TEXT'],
  },
  {
    version: 11,
    name: 'harvested frames: what boxes chose to teach their model from, by site (bytes in the blob store)',
    statements: (d) => [
      `CREATE TABLE harvested_frames (
        device TEXT NOT NULL,
        id TEXT NOT NULL,
        site TEXT NOT NULL,
        camera TEXT NOT NULL,
        captured_at ${d.bigint} NOT NULL,
        received_at ${d.bigint} NOT NULL,
        reasons TEXT NOT NULL,
        model TEXT NOT NULL,
        model_version INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        bytes ${d.bigint} NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        PRIMARY KEY (device, id)
      )`,
      'CREATE INDEX harvested_frames_site ON harvested_frames (site, received_at, device, id)',
      'CREATE INDEX harvested_frames_received ON harvested_frames (received_at, device, id)',
      'CREATE INDEX harvested_frames_sha256 ON harvested_frames (sha256)',
    ],
  },
  {
    version: 12,
    name: 'loop runs: the data–model loop of a site as a control-plane job',
    statements: (d) => [
      `CREATE TABLE loop_runs (
        id TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        state TEXT NOT NULL,
        active INTEGER NOT NULL,
        step TEXT,
        progress_permille INTEGER NOT NULL,
        message TEXT,
        reason TEXT,
        cancel_requested INTEGER NOT NULL,
        holder TEXT,
        passed INTEGER,
        artifact TEXT,
        report TEXT,
        created_by TEXT NOT NULL,
        created_at ${d.bigint} NOT NULL,
        started_at ${d.bigint},
        ended_at ${d.bigint},
        updated_at ${d.bigint} NOT NULL
      )`,
      // one queued or running run per site, held by the database itself
      'CREATE UNIQUE INDEX loop_runs_active ON loop_runs (site) WHERE active = 1',
      'CREATE INDEX loop_runs_state ON loop_runs (state, created_at)',
      'CREATE INDEX loop_runs_created ON loop_runs (created_at, id)',
    ],
  },
];

export const CREATE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at TEXT NOT NULL
)`;

/** runs one statement inside the caller's transaction and returns its rows (none for a write) */
export type MigrationQuery = (sql: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;

/** applies, in order, the migrations not yet recorded in `schema_migrations`, and records them */
export async function applyMigrations(
  dialect: Dialect,
  p: Placeholder,
  query: MigrationQuery,
): Promise<void> {
  await query(CREATE_MIGRATIONS_TABLE);
  const applied = new Set(
    (await query('SELECT version FROM schema_migrations')).map((r) => Number(r.version)),
  );
  for (const m of MIGRATIONS) {
    if (applied.has(m.version)) continue;
    for (const statement of m.statements(dialect)) await query(statement);
    await query(
      `INSERT INTO schema_migrations (version, name, applied_at) VALUES (${p(1)}, ${p(2)}, ${p(3)})`,
      [m.version, m.name, new Date().toISOString()],
    );
  }
}
