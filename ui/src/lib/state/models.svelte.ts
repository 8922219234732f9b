// The models the engine has loaded (what `airlock ps` shows): refreshed after each reply and, while
// a page that shows them is open, on an interval.
import * as api from '../api';
import type { LoadedModel } from '../api';

/** How often a page that shows loaded models asks again (a model unloads itself when idle). */
export const LOADED_REFRESH_MS = 5000;

class ModelState {
  loaded = $state<LoadedModel[]>([]);
  error = $state<string | null>(null);
  /** Why the last Unload failed (kept across refreshes until the next Unload). */
  unloadError = $state<string | null>(null);
  /** Names being unloaded now (their button is disabled). */
  unloading = $state<string[]>([]);

  isLoaded(name: string): boolean {
    return this.loaded.some((m) => m.name === name);
  }

  async refresh(): Promise<void> {
    try {
      this.loaded = await api.loadedModels();
      this.error = null;
    } catch (e) {
      this.error = api.errorMessage(e);
    }
  }

  async unload(name: string): Promise<void> {
    if (this.unloading.includes(name)) return;
    this.unloading = [...this.unloading, name];
    try {
      await api.unloadModel(name);
      this.unloadError = null;
    } catch (e) {
      this.unloadError = `Could not unload ${name}: ${api.errorMessage(e)}`;
    } finally {
      this.unloading = this.unloading.filter((n) => n !== name);
      await this.refresh();
    }
  }

  /** Refreshes now and every LOADED_REFRESH_MS until the returned stop is called. */
  watch(): () => void {
    void this.refresh();
    const timer = setInterval(() => void this.refresh(), LOADED_REFRESH_MS);
    return () => clearInterval(timer);
  }
}

export const modelState = new ModelState();
