import { useEffect, useRef, useState } from 'preact/hooks';
import { useStreamState } from './live-stream.ts';
import { AdminPage } from './pages/admin.tsx';
import { ArtifactsPage } from './pages/artifacts.tsx';
import { DevicePage } from './pages/device.tsx';
import { EventsPage } from './pages/events.tsx';
import { FleetPage } from './pages/fleet.tsx';
import { RolloutsPage } from './pages/rollouts.tsx';
import { SceneEditorPage } from './pages/scene-editor.tsx';
import { href, useRoute } from './router.ts';
import { roleAllows, useSession } from './session.ts';
import { ThemeToggle } from './theme.tsx';
import type { Role } from './types.ts';

interface NavItem {
  path: string;
  title: string;
  role: Role;
}

const NAV: NavItem[] = [
  { path: 'fleet', title: 'Fleet', role: 'viewer' },
  { path: 'events', title: 'Events', role: 'viewer' },
  { path: 'rollouts', title: 'Rollouts', role: 'viewer' },
  { path: 'artifacts', title: 'Artifacts', role: 'viewer' },
  { path: 'scenes', title: 'Scene editor', role: 'operator' },
  { path: 'admin', title: 'Admin', role: 'admin' },
];

function UserMenu() {
  const { me, logout } = useSession();
  const [open, setOpen] = useState(false);
  const menu = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!open) return;
    const close = (e: Event) => {
      if (e instanceof KeyboardEvent ? e.key === 'Escape' : !menu.current?.contains(e.target as Node))
        setOpen(false);
    };
    document.addEventListener('keydown', close);
    document.addEventListener('pointerdown', close);
    return () => {
      document.removeEventListener('keydown', close);
      document.removeEventListener('pointerdown', close);
    };
  }, [open]);
  return (
    <div class="user-menu" ref={menu}>
      <button
        type="button"
        id="user-menu-button"
        aria-haspopup="true"
        aria-expanded={open}
        aria-controls="user-menu"
        onClick={() => setOpen(!open)}
      >
        <span id="who">{me.name}</span> <span class={`badge badge-role badge-${me.role}`}>{me.role}</span>
      </button>
      {open ? (
        <div id="user-menu" class="menu">
          <p>
            Logged in as <strong>{me.name}</strong>, role <strong>{me.role}</strong>
            {me.expiresAt ? (
              <span class="muted"> · session until {new Date(me.expiresAt).toLocaleString()}</span>
            ) : null}
          </p>
          <a href="/docs">API documentation</a>
          <ThemeToggle />
          <button type="button" id="logout" onClick={() => void logout()}>
            Log out
          </button>
        </div>
      ) : null}
    </div>
  );
}

function StreamIndicator() {
  const state = useStreamState();
  return (
    <span id="stream" class={`stream stream-${state}`} aria-live="polite" title="live event stream">
      {state}
    </span>
  );
}

export function Layout() {
  const { me } = useSession();
  const route = useRoute();
  const [page = 'fleet', ...rest] = route.parts;
  const main = useRef<HTMLElement>(null);
  useEffect(() => {
    main.current?.focus({ preventScroll: true });
  }, [page]);
  let content: preact.JSX.Element;
  if (page === 'devices' && rest[0]) content = <DevicePage id={rest[0]} />;
  else if (page === 'events') content = <EventsPage query={route.query} />;
  else if (page === 'rollouts') content = <RolloutsPage id={rest[0]} query={route.query} />;
  else if (page === 'scenes' && roleAllows(me.role, 'operator'))
    content = <SceneEditorPage query={route.query} />;
  else if (page === 'artifacts') content = <ArtifactsPage />;
  else if (page === 'admin' && roleAllows(me.role, 'admin')) content = <AdminPage />;
  else content = <FleetPage query={route.query} />;
  return (
    <>
      <button type="button" class="skip" onClick={() => main.current?.focus()}>
        Skip to content
      </button>
      <header class="top">
        <span class="brand">Argus</span>
        <nav aria-label="pages">
          {NAV.filter((n) => roleAllows(me.role, n.role)).map((n) => (
            <a
              key={n.path}
              href={href([n.path])}
              aria-current={
                page === n.path || (n.path === 'fleet' && page === 'devices') ? 'page' : undefined
              }
            >
              {n.title}
            </a>
          ))}
        </nav>
        <span class="spacer" />
        <StreamIndicator />
        <UserMenu />
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        {content}
      </main>
    </>
  );
}
