import { useEffect, useState } from 'preact/hooks';
import { api, describeError } from '../api.ts';
import { Badge, ErrorNote, Loading, Section } from '../components/bits.tsx';
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
        <table class="data" id="users">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Role</th>
              <th scope="col">Changed</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {users.map((u) => (
              <tr key={u.name}>
                <th scope="row">{u.name}</th>
                <td>
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
                </td>
                <td>{time(u.updatedAt)}</td>
                <td class="row">
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
                </td>
              </tr>
            ))}
          </tbody>
        </table>
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
        <table class="data">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Role</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {tokens.map((t) => (
              <tr key={t.id}>
                <th scope="row">{t.name}</th>
                <td>{t.role}</td>
                <td>
                  {time(t.createdAt)} <span class="muted">by {t.createdBy}</span>
                </td>
                <td>{time(t.lastUsedAt)}</td>
                <td>
                  {t.revokedAt ? (
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
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
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

function Audit() {
  const [filters, setFilters] = useState<{ actor?: string; outcome?: string }>({});
  const [pages, setPages] = useState<AuditAnswer[]>([]);
  const [error, setError] = useState<string | null>(null);
  const load = async (cursor?: string) => {
    try {
      const page = await api<AuditAnswer>('/api/v1/audit', { query: { ...filters, limit: 50, cursor } });
      setPages((p) => (cursor ? [...p, page] : [page]));
      setError(null);
    } catch (err) {
      setError(describeError(err));
    }
  };
  useEffect(() => void load(), [filters]);
  const entries = pages.flatMap((p) => p.entries);
  const next = pages.at(-1)?.nextCursor;
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
      <ErrorNote error={error} />
      <table class="data" id="audit">
        <thead>
          <tr>
            <th scope="col">At</th>
            <th scope="col">Actor</th>
            <th scope="col">Action</th>
            <th scope="col">From</th>
            <th scope="col">Result</th>
          </tr>
        </thead>
        <tbody>
          {entries.map((e) => (
            <tr key={e.id}>
              <td>{time(e.at)}</td>
              <td>
                {e.actor} <span class="muted">({e.actorKind})</span>
              </td>
              <td>
                <code>{e.action}</code>{' '}
                {Object.keys(e.params).length ? <span class="muted">{JSON.stringify(e.params)}</span> : null}
              </td>
              <td>{e.address}</td>
              <td>
                <Badge state={e.outcome} /> {e.status}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {next ? (
        <button type="button" onClick={() => void load(next)}>
          Older entries
        </button>
      ) : null}
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
