// App-wide state: settings, models, the current page, theme.
import * as api from '../api';
import type { ModelDetails, Settings, Theme } from '../api';

export type Page = 'chat' | 'models' | 'hardware' | 'settings';

class AppState {
  page = $state<Page>('chat');
  settings = $state<Settings | null>(null);
  models = $state<ModelDetails[]>([]);
  modelsError = $state<string | null>(null);
  settingsError = $state<string | null>(null);
  ready = $state(false);
  /** Bumped to ask the chat input to take focus. */
  focusInput = $state(0);

  runnableModels = $derived(this.models.filter((m) => m.runnable));

  /** The free-form UI state (last model, …), saved with setUiState. */
  ui = $state.raw<Record<string, unknown>>({});
  private media: MediaQueryList | null = null;

  async loadSettings(): Promise<void> {
    try {
      const s = await api.getSettings();
      this.settings = s;
      this.ui = { ...(s.ui || {}) };
      this.settingsError = null;
      applyTheme(s.theme);
    } catch (e) {
      this.settingsError = api.errorMessage(e);
    }
  }

  async refreshModels(): Promise<void> {
    try {
      const list = await api.listModels();
      this.models = [...list].sort((a, b) => a.name.localeCompare(b.name));
      this.modelsError = null;
    } catch (e) {
      this.modelsError = api.errorMessage(e);
    }
  }

  uiValue<T>(key: string): T | undefined {
    return this.ui[key] as T | undefined;
  }

  /** Merges into the free-form UI state and saves it. */
  async setUi(patch: Record<string, unknown>): Promise<void> {
    this.ui = { ...this.ui, ...patch };
    if (this.settings) this.settings.ui = { ...this.ui };
    try {
      await api.setUiState({ ...this.ui });
    } catch {
      /* not worth bothering the user */
    }
  }

  async setTheme(theme: Theme): Promise<void> {
    applyTheme(theme);
    if (this.settings) this.settings.theme = theme;
    await api.setTheme(theme);
  }

  /** Follows the OS colour scheme while the theme is "system". */
  watchSystemTheme(): () => void {
    if (typeof window === 'undefined' || typeof window.matchMedia !== 'function') return () => {};
    this.media = window.matchMedia('(prefers-color-scheme: dark)');
    const onChange = () => applyTheme(this.settings?.theme ?? 'system');
    this.media.addEventListener?.('change', onChange);
    return () => this.media?.removeEventListener?.('change', onChange);
  }
}

export function resolveTheme(theme: Theme): 'light' | 'dark' {
  if (theme === 'light' || theme === 'dark') return theme;
  const dark = typeof window !== 'undefined' && typeof window.matchMedia === 'function' && window.matchMedia('(prefers-color-scheme: dark)').matches;
  return dark ? 'dark' : 'light';
}

export function applyTheme(theme: Theme): void {
  if (typeof document === 'undefined') return;
  document.documentElement.dataset.theme = resolveTheme(theme);
  document.documentElement.dataset.themeSetting = theme;
}

export const app = new AppState();
