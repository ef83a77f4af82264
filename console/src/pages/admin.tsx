import { useEffect, useState } from 'preact/hooks';
import { api, describeError } from '../api.ts';
import { Badge, ErrorNote, Loading, Section } from '../components/bits.tsx';
import { DataTable, MoreButton, usePaged } from '../components/data-table.tsx';
import { time } from '../format.ts';
import { useSession } from '../session.ts';
import type { AuditAnswer, CreatedTokenAnswer, Role, TokenAnswer, UserAnswer } from '../types.ts';

const ROLES: Role[] = ['viewer', 'operator', 'admin'];

function RoleSelect({
  name,
  value,
  onChange,
  label,
}: {
  name?: string;
  value?: Role;
  onChange?: (r: Role) => void;
  label: string;
}) {
  return (
    <select
      name={name}
      aria-label={label}
      value={value}
      onChange={(e) => onChange?.(e.currentTarget.value as Role)}
    >
      {ROLES.map((r) => (
        <option key={r} value={r}>
          {r}
        </option>
      ))}
    </select>
  );
}

function Users() {
  const { me } = useSession();
  const [users, setUsers] = useState<UserAnswer[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const reload = () =>
    api<{ users: UserAnswer[] }>('/api/v1/users')
      .then((a) => setUsers(a.users))
      .catch((err) => setError(describeError(err)));
  useEffect(() => void reload(), []);
  const act = async (f: () => Promise<unknown>) => {
    setError(null);
    try {
      await f();
    } catch (err) {
      setError(describeError(err));
    }
    await reload();
  };
  return (
    <Section title="Users">
      <ErrorNote error={error} />
      {!users ? (
        <Loading what="users" />
      ) : (
        <DataTable<UserAnswer>
          id="users"
          wrap={false}
          rows={users}
          rowKey={(u) => u.name}
          columns={[
            { title: 'Name', rowHeader: true, cell: (u) => u.name },
            {
              title: 'Role',
              cell: (u) => (
                <RoleSelect
                  label={`role of ${u.name}`}
                  value={u.role}
                  onChange={(role) =>
                    void act(() =>
                      api(`/api/v1/users/${encodeURIComponent(u.name)}`, {
                        method: 'PATCH',
                        body: { role },
                      }),
                    )
                  }
                />
              ),
            },
            { title: 'Changed', cell: (u) => time(u.updatedAt) },
            {
              title: 'Actions',
              class: 'row',
              cell: (u) => (
                <>
                  <button
                    type="button"
                    onClick={() => {
                      const password = prompt(`new password for ${u.name} (its sessions end)`);
                      if (password)
                        void act(() =>
                          api(`/api/v1/users/${encodeURIComponent(u.name)}/password`, {
                            method: 'PUT',
                            body: { password },
                          }),
                        );
                    }}
                  >
                    Set password
                  </button>
                  <button
                    type="button"
                    class="danger"
                    disabled={u.name === me.name}
                    onClick={() => {
                      if (confirm(`remove the account ${u.name}?`))
                        void act(() =>
                          api(`/api/v1/users/${encodeURIComponent(u.name)}`, { method: 'DELETE' }),
                        );
                    }}
                  >
                    Remove
                  </button>
                </>
              ),
            },
          ]}
        />
      )}
      <form
        class="row"
        aria-label="add a user"
        onSubmit={(e) => {
          e.preventDefault();
          const f = e.currentTarget;
          const form = new FormData(f);
          void act(async () => {
            await api('/api/v1/users', {
              method: 'POST',
              body: { name: form.get('name'), role: form.get('role'), password: form.get('password') },
            });
            f.reset();
          });
        }}
      >
        <label class="inline">
          Name <input name="name" required maxLength={64} autocomplete="off" />
        </label>
        <span class="inline">
          Role <RoleSelect name="role" label="role of the new user" />
        </span>
        <label class="inline">
          Password <input name="password" type="password" required autocomplete="new-password" />
        </label>
        <button type="submit" class="primary">
          Add user
        </button>
      </form>
    </Section>
  );
}

function Tokens() {
  const [tokens, setTokens] = useState<TokenAnswer[] | null>(null);
  const [created, setCreated] = useState<CreatedTokenAnswer | null>(null);
  const [error, setError] = useState<string | null>(null);
  const reload = () =>
    api<{ tokens: TokenAnswer[] }>('/api/v1/tokens')
      .then((a) => setTokens(a.tokens))
      .catch((err) => setError(describeError(err)));
  useEffect(() => void reload(), []);
  return (
    <Section title="API tokens">
      <ErrorNote error={error} />
      {created ? (
        <p class="notice" role="status">
          Token <strong>{created.token.name}</strong> created. Its secret is shown this once:{' '}
          <code class="secret">{created.secret}</code>
        </p>
      ) : null}
      {!tokens ? (
        <Loading what="tokens" />
      ) : (
        <DataTable<TokenAnswer>
          wrap={false}
          rows={tokens}
          rowKey={(t) => t.id}
          columns={[
            { title: 'Name', rowHeader: true, cell: (t) => t.name },
            { title: 'Role', cell: (t) => t.role },
            {
              title: 'Created',
              cell: (t) => (
                <>
                  {time(t.createdAt)} <span class="muted">by {t.createdBy}</span>
                </>
              ),
            },
            { title: 'Last used', cell: (t) => time(t.lastUsedAt) },
            {
              title: 'State',
              cell: (t) =>
                t.revokedAt ? (
                  <Badge state="revoked">revoked {time(t.revokedAt)}</Badge>
                ) : (
                  <button
                    type="button"
                    class="danger"
                    onClick={() => {
                      if (confirm(`revoke the token ${t.name}?`))
                        void api(`/api/v1/tokens/${encodeURIComponent(t.id)}`, { method: 'DELETE' })
                          .catch((err) => setError(describeError(err)))
                          .then(reload);
                    }}
                  >
                    Revoke
                  </button>
                ),
            },
          ]}
        />
      )}
      <form
        class="row"
        aria-label="create an API token"
        onSubmit={(e) => {
          e.preventDefault();
          const f = e.currentTarget;
          const form = new FormData(f);
          setError(null);
          void api<CreatedTokenAnswer>('/api/v1/tokens', {
            method: 'POST',
            body: { name: form.get('name'), role: form.get('role') },
          })
            .then((c) => {
              setCreated(c);
              f.reset();
            })
            .catch((err) => setError(describeError(err)))
            .then(reload);
        }}
      >
        <label class="inline">
          Purpose <input name="name" required maxLength={64} pattern="[A-Za-z0-9 ._@\-]+" />
        </label>
        <span class="inline">
          Role <RoleSelect name="role" label="role of the new token" />
        </span>
        <button type="submit" class="primary">
          Create token
        </button>
      </form>
    </Section>
  );
}

type AuditEntry = AuditAnswer['entries'][number];

function Audit() {
  const [filters, setFilters] = useState<{ actor?: string; outcome?: string }>({});
  // each Filter reads the log again, the same filters too (a new entry shows)
  const [round, setRound] = useState(0);
  const audit = usePaged(
    (cursor) =>
      api<AuditAnswer>('/api/v1/audit', { query: { ...filters, limit: 50, cursor } }).then((a) => ({
        items: a.entries,
        nextCursor: a.nextCursor,
      })),
    `${JSON.stringify(filters)}#${round}`,
  );
  return (
    <Section title="Audit log">
      <form
        class="row"
        aria-label="filter the audit log"
        onSubmit={(e) => {
          e.preventDefault();
          const form = new FormData(e.currentTarget);
          const actor = String(form.get('actor') ?? '').trim();
          const outcome = String(form.get('outcome') ?? '');
          setFilters({ ...(actor ? { actor } : {}), ...(outcome ? { outcome } : {}) });
          setRound((r) => r + 1);
        }}
      >
        <label class="inline">
          Actor <input name="actor" maxLength={128} />
        </label>
        <label class="inline">
          Outcome{' '}
          <select name="outcome">
            <option value="">any</option>
            <option value="ok">ok</option>
            <option value="denied">denied</option>
            <option value="throttled">throttled</option>
            <option value="failed">failed</option>
          </select>
        </label>
        <button type="submit">Filter</button>
      </form>
      <ErrorNote error={audit.error} />
      <DataTable<AuditEntry>
        id="audit"
        wrap={false}
        rows={audit.items ?? []}
        rowKey={(e) => e.id}
        columns={[
          { title: 'At', cell: (e) => time(e.at) },
          {
            title: 'Actor',
            cell: (e) => (
              <>
                {e.actor} <span class="muted">({e.actorKind})</span>
              </>
            ),
          },
          {
            title: 'Action',
            cell: (e) => (
              <>
                <code>{e.action}</code>{' '}
                {Object.keys(e.params).length ? <span class="muted">{JSON.stringify(e.params)}</span> : null}
              </>
            ),
          },
          { title: 'From', cell: (e) => e.address },
          {
            title: 'Result',
            cell: (e) => (
              <>
                <Badge state={e.outcome} /> {e.status}
              </>
            ),
          },
        ]}
      />
      <MoreButton more={audit.more} label="Older entries" />
    </Section>
  );
}

export function AdminPage() {
  return (
    <>
      <h1>Admin</h1>
      <Users />
      <Tokens />
      <Audit />
    </>
  );
}
