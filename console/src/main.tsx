import { render } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError, api, setSession } from './api.ts';
import { Layout } from './layout.tsx';
import { LoginPage } from './pages/login.tsx';
import { SessionContext } from './session.ts';
import './styles.css';
import { applyStoredTheme } from './theme.tsx';
import type { MeAnswer } from './types.ts';

function App() {
  const [me, setMe] = useState<MeAnswer | null | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const loggedOut = useCallback(() => setMe(null), []);

  const start = useCallback(async () => {
    try {
      const who = await api<MeAnswer>('/api/v1/me');
      setSession(who.csrfToken ?? '', loggedOut);
      setMe(who);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setMe(null);
      else setError(`the control plane does not answer: ${err instanceof Error ? err.message : String(err)}`);
    }
  }, [loggedOut]);
  useEffect(() => {
    void start();
  }, [start]);

  const logout = useCallback(async () => {
    await api('/api/v1/logout', { method: 'POST' }).catch(() => undefined);
    setMe(null);
  }, []);

  if (error)
    return (
      <main class="center">
        <p class="error" role="alert">
          {error}
        </p>
      </main>
    );
  if (me === undefined) return null;
  if (me === null) return <LoginPage onLoggedIn={start} />;
  return (
    <SessionContext.Provider value={{ me, logout }}>
      <Layout />
    </SessionContext.Provider>
  );
}

applyStoredTheme();
render(<App />, document.getElementById('app')!);
