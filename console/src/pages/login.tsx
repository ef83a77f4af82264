import { useState } from 'preact/hooks';
import { api, describeError } from '../api.ts';
import { ThemeToggle } from '../theme.tsx';

export function LoginPage({ onLoggedIn }: { onLoggedIn: () => Promise<void> }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <main class="center">
      <form
        class="card login"
        aria-labelledby="login-title"
        onSubmit={async (e) => {
          e.preventDefault();
          const form = new FormData(e.currentTarget);
          setBusy(true);
          setError(null);
          try {
            await api('/api/v1/login', {
              method: 'POST',
              body: { name: form.get('name'), password: form.get('password') },
            });
            await onLoggedIn();
          } catch (err) {
            setError(describeError(err));
            setBusy(false);
          }
        }}
      >
        <h1 id="login-title">Argus console</h1>
        <label>
          Name
          <input name="name" autocomplete="username" required maxLength={64} />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" required maxLength={1024} />
        </label>
        <p id="login-error" class="error" role="alert" aria-live="assertive">
          {error ?? ''}
        </p>
        <div class="row">
          <button type="submit" class="primary" disabled={busy}>
            Log in
          </button>
          <ThemeToggle />
        </div>
      </form>
    </main>
  );
}
