import { useEffect, useState } from 'preact/hooks';

type Theme = 'system' | 'light' | 'dark';
const KEY = 'argus-theme';
const NEXT: Record<Theme, Theme> = { system: 'dark', dark: 'light', light: 'system' };

const stored = (): Theme => (localStorage.getItem(KEY) as Theme | null) ?? 'system';

function apply(theme: Theme) {
  if (theme === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
}

/** the operator's pick of an earlier visit, from the first render (the toggle lives in a closed menu) */
export const applyStoredTheme = () => apply(stored());

/** follows the system's light or dark scheme unless the operator picks one (kept in this browser) */
export function ThemeToggle() {
  const [theme, setTheme] = useState<Theme>(stored);
  useEffect(() => {
    apply(theme);
    if (theme === 'system') localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, theme);
  }, [theme]);
  return (
    <button
      type="button"
      class="ghost"
      onClick={() => setTheme(NEXT[theme])}
      aria-label={`colour theme: ${theme}, change`}
    >
      Theme: {theme}
    </button>
  );
}
